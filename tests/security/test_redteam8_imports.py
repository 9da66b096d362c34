"""Red team, eighth round: archives built to show the checker one thing and the workspace another,
or to slip content past the real ClamAV (the test's own signature database), uploaded to the real
gate over HTTP (tests/security/imports_support.py); wheels that say they are another release; a
staged import changed after its scan. Each asserts the attempt is refused with a reason that says
what to do, audited, and nothing is staged for review or released.

24 of the 25 archive attacks got through before :mod:`pds_kernel.airlock.archive_rules` (ClamAV
caught a deflated member whose local header said "stored"): the archive was listed, scanned clean
and staged for review, the test signatures inside an LZMA member, a ZIP appended to a TAR, a
member whose local header names another method, or a TAR member sized by its pax header among
them; ``unzip`` wrote ``evil_run.py`` for a member listed as ``README.md``. Before the name rules, the listing showed ``report<RLO>fdp.py`` and two ``a.py``. The four
wheels were accepted before ``check_identity``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import zipfile
import zlib

import pytest
import requests
from imports_support import (  # noqa: F401  (fixtures)
    HASHED,
    MARKER,
    assert_refused,
    gate_registry_fixture,
    import_gate_fixture,
    settings_fixture,
    tar_of,
    zip_of,
)

from pds_kernel.packages.wheelhouse import read_wheel

CODE = b"print('analysis')\n"
INNER = zip_of(("payload.py", b"import os; os.system('id')\n"))


def test_zip_member_compressed_with_lzma_hides_a_signature_from_clamav(import_gate):
    """ClamAV does not unpack an LZMA member (method 14); Python's zipfile reads it silently."""
    answer = import_gate.upload("alice", "repo.zip", zip_of(("notes.txt", MARKER), compression=zipfile.ZIP_LZMA))
    assert_refused(answer, "which the malware scanner does not unpack", import_gate)


def test_zip_prepended_to_another_zip_is_neither_listed_nor_scanned(import_gate):
    """ZIP A (with the signature) then ZIP B: zipfile lists B; ClamAV found nothing in A either."""
    answer = import_gate.upload("alice", "repo.zip", zip_of(("notes.txt", MARKER)) + zip_of(("README.md", CODE)))
    assert_refused(answer, "bytes outside its members", import_gate)


def test_zip_hidden_in_the_comment_of_a_zip(import_gate):
    """A ZIP whose comment ends with another ZIP: Python's zipfile takes the inner end record and
    lists only the hidden ``payload.py``, where a tool reading the outer one shows ``README.md``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("README.md", CODE)
        zf.comment = INNER
    answer = import_gate.upload("alice", "repo.zip", buffer.getvalue())
    assert_refused(answer, "bytes outside its members", import_gate)


@pytest.mark.parametrize("central,local", [(zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2),
                                           (zipfile.ZIP_BZIP2, zipfile.ZIP_STORED),
                                           (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED)],
                         ids=["deflate-said-bzip2", "bzip2-said-stored", "deflate-said-stored"])
def test_local_header_names_another_compression_than_the_central_directory(import_gate, central, local):
    """zipfile decompresses by the central directory, ClamAV by the local header: the first two
    carried the test signature past the scan (the third ClamAV caught on its own)."""
    archive = bytearray(zip_of(("notes.txt", MARKER * 3), compression=central))
    archive[8:10] = local.to_bytes(2, "little")  # the first local header's method
    answer = import_gate.upload("alice", "repo.zip", bytes(archive))
    assert_refused(answer, "described one way in its local header", import_gate)


def _tar_with_size_field(field: bytes) -> bytes:
    """A TAR of the script ClamAV knows by its MD5 (an ``.hdb`` signature), the size field of its
    ordinary header replaced by ``field`` (checksum fixed), after a pax header giving the real size."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("tool.py")
        info.size, info.pax_headers = len(HASHED), {"size": str(len(HASHED))}
        tf.addfile(info, io.BytesIO(HASHED))
    data = bytearray(buffer.getvalue())
    at = next(k for k in range(0, len(data), 512) if data[k:k + 7] == b"tool.py")
    data[at + 124:at + 136] = field
    data[at + 148:at + 156] = b"%06o\0 " % (sum(data[at:at + 148]) + 8 * 32 + sum(data[at + 156:at + 512]))
    return bytes(data)


@pytest.mark.parametrize("field", [b"00000000000\0", b"00000000001\0",
                                   bytes([0x80]) + len(HASHED).to_bytes(11, "big")],
                         ids=["pax-size-over-zero", "pax-size-over-one", "binary-size"])
