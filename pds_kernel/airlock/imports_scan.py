"""The scan every imported file goes through before a checker sees it.

Deny by default, in this order (the first failure refuses the file; nothing refused reaches review):

1. **type by name**: only the extensions of :data:`IMPORT_KINDS` come in;
2. **size**: at most ``import_max_file_bytes``;
3. **type by content**: the first bytes must be what the extension says (an executable named
   ``.csv``, a ZIP named ``.txt`` are refused), text holds no NUL byte;
4. **archives** (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``): every member listed without extracting
   anything; refused for a link (symbolic or hard), a device or FIFO, an absolute or ``..`` path, an
   encrypted member, an archive inside (one level only, judged by name, by first bytes and by last
   bytes), more than ``import_max_members`` members, more than ``import_max_unpacked_bytes``
   unpacked, or a compression ratio above ``import_max_ratio`` (zip bombs). ZIP members are
   decompressed for real with a running cap, so lying headers (overlapping-entry bombs) are caught
   too. And the rules of :mod:`.archive_rules` (what the checker reads is what the workspace gets,
   and all of it reaches ClamAV): names a person can read, one member per name, ZIP compression
   the scanner unpacks, local headers agreeing with the central directory, one size per TAR
   member, no byte outside the members;
5. **malware**: ClamAV (:mod:`.clamav`: ``clamscan``, or a running ``clamd`` through ``clamdscan``;
   both look inside archives), given also what :mod:`.import_decode` decodes (a notebook's base64
   outputs, a PNG's deflated streams), which ClamAV does not. Exit code 0 is clean, 1 a signature
   found; anything else (scanner or daemon missing, no signature database, timeout, crash) refuses
   the file: a scan that did not run never passes.

:func:`scan_import` returns a check result shaped like the export checks' (``kind``, ``status``,
``rules``, ``findings``) plus the archive listing and the scanner's verdict, stored with the file
and shown to checkers.
"""

from __future__ import annotations

import gzip
import logging
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import archive_rules as rules
from . import clamav
from .checks.result import Status
from .import_content import Content
from .import_decode import Decoded, DecodeRefusal, decodable

log = logging.getLogger(__name__)

#: extension -> kind of what may be imported. Everything else is refused.
IMPORT_KINDS: dict[str, str] = {
    ".csv": "table", ".tsv": "table", ".parquet": "table",
    ".txt": "text", ".md": "text", ".json": "text", ".yaml": "text", ".yml": "text",
    ".py": "code", ".r": "code", ".sql": "code", ".sas": "code", ".sh": "code", ".ipynb": "code",
    ".qmd": "code", ".rmd": "code",
    ".pdf": "figure", ".png": "figure",
    ".zip": "archive", ".tar": "archive", ".tar.gz": "archive", ".tgz": "archive",
}
_ARCHIVE_NAMES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".jar", ".whl", ".zst", ".cpio")
#: first bytes of archive and compressed formats (a member starting so is an archive inside)
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf", b"Rar!",
                  b"\x28\xb5\x2f\xfd")
