"""Red team 11 on the curated package index: a malicious upstream author, an upstream index that
answers what it likes, and a researcher in her sandbox. Each test is one real attempt, asserted to
fail: a real upstream index over loopback, real ``pip download`` at approval, real ``clamscan``
with the tests' signatures, the real index server, and (for what a researcher installs) the real
sandbox. A docstring says "got through before its fix" when the attempt succeeded before
:mod:`pds_kernel.packages.wheelcheck` and the other changes of this red team."""

from __future__ import annotations

import hashlib
import shutil
import socket
import struct
import subprocess
import zipfile

import pytest
import redteam11_packages_support as support
from package_index_support import PDS, in_sandbox, write_config
from redteam11_packages_support import ADMIN, MARKER, members, wheel_name, write_wheel

from pds_kernel.errors import InvalidInput, NotFound
from pds_kernel.packages.service import PackageRefused, PackageService

pytestmark = [pytest.mark.skipif(shutil.which("clamscan") is None, reason="ClamAV is not installed"), pytest.mark.slow]

world = support.world
hostile = support.hostile
EVIL = b"# " + MARKER  # what the tests' signature flags, as a comment in a module


def _refused(hostile, requirement: str, match: str) -> None:
    """The approval is refused with ``match``, nothing is served, the refusal is audited."""
    with pytest.raises(PackageRefused, match=match):
        hostile.approve(requirement)
    assert hostile.served() == {}
    assert not list((hostile.runtime.settings.paths.packages / "files").glob("*.whl"))
    (entry,) = hostile.denied(requirement)
    assert entry.actor == ADMIN and entry.details["file"] and entry.details["reason"]


def _patch_local_method(path, member: str, method: int) -> None:
    """Rewrite the compression method in ``member``'s local header only (the central directory,
    which zipfile and pip read, keeps the real one)."""
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(member).header_offset
    data = bytearray(path.read_bytes())
    data[offset + 8:offset + 10] = struct.pack("<H", method)
    path.write_bytes(bytes(data))


# ---- the archive: what ClamAV scans and what pip unpacks must be the same bytes ---------------------
def test_a_signature_in_an_lzma_member_is_refused(hostile, tmp_path):
    """Got through before its fix: ClamAV does not unpack an LZMA member, pip (zipfile) does; the
    wheel carrying the tests' signature was approved and served."""
    files = members("pds-lzma", "1.0", EVIL)
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-lzma", "1.0"), files,
                                methods={"pds_lzma/__init__.py": zipfile.ZIP_LZMA}))
    _refused(hostile, "pds-lzma==1.0", "compressed with method 14")


def test_a_local_header_that_lies_about_the_compression_is_refused(hostile, tmp_path):
    """Got through before its fix: a bzip2 member whose local header says "deflate": ClamAV
    decompresses by the local header and finds nothing, zipfile by the central directory."""
    wheel = write_wheel(tmp_path / wheel_name("pds-liar", "1.0"), members("pds-liar", "1.0", EVIL),
                        methods={"pds_liar/__init__.py": zipfile.ZIP_BZIP2})
    _patch_local_method(wheel, "pds_liar/__init__.py", zipfile.ZIP_DEFLATED)
    hostile.publish(wheel)
    _refused(hostile, "pds-liar==1.0", "local header")


def test_two_archives_in_one_wheel_are_refused(hostile, tmp_path):
    """Got through before its fix: a clean wheel, then a second one after it holding the tests'
    signature (deflated). zipfile (so pip) reads the last central directory, the second archive;
    ClamAV did not find the signature in it."""
    clean = write_wheel(tmp_path / "clean" / wheel_name("pds-twin", "1.0"), members("pds-twin", "1.0"))
    evil = write_wheel(tmp_path / "evil" / wheel_name("pds-twin", "1.0"), members("pds-twin", "1.0", EVIL))
    both = tmp_path / wheel_name("pds-twin", "1.0")
    both.write_bytes(clean.read_bytes() + evil.read_bytes())
    with zipfile.ZipFile(both) as archive:  # what pip would install
        assert archive.read("pds_twin/__init__.py") == EVIL
    hostile.publish(both)
    _refused(hostile, "pds-twin==1.0", "bytes outside its members")


