"""What an imported archive must be beyond each member's path (pure rules, used by :mod:`.imports_scan`).

Each rule closes a way to get content past the listing a checker reads or past the malware scan
(tests/security/test_redteam8_imports.py; all of them got through before these rules):

* **names a person can read**: no control, format (right-to-left override, zero-width) or
  unassigned character in a member name, which would show ``report<RLO>fdp.py`` as ``reportyp.pdf``;
* **one member per name**: no two members whose names are equal once case, Unicode form and ``./``
  are set aside (compatibility forms too, NFKC: ``\ufb01le.py`` is ``file.py``, red team 20G; the
  checker's tool shows one, the extraction in the workspace keeps the other; a case-insensitive disk
  merges them), and no file where another member needs a folder;
* **ZIP compression the scanner unpacks**: stored, deflate or bzip2 only (ClamAV does not unpack
  an LZMA member, which Python reads without a word);
* **every byte of a ZIP accounted for**: members laid end to end from the first byte, then the
  central directory, then its end record (a second ZIP before, between or after is neither listed
  nor scanned), and each member's local header saying what the central directory says (ClamAV
  decompresses by the one, zipfile by the other), no second name for ``unzip`` (an Info-ZIP Unicode
  Path field), no member sized the ZIP64 way (ClamAV 1.4 does not read it: a deflated member
  sized so passed the scan, red team 13), and no folder holding bytes;
* **one size per TAR member**: the octal size of its ordinary header, and no other (a size in a pax
  header, a binary size or a sparse map: tarfile and GNU tar read the member by it, ClamAV by the
  ordinary header, and a file known to ClamAV by its hash passed);
* **nothing after the end of a TAR**: only zero padding (a ZIP appended to a TAR or a TAR.GZ is
  opened by ``zipfile`` in the workspace, and ClamAV scanned it as a TAR);
* **no archive at the end of a member** either: a ZIP behind a line of text opens with ``zipfile``
  as well as one at the start (judged by the member's last 64 KiB);
* **one gzip stream, as zlib reads it** (red team 13): ClamAV reads a ``.tar.gz`` through zlib,
  which checks a gzip header's CRC (``FHCRC``) and gives up on a wrong one, scanning nothing
  inside; Python's gzip ignores that CRC and reads on, through concatenated streams too. So the
  file must be exactly one gzip stream that zlib decompresses to its end (a TAR carrying the test
  signatures behind a wrong header CRC passed the scan);
* **bounded before they are read** (red team 13): a ZIP's central directory entries are counted
  before ``zipfile`` builds one object per entry (2 million entries in a 94 MB upload took 1 GB of
  the gate's memory), and a TAR's extended headers (a GNU long name or link, a pax header) are at
  most 64 KiB and at most 4 in a row, and GNU sparse members are refused as their header is read
  (``tarfile`` read a 400 MiB long name, 400 KB once gzipped, whole into memory, and a chain of
  3,000 long names ended the scan with a ``RecursionError``, neither refused nor audited).

Each function answers the reason to refuse, or ``None``.
"""

from __future__ import annotations

import io
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from pathlib import Path

