"""The malware scan of imported files and wheels: ClamAV, run as ``clamscan`` or through ``clamd``.

``clamscan`` loads the whole signature database at every run: with the public databases (~350 MB
in memory) that is tens of seconds and about a gigabyte per imported file. With
``airlock.clamd_socket`` set, the gate hands each file to a running ``clamd`` instead
(``clamdscan --stream``: the bytes go over the socket, so clamd needs no access to the gate's
staging folder), which loaded the database once. On Kubernetes the chart runs that ``clamd`` beside
the gate in its pod (``airlock.clamd``), configured by :func:`clamd_config`.

Either way the verdict is read the same way, and deny by default: exit 0 is clean, 1 a signature
found; anything else (no scanner, no daemon or socket, no signatures, a file over the daemon's
stream limit, a timeout) refuses the file.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import is_socket_path

if TYPE_CHECKING:
    from .imports_scan import ImportLimits

log = logging.getLogger(__name__)


class MalwareRefusal(Exception):
    """The scan found a signature in ``file`` (its name; empty when unknown), or gave no verdict."""

    def __init__(self, message: str, file: str = ""):
        self.message, self.file = message, file
        super().__init__(message)


def check_socket_path(socket: str) -> str:
    """``socket`` as the settings give it: an absolute path of printable characters (it is written
    into clamdscan's configuration, a line per option)."""
    if not is_socket_path(socket):
        raise ValueError(f"airlock.clamd_socket must be an absolute path without blanks, not {socket[:80]!r}")
    return socket


def clamd_config(socket: str, database: str, max_file_bytes: int, max_unpacked_bytes: int) -> str:
    """The ``clamd.conf`` the gate expects of its daemon: the alerts and limits ``clamscan`` is given
    on its command line (encrypted and over-limit content is a finding), a stream limit that takes
    the largest file the gate accepts, in the foreground (its messages on standard output)."""
    return "\n".join([
        f"LocalSocket {check_socket_path(socket)}",
        "LocalSocketMode 660",
        f"DatabaseDirectory {database}",
        "Foreground yes",
        f"StreamMaxLength {max_file_bytes}",
        f"MaxFileSize {max_file_bytes}",
        f"MaxScanSize {max_unpacked_bytes}",
        "AlertEncrypted yes",
        "AlertExceedsMax yes",
        "",
    ])


@functools.lru_cache(maxsize=8)
def _clamdscan_config(socket: str) -> str:
    """A private ``clamdscan`` configuration naming ``socket`` (clamdscan reads the daemon's address
    from a configuration file only); one per socket and process."""
    directory = tempfile.mkdtemp(prefix="pds-clamdscan-")
    path = Path(directory) / "clamdscan.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"LocalSocket {check_socket_path(socket)}\n")
    return str(path)


def scanner_argv(paths: list[Path], limits: ImportLimits) -> list[str]:
    """The command that scans ``paths``: ``clamdscan`` through the daemon when ``limits.clamd_socket``
    is set, else ``clamscan`` with the alerts and limits on its command line."""
    files = ["--", *(str(path) for path in paths)]
    if limits.clamd_socket:
        return [limits.clamdscan, f"--config-file={_clamdscan_config(limits.clamd_socket)}", "--stream",
                "--no-summary", "--stdout", *files]
    argv = [limits.clamscan, "--no-summary", "--stdout", "--alert-encrypted=yes", "--alert-exceeds-max=yes",
            f"--max-filesize={limits.max_file_bytes}", f"--max-scansize={limits.max_unpacked_bytes}"]
    if limits.clamav_database:
        argv.append(f"--database={limits.clamav_database}")
    return [*argv, *files]


def scan_files(paths: list[Path], limits: ImportLimits) -> dict[str, Any]:
    """``{"verdict": "clean", ...}`` when every file of ``paths`` is clean, in one run, or raises
    :class:`MalwareRefusal` (a signature, naming the first file it was found in, or no verdict)."""
    argv = scanner_argv(paths, limits)
    scanner = Path(argv[0]).name
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limits.timeout_seconds, check=False)
    except FileNotFoundError:
        raise MalwareRefusal(f"the malware scanner ({scanner}) is not installed: the file cannot be scanned, "
                             "so it is refused; ask an admin") from None
    except subprocess.TimeoutExpired:
        raise MalwareRefusal(f"the malware scan took longer than {limits.timeout_seconds} s: the file is "
                             "refused") from None
    if done.returncode == 0:
        return {"verdict": "clean", "scanner": "clamav", "through": "clamd" if limits.clamd_socket else "clamscan"}
    if done.returncode == 1:
        found = [line.removesuffix(" FOUND") for line in done.stdout.splitlines() if line.endswith(" FOUND")]
        where, _, signature = found[0].rpartition(": ") if found else ("", "", "unknown")
        log.warning("%s found %s in %s", scanner, signature, where or paths)
        raise MalwareRefusal(f"the malware scan found {signature.strip()[:120]}: the file is refused",
                             file=Path(where).name if where else "")
    log.error("%s failed (%s): %s", scanner, done.returncode, (done.stderr or done.stdout)[-500:])
    raise MalwareRefusal(f"the malware scan could not run ({scanner} exit {done.returncode}): the file is "
                         "refused; ask an admin to check the scanner"
                         f"{', its daemon' if limits.clamd_socket else ''} and its signatures")