def test_bytes_before_the_first_member_are_refused(hostile, tmp_path):
    """Got through before its fix: a script in front of the archive (zipfile skips it)."""
    wheel = write_wheel(tmp_path / "w" / wheel_name("pds-front", "1.0"), members("pds-front", "1.0"))
    front = tmp_path / wheel_name("pds-front", "1.0")
    front.write_bytes(b"#!/bin/sh\necho payload\nexit 0\n" + wheel.read_bytes())
    hostile.publish(front)
    _refused(hostile, "pds-front==1.0", "bytes outside its members")


@pytest.mark.parametrize(("member", "match"), [
    ("../pds_escape.py", "climbs out"),
    ("pds_path/../../../../tmp/pds_escape.py", "climbs out"),
    ("/tmp/pds_escape.py", "absolute path"),
    ("..\\pds_escape.py", "climbs out"),
    ("pds_path-1.0.data/data/../../../pds_escape.py", "climbs out"),
    ("pds_path-1.0.data/etc/pds_escape.py", "not an install scheme"),
    ("pds_path/read\u202eyp.txt", "invisible or control character"),
], ids=["dotdot", "nested-dotdot", "absolute", "backslash", "data-scheme-dotdot", "unknown-scheme", "rlo"])
def test_a_member_path_out_of_the_install_folder_is_refused(hostile, tmp_path, member, match):
    """Got through before its fix (every one was approved and served; pip refuses some of them at
    install, not all: a backslash is a file name on Linux)."""
    files = members("pds-path", "1.0", extra=((member, b"print('escaped')\n"),))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-path", "1.0"), files))
    _refused(hostile, "pds-path==1.0", match)


def test_a_symbolic_link_member_is_refused(hostile, tmp_path):
    """Got through before its fix: a member whose Unix mode says "symbolic link" to /etc/passwd."""
    files = members("pds-link", "1.0", extra=(("pds_link/passwd", b"/etc/passwd"),))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-link", "1.0"), files,
                                modes={"pds_link/passwd": 0o120777}))
    _refused(hostile, "pds-link==1.0", "symbolic link")


def test_two_members_with_one_name_are_refused(hostile, tmp_path):
    """Got through before its fix: ``pds_dup/__init__.py`` twice; a listing or RECORD shows the
    first, zipfile (pip) installs the last."""
    files = members("pds-dup", "1.0", b"VALUE = 'reviewed'\n")
    files.insert(1, ("pds_dup/__init__.py", b"VALUE = 'installed'\n"))
    with pytest.warns(UserWarning, match="Duplicate name"):
        hostile.publish(write_wheel(tmp_path / wheel_name("pds-dup", "1.0"), files))
    _refused(hostile, "pds-dup==1.0", "same name")


def test_an_encrypted_member_is_refused(hostile, tmp_path):
    """A member flagged as encrypted cannot be scanned (ClamAV alerts on it too)."""
    files = members("pds-crypt", "1.0", extra=(("pds_crypt/data.bin", b"\x00" * 64),))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-crypt", "1.0"), files, flags={"pds_crypt/data.bin": 0x1},
                                method=zipfile.ZIP_STORED))
    _refused(hostile, "pds-crypt==1.0", "encrypted")


def test_a_folder_member_holding_bytes_is_refused(hostile, tmp_path):
    """Got through before its fix: ``pds_dir/`` (a folder to a listing) holding a payload that
    ``ZipFile.read`` returns."""
    files = members("pds-dir", "1.0", extra=(("pds_dir/sub/", b"print('hidden')\n"),))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-dir", "1.0"), files))
    _refused(hostile, "pds-dir==1.0", "folder holding")


# ---- RECORD, sizes, counts ------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["unlisted", "wrong-hash", "listed-absent"])
def test_a_record_that_is_not_the_contents_is_refused(hostile, tmp_path, case):
    """Got through before its fix: pip does not check RECORD against the files it installs."""
    dist = "pds_rec-1.0.dist-info"
    files = members("pds-rec", "1.0")
    lines = [support.record_line(n, d) for n, d in files[:-1]]
    if case == "unlisted":
        files.insert(0, ("pds_rec/hidden.py", b"import os\n"))
    elif case == "wrong-hash":
        lines[0] = support.record_line("pds_rec/__init__.py", b"VALUE = 'something else'\n")
    else:
        lines.append(support.record_line("pds_rec/gone.py", b"x = 1\n"))
    files[-1] = (f"{dist}/RECORD", ("\n".join([*lines, f"{dist}/RECORD,,"]) + "\n").encode())
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-rec", "1.0"), files))
    _refused(hostile, "pds-rec==1.0", "RECORD")