def test_tar_member_sized_another_way_than_its_header(import_gate, field):
    """tarfile (and GNU tar) read the member by its pax or binary size, ClamAV by the ordinary
    header's: the file ClamAV knows by its hash passed the scan, all three ways."""
    answer = import_gate.upload("alice", "repo.tar", _tar_with_size_field(field))
    assert_refused(answer, "gives its size another way than its ordinary header", import_gate)


def test_zip_member_with_another_name_for_unzip(import_gate):
    """An Info-ZIP Unicode Path field: the listing (zipfile) says ``README.md``, ``unzip`` in the
    workspace writes ``evil_run.py``."""
    other = b"evil_run.py"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("README.md")
        info.extra = struct.pack("<HHBI", 0x7075, 5 + len(other), 1, zlib.crc32(b"README.md")) + other
        zf.writestr(info, CODE)
    answer = import_gate.upload("alice", "repo.zip", buffer.getvalue())
    assert_refused(answer, "carries another name for unzip", import_gate)


def test_zip_folder_holding_bytes(import_gate):
    """Listed as an empty folder, read back by ``zipfile.ZipFile.read("notes/")``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("README.md", CODE)
        folder = zipfile.ZipInfo("notes/")
        folder.external_attr = 0o40755 << 16 | 0x10
        zf.writestr(folder, b"import os; os.system('id')\n")
    answer = import_gate.upload("alice", "repo.zip", buffer.getvalue())
    assert_refused(answer, "is a folder holding", import_gate)


def test_zip_appended_to_a_tar_opens_as_a_zip_in_the_workspace(import_gate):
    """A TAR for the listing and ClamAV, a ZIP for ``zipfile.ZipFile`` in the workspace."""
    answer = import_gate.upload("alice", "repo.tar", tar_of(("README.md", CODE)) + zip_of(("notes.txt", MARKER)))
    assert_refused(answer, "data after its last member", import_gate)


def test_zip_appended_to_a_tar_gz(import_gate):
    answer = import_gate.upload("alice", "repo.tar.gz", gzip.compress(tar_of(("README.md", CODE)))
                                + zip_of(("notes.txt", MARKER)))
    assert_refused(answer, "data after its last member", import_gate)


def test_second_gzip_stream_after_the_tar_end(import_gate):
    """Concatenated gzip streams are one stream: the second's bytes come after the TAR's end."""
    answer = import_gate.upload("alice", "repo.tgz", gzip.compress(tar_of(("README.md", CODE)))
                                + gzip.compress(INNER))
    assert_refused(answer, "data after its last member", import_gate)


@pytest.mark.parametrize("build", [zip_of, tar_of], ids=["zip", "tar"])
def test_archive_behind_a_line_of_text_in_a_member(import_gate, build):
    """Only the first bytes were judged: ``zipfile`` opens a ZIP with a prefix just as well."""
    name = "repo.zip" if build is zip_of else "repo.tar"
    answer = import_gate.upload("alice", name, build(("notes.txt", b"just some notes\n" + INNER)))
    assert_refused(answer, "ends with a ZIP archive", import_gate)


@pytest.mark.parametrize("member", ["report\u202efdp.py", "a\u200bb.py", "line\nbreak.py", "bell\x07.py"],
                         ids=["right-to-left-override", "zero-width-space", "line-feed", "control"])
def test_member_name_that_shows_the_checker_another_name(import_gate, member):
    answer = import_gate.upload("alice", "repo.zip", zip_of((member, CODE)))
    assert_refused(answer, "invisible or control character", import_gate)


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("names", [("tool.py", "tool.py"), ("Tool.py", "tool.py"), ("caf\u00e9.py", "cafe\u0301.py"),
                                   ("./tool.py", "tool.py"), ("data", "data/x.csv")],
                         ids=["duplicate", "case", "unicode-form", "dot-slash", "file-and-folder"])
def test_two_members_with_one_name(import_gate, names):
    """The checker's tool shows the first, extraction in the workspace keeps the last (or a
    case-insensitive disk merges them)."""
    first, second = names
    for build, name in ((zip_of, "repo.zip"), (tar_of, "repo.tar")):
        answer = import_gate.upload("alice", name, build((first, CODE), (second, b"import os\n")))
        assert_refused(answer, "same name" if second != "data/x.csv" else "also holds as a file", import_gate)


def test_real_tools_archives_still_come_in(import_gate, tmp_path):
    """Control: archives as zip and tar write them (folders, ``./`` prefixes, data descriptors)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name in ("./", "./src", "./src/a.py"):
            info = tarfile.TarInfo(name)
            if name.endswith(".py"):
                info.size = len(CODE)
                tf.addfile(info, io.BytesIO(CODE))
            else:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
    streamed = _Unseekable()
    with zipfile.ZipFile(streamed, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("src/", b"")
        with zf.open("src/a.py", "w") as out:  # written to a pipe: sizes in a data descriptor
            out.write(CODE * 50)
    for name, content in (("repo.tgz", buffer.getvalue()), ("repo.zip", bytes(streamed.data))):
        answer = import_gate.upload("alice", name, content)
        assert answer.status_code == 201, (name, answer.text)


class _Unseekable(io.RawIOBase):
    def __init__(self):
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk) -> int:
        self.data += chunk
        return len(chunk)


