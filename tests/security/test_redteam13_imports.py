"""Red team, thirteenth round: the way in. Files uploaded to the real gate over HTTP, scanned by the
real ClamAV with the tests' own signatures (tests/security/imports_support.py), built to bring in
what no checker saw, to hide a signature from ClamAV, or to take the gate's memory; and a revoked
import left where a workspace reads it. Each asserts the attempt is refused with its reason,
audited (``airlock.import.create``, outcome ``denied``), and nothing is staged for review.

Got through before this round's fixes (:mod:`pds_kernel.airlock.import_content`, the bounds of
:mod:`pds_kernel.airlock.archive_rules`, :func:`pds_kernel.airlock.imports_mount.hide_revoked`),
19 of these 22 attempts: a gzip header with a wrong CRC (ClamAV scanned nothing inside, Python
read on), a ZIP member sized the ZIP64 way (the deflated test signature passed
ClamAV 1.4, which reads no ZIP64 local header), an executable member of a ZIP (3 names) or a TAR.GZ, a member named
``.png`` that is not one, code carrying an ELF after its first 4 KiB, a PNG, a PDF and a Parquet
file ending with a ZIP (the test signature in its LZMA member passed ClamAV, and no checker saw
its members listed), a 256 MiB GNU long name and pax header of 1 MB gzipped (read whole into the
gate's memory), a chain of 3,000 long names (a ``RecursionError``: an error 500, not refused, not
audited), a ZIP member whose deflate or bzip2 stream is damaged (the same), a GNU sparse member (accepted), a ZIP of 80,000 central directory entries (refused, but
only after ``zipfile`` built one object per entry: 2 million took 1 GB of the gate for a 94 MB
upload), a revoked import left readable in the mounted folder. Refused before, regression tests: a
text file ending with a ZIP (its NUL bytes), a signature split across two gzip streams (ClamAV
read both; now refused as not one stream), a wheel of 20,000 central entries (refused after the same parse).
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from imports_support import (  # noqa: F401  (fixtures)
    MARKER,
    PROJECT,
    assert_refused,
    gate_registry_fixture,
    import_gate_fixture,
    settings_fixture,
    tar_of,
    zip_of,
)

CODE = b"print('analysis')\n"
ELF = Path("/bin/true").read_bytes()[:64 * 1024]
#: a ZIP whose one member, the test signature, is LZMA-compressed: ClamAV does not unpack it
HIDDEN_ZIP = zip_of(("payload.py", MARKER), compression=zipfile.ZIP_LZMA)


# ---- what a checker cannot read comes in behind a name ------------------------------------------
@pytest.mark.parametrize("member", ["tools/run", "lib/_speedups.so", "data/codes.csv"])
def test_executable_member_of_a_zip(import_gate, member):
    """The same ELF uploaded alone is refused; as a member it was listed by name and came in."""
    answer = import_gate.upload("alice", "repo.zip", zip_of(("README.md", CODE), (member, ELF)))
    assert_refused(answer, "holds binary content", import_gate)


def test_executable_member_of_a_tar_gz(import_gate):
    answer = import_gate.upload("alice", "repo.tar.gz", tar_of(("README.md", CODE), ("bin/helper", ELF),
                                                               compression="gz"))
    assert_refused(answer, "holds binary content", import_gate)


def test_code_carrying_an_elf_after_its_first_4_kib(import_gate):
    """Only the first 4 KiB of a text file were judged."""
    answer = import_gate.upload("alice", "analysis.py", b"# notes\n" * 600 + b"BLOB = b'''" + ELF[:4096])
    assert_refused(answer, "holds binary content", import_gate)


def test_member_named_png_that_is_not_one(import_gate):
    answer = import_gate.upload("alice", "figures.zip", zip_of(("fig/plot.png", ELF)))
    assert_refused(answer, "is not PNG", import_gate)


# ---- a ZIP behind a file that is not an archive ---------------------------------------------------
@pytest.mark.parametrize("name,head", [
    ("plot.png", b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(13)),
    ("paper.pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"),
    ("table.parquet", b"PAR1" + bytes(64) + b"PAR1"),
    ("notes.txt", b"just some notes\n" * 10),
], ids=["png", "pdf", "parquet", "text"])
def test_zip_behind_a_file_that_is_not_an_archive(import_gate, name, head):
    """``zipfile.ZipFile('/imports/<id>/plot.png')`` opens the ZIP: its members were never listed,
    and ClamAV passed the test signature in its LZMA member (``ends with a ZIP`` or, for text,
    the ZIP's NUL bytes)."""
    answer = import_gate.upload("alice", name, head + HIDDEN_ZIP)
    reason = "holds binary content" if name.endswith(".txt") else "ends with a ZIP archive"
    assert_refused(answer, reason, import_gate)


# ---- the gate's memory and the scan's end ---------------------------------------------------------
@functools.cache
def _gzipped_bulk(megabytes: int) -> bytes:
    """``megabytes`` MiB of ``a``, one gzip stream (concatenated streams read as one)."""
    stream = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"a" * (1 << 20)
    return b"".join(stream.compress(chunk) for _ in range(megabytes)) + stream.flush()


def _header(name: str, kind: bytes, size: int, fmt=tarfile.USTAR_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=fmt)


_END = tar_of(("x.py", CODE))  # a member after the extended header, then the TAR's end


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE], ids=["gnu-long-name", "pax-header"])
def test_huge_extended_header_of_a_tar_gz(import_gate, kind):
    """256 MiB announced by one header, 1 MB once gzipped: tarfile read it whole into memory (the
    gate's 100 MiB of upload make 100 GiB this way)."""
    size = 256 * 1024 * 1024
    data = (gzip.compress(_header("././@LongLink", kind, size, tarfile.GNU_FORMAT)) + _gzipped_bulk(size >> 20)
            + gzip.compress(_END))
    started = time.monotonic()
    answer = import_gate.upload("alice", "repo.tgz", data)
    assert_refused(answer, "an extended header", import_gate)
    assert time.monotonic() - started < 10