_BINARY_MARKERS = (b"\x7fELF", b"MZ", b"PK\x03\x04", b"\x1f\x8b", b"\x80\x04", b"\x80\x05", b"%PDF-",
                   b"\x89PNG", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe")
_MAGIC = {".parquet": (b"PAR1",), ".pdf": (b"%PDF-",), ".png": (b"\x89PNG\r\n\x1a\n",),
          ".zip": (b"PK\x03\x04", b"PK\x05\x06"), ".tar.gz": (b"\x1f\x8b",), ".tgz": (b"\x1f\x8b",)}
_HEAD = 4096
_CHUNK = 1024 * 1024
#: the longest name of one folder or file in a member's path (Linux's NAME_MAX), and the longest path
MAX_NAME_PART = 255
MAX_MEMBER_PATH = 1024


class ScanRefusal(Exception):
    """One reason a file is refused (internal: :func:`scan_import` turns it into a finding)."""

    def __init__(self, rule: str, message: str, file: str = ""):
        self.rule, self.message, self.file = rule, message, file  #: file: the one at fault, when known
        super().__init__(message)


@dataclass(frozen=True)
class ImportLimits:
    max_file_bytes: int = 100 * 1024 * 1024
    max_members: int = 2_000
    max_unpacked_bytes: int = 500 * 1024 * 1024
    max_ratio: int = 200
    clamscan: str = "clamscan"
    clamav_database: str = ""  #: "" = ClamAV's default directory
    timeout_seconds: int = 300
    clamd_socket: str = ""  #: "" = clamscan; else the socket of a running clamd (:mod:`.clamav`)
    clamdscan: str = "clamdscan"

    @classmethod
    def from_settings(cls, settings) -> ImportLimits:
        a = settings.airlock
        return cls(a.import_max_file_bytes, a.import_max_members, a.import_max_unpacked_bytes,
                   a.import_max_ratio, a.clamscan, a.clamav_database, a.clamscan_timeout_seconds,
                   a.clamd_socket, a.clamdscan)


def import_extension(name: str) -> str:
    lower = name.lower()
    return ".tar.gz" if lower.endswith(".tar.gz") else PurePosixPath(lower).suffix


def import_refusal(name: str) -> str | None:
    """Why a file called ``name`` may not be imported at all (from its name alone), else None."""
    ext = import_extension(name)
    if ext not in IMPORT_KINDS:
        return (f"file type {ext or '(none)'} cannot be imported (allowed: "
                f"{', '.join(sorted(IMPORT_KINDS))})")
    return None


# ---- type by content ---------------------------------------------------------------------------
def check_content_type(path: Path, name: str) -> str:
    """The kind of the file at ``path`` named ``name``; raises :class:`ScanRefusal` on a mismatch."""
    ext = import_extension(name)
    kind = IMPORT_KINDS[ext]
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    magic = _MAGIC.get(ext)
    if magic is not None and not any(head.startswith(m) for m in magic):
        raise ScanRefusal("import-type", f"the content of {name} is not {ext[1:].upper()}")
    if ext == ".tar" and not _is_plain_tar(path):
        raise ScanRefusal("import-type", f"the content of {name} is not an uncompressed TAR archive")
    if kind in {"table", "text", "code"} and ext != ".parquet":
        if any(head.startswith(m) for m in _BINARY_MARKERS) or b"\x00" in head:
            raise ScanRefusal("import-type", f"{name} holds binary content, not text")
    if kind != "archive":  # all of it, not its first bytes only (import_content.py)
        content = Content(name, member=False)
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                content.feed(chunk)
        if (reason := content.refusal()) is not None:
            raise ScanRefusal("import-type", reason)
    return kind


def _is_plain_tar(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:"):
            return True
    except (tarfile.TarError, OSError):
        return False


# ---- archives ----------------------------------------------------------------------------------
def check_member_name(member: str) -> None:
    """A relative path without ``..`` components, backslashes or drive letters."""
    if not member or member.startswith(("/", "\\")) or (len(member) > 1 and member[1] == ":"):
        raise ScanRefusal("archive", f"member {member[:200]!r} has an absolute path")
    if "\\" in member or any(part == ".." for part in member.split("/")):
        raise ScanRefusal("archive", f"member {member[:200]!r} climbs out of the archive ('..')")
    if "\x00" in member:
        raise ScanRefusal("archive", "a member name holds a NUL byte")
    if len(member.encode("utf-8", "surrogateescape")) > MAX_MEMBER_PATH or \
            any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_PART for part in member.split("/")):
        raise ScanRefusal("archive", f"member {member[:200]!r}... has a name longer than {MAX_NAME_PART} bytes "
                                     f"(or a path longer than {MAX_MEMBER_PATH}), which a file system does not "
                                     "take: the workspace could not extract it as listed; rename it")


def _refuse(reason: str | None) -> None:
    if reason is not None:
        raise ScanRefusal("archive", reason)


def _check_member(names: rules.MemberNames, member: str, folder: bool) -> None:
    """The path rules, then :mod:`.archive_rules`' name rules (readable, one member per name)."""
    check_member_name(member)
    _refuse(rules.name_refusal(member))
    _refuse(names.add(member, folder))


def _check_not_archive(member: str, head: bytes) -> None:
    if member.lower().endswith(_ARCHIVE_NAMES) or any(head.startswith(m) for m in _ARCHIVE_MAGIC) \
            or head[257:262] == b"ustar":
        raise ScanRefusal("archive", f"member {member[:200]!r} is itself an archive: only one level of "
                                     "archive is accepted; import its files instead")


def _check_content(member: str, content: Content) -> None:
    """No archive inside (by name, first and last bytes), and the type rules of :mod:`.import_content`."""
    _check_not_archive(member, content.head)
    _refuse(rules.nested_zip_refusal(member, content.tail))
    _refuse(content.refusal())


class _DecodableBytes:
    """What :mod:`.import_decode` decodes of one file or archive member (a notebook, a PNG) for the
    malware scan: its bytes, kept as they are read (:meth:`feed`), then decoded (:meth:`decode`).
    Does nothing for any other name, nor without ``decoded``."""

    def __init__(self, decoded: Decoded | None, name: str):
        self.decoded = decoded if decoded is not None and decodable(name) else None
        self.name, self.kept = name, bytearray()

    def feed(self, chunk: bytes) -> None:
        """Keep ``chunk`` of a member decoded whole: at most the size of one imported file."""
        if self.decoded is None:
            return
        self.kept += chunk
        if len(self.kept) > self.decoded.whole_limit:
            raise ScanRefusal("archive", f"member {self.name[:200]!r} is a notebook or PNG larger than "
                                         f"{self.decoded.whole_limit} bytes, decoded whole to be scanned: "
                                         "import it on its own")

    def decode(self, data: bytes | None = None) -> None:
        """Decode ``data``, else what was fed (a notebook's base64, a PNG's streams), into ``decoded``."""
        if self.decoded is None:
            return
        try:
            self.decoded.add(self.name, self.kept if data is None else data)
        except DecodeRefusal as refusal:
            raise ScanRefusal("import-type", str(refusal)) from None


class _Budget:
    def __init__(self, limits: ImportLimits, packed: int):
        self.limits, self.packed, self.members, self.unpacked = limits, max(packed, 1), 0, 0

    def add_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ScanRefusal("archive", f"more than {self.limits.max_members} members in one archive")

    def add_bytes(self, count: int) -> None:
        self.unpacked += count
        if self.unpacked > self.limits.max_unpacked_bytes:
            raise ScanRefusal("archive", f"the archive unpacks to more than {self.limits.max_unpacked_bytes} bytes")
        if self.unpacked > 1024 * 1024 and self.unpacked > self.packed * self.limits.max_ratio:
            raise ScanRefusal("archive", f"the archive unpacks to more than {self.limits.max_ratio} times its "
                                         "size (a compression bomb?)")


def list_zip(path: Path, limits: ImportLimits, decoded: Decoded | None = None) -> list[dict[str, Any]]:
    budget = _Budget(limits, path.stat().st_size)
    members = []
    names = rules.MemberNames()
    _refuse(rules.zip_entries_refusal(path, limits.max_members))
    try:
        with zipfile.ZipFile(path) as zf:
            _refuse(rules.zip_layout_refusal(path, zf))
            for info in zf.infolist():
                budget.add_member()
                _check_member(names, info.filename, info.is_dir())
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise ScanRefusal("archive", f"member {info.filename[:200]!r} is a symbolic link")
                if mode not in (0, 0o100000, 0o040000):
                    raise ScanRefusal("archive", f"member {info.filename[:200]!r} is not a regular file")
                if info.flag_bits & 0x1:
                    raise ScanRefusal("archive", f"member {info.filename[:200]!r} is encrypted: it cannot be scanned")
                if info.is_dir():
                    _refuse(rules.folder_refusal(info))
                    members.append({"name": info.filename, "size": 0, "type": "directory"})
                    continue
                _refuse(rules.zip_method_refusal(info))
                content, actual = Content(info.filename, member=True), 0
                kept = _DecodableBytes(decoded, info.filename)
                with zf.open(info) as member:  # decompressed for real: lying headers are caught
                    while chunk := member.read(_CHUNK):
                        content.feed(chunk)
                        actual += len(chunk)
                        budget.add_bytes(len(chunk))
                        kept.feed(chunk)
                _check_content(info.filename, content)
                kept.decode()
                members.append({"name": info.filename, "size": actual, "type": "file"})
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError, OSError,
            zlib.error) as exc:  # a corrupt deflate (zlib.error) or bzip2 (OSError) stream: red team 13
        raise ScanRefusal("archive", f"the ZIP archive cannot be read: {str(exc)[:200]}") from None
    return members


