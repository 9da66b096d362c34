"""Support of tests/security/test_sandbox_redteam.py: attacks from inside a real workspace sandbox
on what the host shares with it (memory through its file systems in RAM, the disk through the
home, host services that read the home).

The registry, projects and secrets are those of the sandbox tests (``sandbox_support.world``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from pds_kernel.project_end import home_quota_refusal
from pds_kernel.sandbox.exec import run_in_sandbox

MIB = 1024 * 1024

#: Fill one directory of the sandbox with one file, 4 MiB at a time, up to ``sys.argv[2]`` MiB;
#: prints how many MiB it could write and why it stopped.
FILL = r"""
import os, sys
directory, most = sys.argv[1], int(sys.argv[2])
written, reason = 0, "reached the target"
chunk = b"\xa5" * (4 << 20)
try:
    with open(os.path.join(directory, "fill"), "wb", buffering=0) as f:
        while written < most:
            f.write(chunk)
            written += 4
except OSError as exc:
    reason = exc.strerror
print("FILLED", written, reason, flush=True)
"""


def fill(world, directory: str, most_mb: int, capfd) -> tuple[int, str]:
    """Run :data:`FILL` in alice's sandbox of proj-a: (MiB written in ``directory``, why it stopped)."""
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", FILL, directory, str(most_mb)],
                   actor="red-team", timeout=180)
    out = capfd.readouterr().out
    line = next((line for line in out.splitlines() if line.startswith("FILLED ")), None)
    assert line is not None, out  # the attempt ran
    _, written, reason = line.split(" ", 2)
    return int(written), reason


def set_memory_limit(world, mem_limit_mb: int) -> None:
    world.registry.upsert_project("admin", "proj-a", mem_limit_mb=mem_limit_mb)


def disk_use(root: Path) -> int:
    """Bytes the file system really allocates below ``root`` (what ``du`` counts), links not followed."""
    total = os.lstat(root).st_blocks * 512
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def quota_refusal(world, home: Path, quota_mb: int) -> str | None:
    """What the hub's quota check says of ``home`` with ``project_end.home_quota_mb`` = ``quota_mb``."""
    settings = world.runtime.settings
    settings = replace(settings, project_end=replace(settings.project_end, home_quota_mb=quota_mb))
    return home_quota_refusal(settings, home)