def test_chain_of_long_names(import_gate):
    """Each GNU long name makes tarfile read the next header one call deeper: 3,000 of them ended
    the scan with a RecursionError (an error 500, nothing refused, nothing audited)."""
    one = _header("././@LongLink", tarfile.GNUTYPE_LONGNAME, 100, tarfile.GNU_FORMAT) + b"n" * 100 + bytes(412)
    answer = import_gate.upload("alice", "repo.tgz", gzip.compress(one * 3000 + _END))
    assert_refused(answer, "more than 4 in a row", import_gate)


def test_gnu_sparse_member(import_gate):
    """A sparse member's extension blocks are read as its header is; refused at once (it was
    refused after them, by its size rule, before)."""
    answer = import_gate.upload("alice", "repo.tar", _header("data.csv", tarfile.GNUTYPE_SPARSE, 0) + bytes(1024))
    assert_refused(answer, "sparse", import_gate)


def test_zip_of_eighty_thousand_central_entries(import_gate):
    """3.8 MB of 47-byte central directory entries: zipfile built an object for each before any
    rule counted them (refused later, after the memory was taken)."""
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    body = entry * 80_000
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, len(body), len(local), 0)
    answer = import_gate.upload("alice", "repo.zip", local + body + end)
    assert_refused(answer, "lists more than 2000 members", import_gate)


def test_signature_split_across_two_gzip_streams(import_gate):
    """A .tar.gz of two gzip streams cut inside the flagged member (tarfile reads on through
    both): ClamAV read both too, and refused it. Refused before; now at once, as not one stream."""
    plain = tar_of(("README.md", CODE), ("notes.txt", MARKER))
    answer = import_gate.upload("alice", "repo.tgz", gzip.compress(plain[:1034]) + gzip.compress(plain[1034:]))
    assert_refused(answer, "not one whole gzip stream", import_gate)