#: ZIP compression methods ClamAV unpacks, by number; any other member is not scanned
SCANNED_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2"}
#: bytes of a member's end that hold a ZIP's end record, its comment included
TAIL = 65_536 + 22
_UNREADABLE = {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"}
_LOCAL_HEADER = 30
_CENTRAL_HEADER = 46
_END_RECORD = 22
_ZIP64_END = 56 + 20  #: the ZIP64 end record and its locator
_DESCRIPTOR_SIZES = {12, 16, 20, 24}  #: a data descriptor, with or without signature, 32 or 64 bits


def name_refusal(name: str) -> str | None:
    """A member name holding a character a person cannot see or that reorders the text."""
    for char in name:
        if unicodedata.category(char) in _UNREADABLE:
            return (f"member {name[:200]!r} holds an invisible or control character (U+{ord(char):04X}), "
                    "which would show the checker another name: rename it with visible characters")
    return None


class MemberNames:
    """The names of an archive's members so far, to refuse two members with one name."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}

    @staticmethod
    def _parts(name: str) -> list[str]:
        folded = unicodedata.normalize("NFKC", name).casefold()  # NFKC: "ﬁle.py" is "file.py" (red team 20G)
        return [p for p in folded.split("/") if p not in ("", ".")]

    def add(self, name: str, folder: bool) -> str | None:
        parts = self._parts(name)
        if not parts:
            return None
        key = "/".join(parts)
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in self.files:
                return (f"member {name[:200]!r} is inside {self.files[parent][:200]!r}, which the archive "
                        "also holds as a file: rebuild the archive with one member per name")
            self.folders.setdefault(parent, name)
        other = self.files.get(key) or (None if folder else self.folders.get(key))
        if other is not None:
            return (f"members {other[:200]!r} and {name[:200]!r} have the same name (ignoring case and "
                    "Unicode form): the checker would read one and the workspace extract the other; "
                    "rebuild the archive with one member per name")
        (self.folders if folder else self.files)[key] = name
        return None


def zip_entries_refusal(path: Path, most: int) -> str | None:
    """More than ``most`` central directory entries, counted before ``zipfile`` reads them: each
    entry starts with the central header's signature, so ``zipfile`` cannot find more entries
    than the file holds signatures."""
    signature, found, carry = b"PK\x01\x02", 0, b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            found += (carry + chunk).count(signature)
            carry = chunk[-3:]
            if found > most:
                return (f"the ZIP lists more than {most} members (central directory entries): import fewer "
                        "files per archive")
    return None


def zip_method_refusal(info: zipfile.ZipInfo) -> str | None:
    if info.compress_type in SCANNED_ZIP_METHODS:
        return None
    return (f"member {info.filename[:200]!r} is compressed with method {info.compress_type}, which the "
            f"malware scanner does not unpack: rebuild the archive with "
            f"{', '.join(SCANNED_ZIP_METHODS.values())} compression (zip -Z deflate)")


def _name_bytes(info: zipfile.ZipInfo) -> int:
    return len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"))


def zip_layout_refusal(path: Path, archive: zipfile.ZipFile) -> str | None:
    """Bytes of the ZIP at ``path`` that belong to no member, nor to its central directory."""
    hidden = ("the ZIP holds bytes outside its members ({where}): another archive or data hidden there "
              "is neither listed nor scanned; rebuild the archive with a standard zip tool")
    infos = sorted(archive.infolist(), key=lambda i: i.header_offset)
    position, descriptor = 0, False
    with open(path, "rb") as fh:
        for info in infos:
            gap = info.header_offset - position
            if gap != 0 and not (descriptor and gap in _DESCRIPTOR_SIZES):
                return hidden.format(where=f"{gap} bytes before member {info.filename[:200]!r}")
            fh.seek(info.header_offset)
            header = fh.read(_LOCAL_HEADER)
            if len(header) < _LOCAL_HEADER:
                return hidden.format(where=f"member {info.filename[:200]!r} is cut short")
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            local_extra = fh.read(name_length + extra_length)[name_length:]
            differs = (_zip64_refusal(info, header, local_extra) or _local_header_refusal(info, header)
                       or _unicode_path_refusal(info, local_extra))
            if differs is not None:
                return differs
            position = info.header_offset + _LOCAL_HEADER + name_length + extra_length + info.compress_size
            descriptor = bool(info.flag_bits & 0x08)
        gap = archive.start_dir - position
        if gap != 0 and not (descriptor and gap in _DESCRIPTOR_SIZES):
            return hidden.format(where=f"{gap} bytes before the central directory")
    central = sum(_CENTRAL_HEADER + _name_bytes(i) + len(i.extra) + len(i.comment) for i in infos)
    end = archive.start_dir + central + _END_RECORD + len(archive.comment)
    size = path.stat().st_size
    if size not in (end, end + _ZIP64_END):
        return hidden.format(where=f"{size - end} bytes around the central directory")
    return None


def _zip64_refusal(info: zipfile.ZipInfo, header: bytes, local_extra: bytes) -> str | None:
    """A member sized the ZIP64 way (``0xFFFFFFFF`` in its local header, a ZIP64 extra field): ClamAV
    1.4 reads no ZIP64 local header, so a deflated member sized so was never scanned; zipfile and
    unzip read it (``ZipFile.open(name, "w", force_zip64=True)`` wrote one: red team 13). No
    archive the platform takes needs ZIP64 (4 GiB and 65,535 members are far above its limits)."""
    sizes = struct.unpack("<II", header[18:26])
    fields = {kind for extra in (info.extra, local_extra) for kind, _ in _extra_fields(extra)}
    if 0xFFFFFFFF not in sizes and 0x0001 not in fields:
        return None
    return (f"member {info.filename[:200]!r} is sized the ZIP64 way, which the malware scanner does not read: "
            "rebuild the archive without ZIP64 (python -m zipfile -c, or zip without -fz)")


def _extra_fields(extra: bytes):
    """(kind, body) of each field of a ZIP extra block."""
    at = 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack("<HH", extra[at:at + 4])
        yield kind, extra[at + 4:at + 4 + size]
        at += 4 + size


def _local_header_refusal(info: zipfile.ZipInfo, header: bytes) -> str | None:
    """A member's local header must say what the central directory says: zipfile decompresses with
    the central directory's method, ClamAV with the local header's (a bzip2 member whose local
    header said "deflate" passed the scan with the test signature in it)."""
    signature, _, _, method = struct.unpack("<IHHH", header[:10])
    packed = struct.unpack("<I", header[18:22])[0]
    sized = not info.flag_bits & 0x08 and packed != 0xFFFFFFFF
    if signature == 0x04034B50 and method == info.compress_type and (not sized or packed == info.compress_size):
        return None
    return (f"member {info.filename[:200]!r} is described one way in its local header and another in the "
            "central directory (signature, compression method or size): readers would disagree on its "
            "content; rebuild the archive with a standard zip tool")


def _unicode_path_refusal(info: zipfile.ZipInfo, local_extra: bytes) -> str | None:
    """An Info-ZIP Unicode Path extra field (0x7075) naming another path than the member's name:
    ``unzip`` extracts by it, zipfile (and so the listing) by the name (``README.md`` came out of
    ``unzip`` as ``evil_run.py``)."""
    for extra in (info.extra, local_extra):
        for kind, body in _extra_fields(extra):
            if kind == 0x7075 and body[5:].decode("utf-8", "replace") != info.orig_filename:
                return (f"member {info.filename[:200]!r} carries another name for unzip (a Unicode Path extra "
                        "field): rebuild the archive with UTF-8 names (python -m zipfile -c, or zip 3)")
    return None


def folder_refusal(info: zipfile.ZipInfo) -> str | None:
    """A folder member (its name ends with ``/``) holding bytes: listed as an empty folder, read
    back by ``zipfile.ZipFile.read``."""
    if info.file_size == 0 and info.compress_size <= 2:  # deflate's empty stream is 2 bytes
        return None
    return (f"member {info.filename[:200]!r} is a folder holding {info.file_size} bytes: rebuild the archive "
            "with a standard zip tool")


def nested_zip_refusal(member: str, tail: bytes) -> str | None:
    """A member whose last bytes are a ZIP's end record: a ZIP behind other bytes."""
    if zipfile.is_zipfile(io.BytesIO(tail)):
        return (f"member {member[:200]!r} ends with a ZIP archive: only one level of archive is "
                "accepted; import its files instead")
    return None


#: the most bytes of one TAR extended header (a GNU long name or link, a pax header) and the most
#: such headers before one member: tarfile reads each whole into memory, one call deeper each
MAX_EXTENDED_HEADER = 64 * 1024
MAX_EXTENDED_CHAIN = 4
_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
             tarfile.SOLARIS_XHDTYPE)


