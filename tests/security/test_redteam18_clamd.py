"""Red team 18: the malware scan through a running ``clamd`` (``airlock.clamd_socket``, the chart's
default beside the gate, tests/k8s/test_chart_clamd.py), attacked as it was written. The daemon is
started here for real with :func:`pds_kernel.airlock.clamav.clamd_config` and the test's own
signatures. Tried: a marked file, a hashed one and one inside a ZIP streamed to the daemon; a file
larger than the daemon's stream limit (clamd stops reading it: a scanner that said nothing must not
pass it); no daemon at all; a socket setting that writes other options into clamdscan's
configuration (another daemon, another database). None got through: each is refused, and the
controls (a clean file, the gate's limits in the daemon's configuration) hold.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))  # tests/airlock's helpers

from import_signatures import HASHED, MARKER, write_signatures

from pds_kernel.airlock.clamav import MalwareRefusal, clamd_config, scan_files
from pds_kernel.airlock.imports_scan import ImportLimits, scan_import
from pds_kernel.errors import InvalidInput
from pds_kernel.settings import load_settings

CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
#: the daemon's stream limit here: small, so that a larger file shows what the daemon does with it
STREAM_LIMIT = 64 * 1024


def _ready(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            client.sendall(b"zPING\0")
            return client.recv(16).startswith(b"PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    """A running clamd on a Unix socket with the test's signatures; its socket's path."""
    root = tmp_path_factory.mktemp("clamd")
    sock = root / "clamd.sock"
    conf = root / "clamd.conf"
    conf.write_text(clamd_config(str(sock), str(write_signatures(root / "db")), STREAM_LIMIT, 4 * STREAM_LIMIT))
    daemon = subprocess.Popen([CLAMD, f"--config-file={conf}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _ready(sock):
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            pytest.fail(f"clamd did not start: {daemon.stderr.read().decode()[-500:]}")
        time.sleep(0.1)
    yield sock
    daemon.terminate()
    daemon.wait(10)


def limits(socket_path) -> ImportLimits:
    return ImportLimits(clamd_socket=str(socket_path), timeout_seconds=30)


def test_a_clean_file_is_clean_through_the_daemon(clamd, tmp_path):
    clean = tmp_path / "codes.csv"
    clean.write_bytes(b"code,label\nE11,type 2 diabetes\n")
    assert scan_files([clean], limits(clamd)) == {"verdict": "clean", "scanner": "clamav", "through": "clamd"}
    result = scan_import(clean, "codes.csv", limits(clamd))
    assert result["status"] == "pass" and result["clamav"]["through"] == "clamd"


def test_signatures_are_found_by_content_by_hash_and_inside_an_archive(clamd, tmp_path):
    marked, hashed, archive = tmp_path / "notes.txt", tmp_path / "load.py", tmp_path / "bundle.zip"
    marked.write_bytes(MARKER)
    hashed.write_bytes(HASHED)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("docs/notes.txt", MARKER)
    archive.write_bytes(packed.getvalue())
    for path, signature in ((marked, "PDS.Test.Marker"), (hashed, "PDS.Test.Hashed"), (archive, "PDS.Test.Marker")):
        with pytest.raises(MalwareRefusal, match=signature) as refused:
            scan_files([path], limits(clamd))
        assert refused.value.file == path.name
    result = scan_import(archive, "bundle.zip", limits(clamd))
    assert result["status"] == "fail" and result["rules"] == {"malware": "fail"}


def test_no_daemon_is_no_verdict_and_a_refusal(tmp_path):
    clean = tmp_path / "codes.csv"
    clean.write_bytes(b"code\nE11\n")
    with pytest.raises(MalwareRefusal, match="could not run .*its daemon"):
        scan_files([clean], limits(tmp_path / "no-such.sock"))


def test_a_file_over_the_daemons_stream_limit_is_refused_not_passed(clamd, tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(b"E11\n" * (STREAM_LIMIT // 2))  # twice the limit: clamd stops reading it
    with pytest.raises(MalwareRefusal, match="could not run"):
        scan_files([big], limits(clamd))


def test_the_socket_setting_cannot_write_other_options():
    """``airlock.clamd_socket`` is written into clamdscan's configuration, an option a line: a new
    line in it would add options of the caller's choosing (another daemon, another database)."""
    for value in ("/run/clamd.sock\nTCPSocket 3310", "run/clamd.sock", "/run/clamd sock", "/run/\tx"):
        with pytest.raises(InvalidInput, match="clamd_socket"):
            load_settings(environ={"PDS_AIRLOCK__CLAMD_SOCKET": value})
    with pytest.raises(ValueError, match="clamd_socket"):
        clamd_config("/run/x.sock\nDatabaseDirectory /tmp", "/db", 1, 1)
    chosen = load_settings(environ={"PDS_AIRLOCK__CLAMD_SOCKET": "/run/clamd/clamd.sock"})
    assert ImportLimits.from_settings(chosen).clamd_socket == "/run/clamd/clamd.sock"


def test_the_gates_limits_reach_the_daemon():
    """What clamscan is told on its command line, clamd is told in its configuration."""
    text = clamd_config("/run/clamd/clamd.sock", "/srv/pds/clamav", 100 * 2**20, 500 * 2**20)
    lines = set(text.splitlines())
    assert {"AlertEncrypted yes", "AlertExceedsMax yes", f"StreamMaxLength {100 * 2**20}",
            f"MaxFileSize {100 * 2**20}", f"MaxScanSize {500 * 2**20}", "DatabaseDirectory /srv/pds/clamav",
            "LocalSocket /run/clamd/clamd.sock", "Foreground yes"} <= lines