def test_a_wrong_gzip_header_crc_hides_a_tar_gz_from_clamav(import_gate):
    """The gzip header says it has a CRC (FHCRC) and it is wrong: zlib, and so ClamAV, gives up and
    scans nothing inside; Python's gzip ignores that CRC, and tarfile lists and extracts the test
    signature (got through before its fix)."""
    plain = tar_of(("README.md", CODE), ("notes.txt", MARKER))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(plain) + deflate.flush()
    data = (b"\x1f\x8b\x08\x02" + bytes(5) + b"\xff" + b"\x00\x00" + body
            + struct.pack("<II", zlib.crc32(plain), len(plain)))
    assert gzip.decompress(data) == plain
    answer = import_gate.upload("alice", "repo.tgz", data)
    assert_refused(answer, "cannot be read as the malware scanner reads it", import_gate)


# ---- a revoked import ------------------------------------------------------------------------------
def test_revoked_import_is_not_left_in_the_mounted_folder(import_gate):
    """A revoked import was moved to ``.revoked-<id>`` (0700) inside ``imports/<project>/``, the
    folder workspaces mount: on Kubernetes the gate and the notebooks run as one uid
    (``workspace.uid``), and so do a developer's sandboxes, so the workspace read it still."""
    service, imports = import_gate.service, import_gate.imports
    view = imports.create("alice", PROJECT, [("tool.py", io.BytesIO(CODE))], "a tool")
    for who in ("olga", "omar"):
        view = service.review(who, view.id, {f.index: {"decision": "approve", "sha256": f.sha256}
                                             for f in view.files})
    service.release("omar", view.id)
    mounted = service.settings.paths.imports / PROJECT
    assert (mounted / view.id / "tool.py").read_bytes() == CODE
    service.revoke("root", view.id, "withdrawn: not what the justification said")
    left = [p for p in mounted.rglob("*") if p.is_file() and p.name != "MANIFEST.json"]
    assert left == [], left
    assert service.runtime.audit.entries(action="airlock.request.revoke")[-1].outcome == "ok"


def test_wheel_of_twenty_thousand_central_entries(tmp_path):
    """The package approval's wheel check parsed every entry before counting them too."""
    from pds_kernel.packages.wheelcheck import wheel_refusal

    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    body = entry * 20_000
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    wheel.write_bytes(local + body + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, len(body), len(local), 0))
    assert "lists more than 10000 members" in (wheel_refusal(wheel, 1 << 30) or "")


def _zip64(*members: tuple[str, bytes]) -> bytes:
    """A ZIP as the standard library writes it with ``force_zip64=True`` (sizes in a ZIP64 field)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            with zf.open(name, "w", force_zip64=True) as out:
                out.write(data)
    return buffer.getvalue()


def test_a_zip64_member_hides_a_signature_from_clamav(import_gate):
    """ClamAV 1.4 reads no ZIP64 local header: the deflated test signature passed the scan (and
    ``clamscan`` on the file alone says OK), zipfile in the workspace reads it."""
    answer = import_gate.upload("alice", "repo.zip", _zip64(("README.md", CODE), ("notes.txt", MARKER)))
    assert_refused(answer, "sized the ZIP64 way", import_gate)


def _corrupt_member(method: int) -> bytes:
    """A ZIP whose one member's compressed stream is damaged after its first bytes."""
    data = bytearray(zip_of(("tool.py", CODE * 100), compression=method))
    start = 30 + len("tool.py")
    for at in range(start, start + 12):
        data[at] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2], ids=["deflate", "bzip2"])
def test_a_damaged_compressed_member_ends_the_scan(import_gate, method):
    """zlib's error (deflate) and bz2's OSError escaped the listing: an error 500, the import
    neither refused with a reason nor audited (got through before its fix)."""
    answer = import_gate.upload("alice", "repo.zip", _corrupt_member(method))
    assert_refused(answer, "the ZIP archive cannot be read", import_gate)