class TarHeaderRefused(ValueError):
    """A TAR header refused before tarfile reads what it announces."""


class PlainSizeTarInfo(tarfile.TarInfo):
    """A member as tarfile reads it, plus the size field of its own ordinary header (``raw_size``);
    extended headers bounded and GNU sparse members refused before tarfile reads them."""

    raw_size = b""

    def _proc_member(self, tarfile_):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise TarHeaderRefused(f"member {self.name[:200]!r} is a GNU sparse file: rebuild the archive with "
                                   "tar --format=ustar")
        if self.type not in _EXTENDED:
            return super()._proc_member(tarfile_)
        depth = getattr(tarfile_, "_pds_extended", 0) + 1
        if self.size > MAX_EXTENDED_HEADER or depth > MAX_EXTENDED_CHAIN:
            raise TarHeaderRefused(f"an extended header (a long name or a pax header) of {self.size} bytes, or "
                                   f"more than {MAX_EXTENDED_CHAIN} in a row: at most {MAX_EXTENDED_HEADER} bytes; "
                                   "rebuild the archive with tar --format=ustar")
        tarfile_._pds_extended = depth
        try:
            return super()._proc_member(tarfile_)
        finally:
            tarfile_._pds_extended = depth - 1

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        info = super().frombuf(buf, encoding, errors)
        info.raw_size = bytes(buf[124:136])
        return info


def tar_size_refusal(info: tarfile.TarInfo) -> str | None:
    """A member whose size is not the plain octal size of its ordinary header."""
    field = getattr(info, "raw_size", b"").strip(b"\0 ")
    if (not field or set(field) <= set(b"01234567")) and int(field or b"0", 8) == info.size:
        return None
    return (f"member {info.name[:200]!r} gives its size another way than its ordinary header (a pax size, a "
            "binary size or a sparse map), which the malware scanner reads: rebuild the archive with "
            "tar --format=ustar")


def gzip_refusal(path: Path) -> str | None:
    """Not exactly one gzip stream that zlib (with its header and trailer checks) reads to the end of
    the file. Called after the TAR listing, which bounded what the stream unpacks to."""
    stream = zlib.decompressobj(31)  # 16 + 15: one gzip member, header CRC checked when present
    try:
        with open(path, "rb") as fh:
            while (chunk := fh.read(1 << 20)) and not stream.eof:
                while chunk and not stream.eof:
                    stream.decompress(chunk, 1 << 20)
                    chunk = stream.unconsumed_tail
            extra = stream.unused_data + chunk + fh.read(1)
    except zlib.error as exc:
        return (f"the gzip stream cannot be read as the malware scanner reads it ({str(exc)[:100]}): rebuild the "
                "archive with tar czf")
    if not stream.eof or extra:
        return ("the file is not one whole gzip stream (a second stream, or bytes after it): rebuild the "
                "archive with tar czf")
    return None


def trailing_refusal(rest: bytes) -> str | None:
    """Bytes after a TAR's last member: only its zero padding may follow."""
    if rest.strip(b"\0"):
        return ("the TAR archive holds data after its last member: another archive or data hidden there "
                "is neither listed nor scanned; rebuild the archive with tar")
    return None