def test_a_compression_bomb_is_refused(hostile, tmp_path):
    """Got through before its fix: 16 MiB of zeros in 16 KiB (the scan reads up to 4 GiB, so a
    wheel of a few MiB could fill every home that installs it with gigabytes)."""
    files = members("pds-bomb", "1.0", extra=(("pds_bomb/zeros.bin", bytes(16 * 1024 * 1024)),))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-bomb", "1.0"), files))
    _refused(hostile, "pds-bomb==1.0", "times its size")


def test_more_members_than_the_scan_reads_are_refused(hostile, tmp_path):
    """10,001 members, the signature in the last: past ClamAV's default file limit (which alerts
    with --alert-exceeds-max); the member limit refuses it before the scan."""
    extra = tuple((f"pds_many/m{i}.py", b"") for i in range(10_000)) + (("pds_many/last.py", EVIL),)
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-many", "1.0"), members("pds-many", "1.0", extra=extra),
                                method=zipfile.ZIP_STORED))
    _refused(hostile, "pds-many==1.0", "more than 10000 members")


def test_a_huge_metadata_is_refused(hostile, tmp_path):
    """Got through before its fix: a 2 MiB description in METADATA, read whole at approval."""
    files = members("pds-huge", "1.0", metadata=("Summary: " + "A" * (2 * 1024 * 1024),))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-huge", "1.0"), files))
    _refused(hostile, "pds-huge==1.0", "METADATA is")


def test_a_dist_info_of_another_version_is_refused_and_audited(hostile, tmp_path):
    """A ``.dist-info`` folder of another version (pip does not check it): refused before too (red
    team 8), but without an audit entry; the refusal now has one."""
    files = [(n.replace("pds_ident-1.0.dist-info", "pds_ident-6.6.dist-info"), d) for n, d in members("pds-ident", "1.0")]
    wheel = write_wheel(tmp_path / wheel_name("pds-ident", "1.0"), support.rerecord(files))
    hostile.publish(wheel)
    _refused(hostile, "pds-ident==1.0", "says it is pds-ident 1.0 .METADATA, in pds_ident-6.6.dist-info")


# ---- the upstream index's answers ---------------------------------------------------------------
def test_upstream_lists_another_projects_file_under_an_approved_name(hostile, tmp_path):
    """``/simple/pds-name/`` upstream links ``pds_other-1.0``: pip downloads only files of the
    project asked for, so the approval finds nothing; pds-other is not served."""
    other = write_wheel(tmp_path / wheel_name("pds-other", "1.0"), members("pds-other", "1.0"))
    hostile.publish(other, project="pds-name")
    with pytest.raises(NotFound, match="cannot download pds-name==1.0"):
        hostile.approve("pds-name==1.0")
    assert hostile.served() == {}


def test_upstream_serving_other_bytes_than_its_hash_is_refused(hostile, tmp_path):
    """The upstream page gives one SHA-256 and serves other bytes: pip download refuses them."""
    wheel = write_wheel(tmp_path / wheel_name("pds-swap", "1.0"), members("pds-swap", "1.0"))
    hostile.publish(wheel, sha256=hashlib.sha256(b"the reviewed bytes").hexdigest())
    with pytest.raises(NotFound, match="cannot download pds-swap==1.0"):
        hostile.approve("pds-swap==1.0")
    assert hostile.served() == {}


def test_upstream_changing_a_file_after_approval_changes_nothing_served(hostile, tmp_path):
    """The upstream serves other bytes for the same file name after the approval: the index keeps
    serving the approved bytes (their hash is the audit entry's); a second approval of the same
    release is refused and audited (it was refused before without an audit entry, and a closure
    whose later wheel clashed left copies of its earlier wheels in the files folder)."""
    name = wheel_name("pds-later", "1.0")
    hostile.publish(write_wheel(tmp_path / "v1" / name, members("pds-later", "1.0")))
    (approved,) = hostile.approve("pds-later==1.0")
    hostile.publish(write_wheel(tmp_path / "v2" / name, members("pds-later", "1.0", b"VALUE = 2\n")))
    with pytest.raises(PackageRefused, match="another SHA-256"):
        hostile.approve("pds-later==1.0")
    served = hostile.runtime.settings.paths.packages / "files" / name
    assert hashlib.sha256(served.read_bytes()).hexdigest() == approved.sha256
    assert sorted(p.name for p in served.parent.iterdir()) == [name]
    assert hostile.denied("pds-later==1.0")[0].details["file"] == name