def list_tar(path: Path, limits: ImportLimits, decoded: Decoded | None = None) -> list[dict[str, Any]]:
    budget = _Budget(limits, path.stat().st_size)
    members = []
    names = rules.MemberNames()
    try:
        with tarfile.open(path, "r:*", tarinfo=rules.PlainSizeTarInfo) as tf:
            while (info := tf.next()) is not None:
                budget.add_member()
                _check_member(names, info.name, info.isdir())
                _refuse(rules.tar_size_refusal(info))
                if info.issym() or info.islnk():
                    raise ScanRefusal("archive", f"member {info.name[:200]!r} is a "
                                                 f"{'symbolic' if info.issym() else 'hard'} link")
                if info.isdir():
                    members.append({"name": info.name, "size": 0, "type": "directory"})
                    continue
                if not info.isfile():
                    raise ScanRefusal("archive", f"member {info.name[:200]!r} is not a regular file "
                                                 "(device, FIFO or other)")
                budget.add_bytes(info.size)
                handle, content = tf.extractfile(info), Content(info.name, member=True)
                kept = _DecodableBytes(decoded, info.name)
                while handle is not None and (chunk := handle.read(_CHUNK)):
                    content.feed(chunk)
                    kept.feed(chunk)
                _check_content(info.name, content)
                kept.decode()
                members.append({"name": info.name, "size": info.size, "type": "file"})
            _check_tar_end(tf, budget)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise ScanRefusal("archive", f"the TAR archive cannot be read: {str(exc)[:200]}") from None
    return members