# ---- packages: a wheel that says it is another project ---------------------------------------------
def _wheel(path, dist_info: str, name: str, version: str):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\n")
    return path


@pytest.mark.parametrize("dist_info,name,version", [
    ("evil-6.6.dist-info", "evil", "6.6"), ("texttable-1.7.0.dist-info", "evil", "1.7.0"),
    ("texttable-1.7.0.dist-info", "texttable", "9.9"), ("evil-1.7.0.dist-info", "texttable", "1.7.0"),
], ids=["all-other", "metadata-name", "metadata-version", "dist-info-name"])
def test_wheel_whose_metadata_names_another_project(tmp_path, dist_info, name, version):
    """The index lists a wheel under the project of its file name; its METADATA (what pip installs,
    what the approval's audit entry reads the licence from) must be that same release."""
    from pds_kernel.errors import InvalidInput

    path = _wheel(tmp_path / "texttable-1.7.0-py3-none-any.whl", dist_info, name, version)
    with pytest.raises(InvalidInput, match="says it is"):
        read_wheel(path)


def test_wheel_names_normalised_as_pep_503(tmp_path):
    """Control: ``Foo_Bar``, ``foo.bar`` and ``foo-bar`` are one project (PEP 503), so a wheel named
    one way whose METADATA spells it another is the same release."""
    path = _wheel(tmp_path / "Foo_Bar-1.0-py3-none-any.whl", "Foo_Bar-1.0.dist-info", "foo.bar", "1.0")
    info = read_wheel(path)
    assert (info.project, info.version) == ("foo-bar", "1.0")


# ---- the scan's verdict and the bytes released -----------------------------------------------------
def test_staged_import_changed_after_its_clean_scan_and_approval(import_gate):
    """The scan's verdict is stored with the file: bytes changed on the staging disk after the scan
    and the reviews (a flagged payload in place of the reviewed script) are never released."""
    from pds_kernel.airlock.models import RequestFile
    from pds_kernel.airlock.staging import request_dir
    from pds_kernel.db import transaction

    rid = import_gate.upload("alice", "tool.py", CODE).json()["id"]
    for who in ("olga", "omar"):
        assert import_gate.api(who, "POST", f"requests/{rid}/reviews",
                               json={"verdicts": {"0": {"decision": "approve", "comment": "read",
                                                                 "sha256": hashlib.sha256(CODE).hexdigest()}}}
                               ).status_code == 200
    service = import_gate.service
    with transaction(service.sessions) as s:
        stored = s.query(RequestFile).filter_by(request_id=rid).one().stored_name
    staged = request_dir(service.settings.paths.staging, "diab-2024", rid) / stored
    staged.chmod(0o644)
    staged.write_bytes(MARKER)
    answer = import_gate.api("olga", "POST", f"requests/{rid}/release", json={})
    assert answer.status_code == 409 and "changed since it was reviewed" in answer.json()["error"], answer.text
    assert not (service.settings.paths.imports / "diab-2024" / rid).exists()
    assert import_gate.api("olga", "GET", f"requests/{rid}").json()["state"] == "approved"


def test_member_name_with_markup_on_the_checkers_page(import_gate):
    """An archive's listing is shown to the checkers on the request's page (it was not: "no preview",
    the members only in the JSON): a member name is text there."""
    payload = '<img src=x onerror="alert(1)">.py'
    rid = import_gate.upload("alice", "repo.zip", zip_of((payload, CODE))).json()["id"]
    page = requests.get(import_gate.base + f"requests/{rid}", cookies={"fake_user": "olga"}, timeout=30)
    assert page.status_code == 200 and "onerror" in page.text  # listed...
    assert payload not in page.text and "<img" not in page.text  # ...as inert text