# ---- names ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["pds-hell\u043e", "pds\u2010hello", "\uff50ds-hello", "pds-hello\u200b"],
                         ids=["cyrillic-o", "unicode-hyphen", "fullwidth-p", "zero-width"])
def test_a_look_alike_name_is_neither_requested_nor_approved(hostile, spelling):
    """Unicode look-alikes of an ASCII name: refused as invalid names, by request and approval."""
    with pytest.raises(InvalidInput, match="invalid package name"):
        PackageService(hostile.runtime).request("alice", "proj-a", spelling)
    with pytest.raises(InvalidInput, match="invalid package name"):
        hostile.approve(f"{spelling}==1.0")


def _raw(port: int, target: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(400).split(b"\r\n")[0]


def test_index_urls_reach_only_the_approved_projects_normalised_names(hostile, tmp_path):
    """Spellings of an approved project's URL other than its PEP 503 name (pip normalises before
    asking), percent-encodings, an absolute request target and a look-alike reach nothing."""
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-ok", "1.0"), members("pds-ok", "1.0")))
    hostile.approve("pds-ok==1.0")
    file = wheel_name("pds-ok", "1.0").encode()
    with support.ThreadedIndex(hostile.runtime.settings.paths.packages) as index:
        assert _raw(index.server.port, b"/simple/pds-ok/") == b"HTTP/1.1 200 OK"
        assert _raw(index.server.port, b"/files/" + file) == b"HTTP/1.1 200 OK"
        for target in (b"/simple/PDS_OK/", b"/simple/pds_ok/", b"/simple/pds.ok/", b"/simple/pds%2dok/",
                       b"/files/" + file.upper(), b"/files/%70ds_ok-1.0-py3-none-any.whl",
                       b"/files/" + file + b"/", b"http://127.0.0.1/files/" + file,
                       b"/simple/pds-\xd0\xbek/", b"/simple/pds-ok/%2e%2e/%2e%2e/index.json"):
            assert _raw(index.server.port, target) in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request"), target
        assert _raw(index.server.port, b"/simple/pds-ok-other/").startswith(b"HTTP/1.1 200 Not Approved")


# ---- what the administrator reads ---------------------------------------------------------------
def test_a_licence_with_terminal_escapes_reaches_no_terminal(hostile, tmp_path):
    """Got through before its fix: a ``License`` of METADATA holding escape sequences (here one
    that retitles the terminal and one that clears the screen) was stored and printed as is by
    ``pds packages list`` in the administrator's terminal (rich escapes markup, not control codes)."""
    licence = "MIT\x1b]0;owned\x07\x1b[2J\x1b[1;1H"
    files = members("pds-ansi", "1.0", metadata=(f"License: {licence}",))
    files = support.rerecord([(n, d.replace(b"License-Expression: MIT\n", b"")) for n, d in files])
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-ansi", "1.0"), files))
    (approved,) = hostile.approve("pds-ansi==1.0")
    assert approved.licence.startswith("MIT") and "\x1b" not in approved.licence and "\x07" not in approved.licence
    config = write_config(hostile.runtime.settings, tmp_path / "pds.yaml", ADMIN)
    listed = subprocess.run([PDS, "-c", str(config), "packages", "list"], capture_output=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "TERM": "xterm", "FORCE_COLOR": "1", "COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert b"pds-ansi" in listed.stdout and b"\x1b]0;owned" not in listed.stdout and b"\x1b[2J" not in listed.stdout
    (entry,) = [e for e in hostile.runtime.audit.entries(action="packages.approve") if e.outcome != "denied"]
    assert "\x1b" not in entry.details["files"][0]["licence"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_startup_hooks_are_named_in_the_approval_and_do_not_run_in_the_local_sandbox(hostile, tmp_path):
    """A ``.pth`` file runs at every interpreter start-up where it sits in a site folder; a console
    entry point installs a command. Neither is refused (real packages ship both: coverage,
    editable installs, every CLI), but the approval's audit entry now names them for the
    administrator (it did not). In the local sandbox the install prefix is on ``PYTHONPATH``, which
    is not a site folder: the ``.pth`` does not run; it would on Kubernetes (``~/.local`` is the
    user site), with the researcher's own rights, like the package's import-time code."""
    pth = b"import os; open(os.path.expanduser('~/pth-ran'), 'w').write('ran')\n"
    entry_points = b"[console_scripts]\npds-hook = pds_hook:main\n"
    files = members("pds-hook", "1.0", b"def main():\n    print('hook command ran')\n",
                    extra=(("pds_hook.pth", pth), ("pds_hook-1.0.dist-info/entry_points.txt", entry_points)))
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-hook", "1.0"), files))
    hostile.approve("pds-hook==1.0")
    (entry,) = [e for e in hostile.runtime.audit.entries(action="packages.approve") if e.outcome != "denied"]
    hooks = entry.details["files"][0]["runs_without_import"]
    assert any(h.startswith("pds_hook.pth") for h in hooks) and any(h.startswith("pds-hook ") for h in hooks)
    code, out, _ = in_sandbox(hostile.runtime, tmp_path, "pip install pds-hook && python -c 'print(40 + 2)' "
                              "&& pds-hook; ls $HOME")
    assert "Successfully installed pds-hook-1.0" in out and "42" in out, out
    home = hostile.runtime.settings.paths.homes / "proj-a" / "alice"
    assert not (home / "pth-ran").exists(), out


# ---- versions the platform cannot name ------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.0+evil", "1!1.0"], ids=["local-label", "epoch"])
def test_a_dependency_whose_version_the_platform_cannot_name_is_refused(hostile, tmp_path, version):
    """Got through before its fix: the upstream's only ``pds-dep`` is ``1.0+evil`` (a local
    version) or ``1!1.0`` (an epoch), which pip takes for an unpinned dependency (here from a
    static upstream that decodes the ``%2B`` pip asks for). The approval served it, and no
    ``pds packages revoke`` could name it (``pds-dep==1.0+evil``: invalid version; ``==1.0``: not
    approved); nor could pip in a workspace download it (the index does not decode ``%2B``)."""
    top = members("pds-top", "1.0", metadata=("Requires-Dist: pds-dep",))
    with support.StaticUpstream(tmp_path / "static", hostile) as static:
        static.publish(write_wheel(tmp_path / wheel_name("pds-top", "1.0"), top))
        static.publish(write_wheel(tmp_path / wheel_name("pds-dep", version), members("pds-dep", version)))
        _refused(hostile, "pds-top==1.0", "not a public release")


def test_markup_in_requires_python_stays_an_attribute_value(hostile, tmp_path):
    """``Requires-Python`` of METADATA is published in the index's page (``data-requires-python``):
    a quote and markup in it stay inside the attribute."""
    files = support.rerecord([(n, d.replace(b"Requires-Python: >=3.9", b'Requires-Python: >=3.9"><script>x()</script>'))
                              for n, d in members("pds-markup", "1.0")])
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-markup", "1.0"), files))
    hostile.approve("pds-markup==1.0")  # pip does not refuse the specifier
    with support.ThreadedIndex(hostile.runtime.settings.paths.packages) as index:
        with socket.create_connection(("127.0.0.1", index.server.port), timeout=10) as s:
            s.sendall(b"GET /simple/pds-markup/ HTTP/1.1\r\nHost: x\r\n\r\n")
            page = b"".join(iter(lambda: s.recv(65536), b""))
    assert b"<script" not in page and b"&lt;script&gt;" in page


@pytest.mark.parametrize("archive", ["pds_egg-1.0-py3.11.egg", "pds-egg-1.0.zip"], ids=["egg", "zip-sdist"])
def test_an_egg_or_a_zip_source_archive_is_never_approved(hostile, tmp_path, archive):
    """The upstream offers ``pds-egg`` only as an egg or a ZIP source archive (whose setup.py
    would write a marker): the approval downloads wheels only, so it fails and nothing ran."""
    marker = tmp_path / "setup-py-ran"
    path = write_wheel(tmp_path / archive, [("pds-egg-1.0/setup.py", f"open({str(marker)!r}, 'w')\n".encode()),
                                            ("EGG-INFO/PKG-INFO", b"Metadata-Version: 1.1\nName: pds-egg\nVersion: 1.0\n")])
    with support.StaticUpstream(tmp_path / "static", hostile) as static:
        static.publish(path, project="pds-egg")
        with pytest.raises(NotFound, match="cannot download pds-egg==1.0 as wheels"):
            hostile.approve("pds-egg==1.0")
    assert not marker.exists() and hostile.served() == {}