def _check_gzip(path: Path) -> None:
    """One gzip stream, read as zlib (and so ClamAV) reads it (:func:`.archive_rules.gzip_refusal`)."""
    _refuse(rules.gzip_refusal(path))


def _check_tar_end(tf: tarfile.TarFile, budget: _Budget) -> None:
    """Only zero padding after the last member, up to the end of the file (a byte after the gzip
    stream makes the gzip reader fail: refused the same way)."""
    tf.fileobj.seek(tf.offset)
    try:
        while chunk := tf.fileobj.read(_CHUNK):
            budget.add_bytes(len(chunk))
            _refuse(rules.trailing_refusal(chunk))
    except gzip.BadGzipFile:
        _refuse(rules.trailing_refusal(b"after the gzip stream"))


# ---- malware -----------------------------------------------------------------------------------
def run_malware_scan(paths: list[Path], limits: ImportLimits) -> dict[str, Any]:
    """ClamAV's verdict on every file of ``paths``, in one run (:func:`.clamav.scan_files`: clamscan,
    or clamd through clamdscan); :class:`ScanRefusal` (rule ``malware``) for a signature or no verdict."""
    try:
        return clamav.scan_files(paths, limits)
    except clamav.MalwareRefusal as refusal:
        raise ScanRefusal("malware", refusal.message, file=refusal.file) from None


# ---- the whole scan ----------------------------------------------------------------------------
def _result(kind: str, status: Status, rules: dict[str, str], findings: list[dict], **extra: Any) -> dict:
    return {"kind": kind, "status": status.value, "rules": rules, "findings": findings, "omitted": {}, **extra}


def scan_import(path: Path, name: str, limits: ImportLimits) -> dict[str, Any]:
    """Scan the staged file at ``path`` submitted as ``name``; the stored check result.

    ``status`` is ``fail`` when the file must be refused (the first reason in ``findings``),
    ``review`` for archives and code (a checker reads them), ``pass`` otherwise."""
    kind = IMPORT_KINDS.get(import_extension(name), "unknown")
    try:
        refused = import_refusal(name)
        if refused is not None:
            raise ScanRefusal("import-type", refused)
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise ScanRefusal("max-size", f"{name} is larger than {limits.max_file_bytes} bytes")
        kind = check_content_type(path, name)
        members = None
        with tempfile.TemporaryDirectory(prefix="pds-decoded-") as tmp:  # import_decode.py: scanned too
            decoded = Decoded(Path(tmp), limits.max_unpacked_bytes, whole_limit=limits.max_file_bytes)
            if kind == "archive":
                members = (list_zip(path, limits, decoded) if import_extension(name) == ".zip"
                           else list_tar(path, limits, decoded))
                if import_extension(name) in (".tar.gz", ".tgz"):
                    _check_gzip(path)
            elif decodable(name):
                _DecodableBytes(decoded, name).decode(path.read_bytes())
            malware = run_malware_scan([path, *decoded.paths], limits)
    except ScanRefusal as refusal:
        return _result(kind, Status.FAIL, {refusal.rule: Status.FAIL.value},
                       [{"rule": refusal.rule, "status": Status.FAIL.value, "message": refusal.message}])
    rules = {"import-type": Status.PASS.value, "malware": Status.PASS.value}
    findings = []
    status = Status.PASS
    if members is not None:
        rules["archive"] = Status.REVIEW.value
        findings.append({"rule": "archive", "status": Status.REVIEW.value,
                         "message": f"{len(members)} members listed: a checker reads them"})
        status = Status.REVIEW
    if kind == "code":
        rules["code"] = Status.REVIEW.value
        findings.append({"rule": "code", "status": Status.REVIEW.value, "message": "code: a checker reads it"})
        status = Status.REVIEW
    return _result(kind, status, rules, findings, clamav=malware, members=members or [])
