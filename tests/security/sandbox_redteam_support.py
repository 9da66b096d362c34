"""Support of tests/security/test_sandbox_redteam.py: attacks from inside a real workspace sandbox
on what the host shares with it (memory through its file systems in RAM, the disk through the
home, host services that read the home).

The registry, projects and secrets are those of the sandbox tests (``sandbox_support.world``)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
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


# ---- a FIFO in the home, declared as a model's data (the gate reads the declared files) ----------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai"))  # its helper module

import model_check_support as models  # noqa: E402

#: Replace the declared data table of the home by a FIFO (made inside the sandbox, as a researcher).
MAKE_FIFO = r"""
import os
path = "/home/jovyan/results/model_data.parquet"
os.remove(path)
os.mkfifo(path)
print("FIFO made", flush=True)
"""
#: Seconds the gate may take to answer a submission whose declared file is not a regular file.
GATE_ANSWER_SECONDS = 30


def model_submission_over_a_fifo(runtime) -> tuple[Path, dict, bytes]:
    """alice's home in the model-check project holds the declared files of a model, its data table
    replaced by a FIFO from inside her sandbox: (the FIFO's host path, declaration, model bytes)."""
    settings = runtime.settings
    rows = models.people(models.PROJECT, 600, seed=7)
    models.publish_cohort(settings, models.PROJECT, rows)
    home = models.home(settings, models.PROJECT, "alice")
    declaration = models.write_rows(home, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    run_in_sandbox(runtime, "alice", models.PROJECT, ["python", "-c", MAKE_FIFO], actor="red-team", timeout=60)
    fifo = home / declaration["data"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # the attempt planted it
    return fifo, declaration, models.reasonable_tree(rows)


def submit_in_a_thread(service, name: str, model: bytes, declaration: dict) -> tuple[threading.Thread, dict]:
    """Start the gate's submission in a thread: (the thread, where its view or error lands)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["view"] = models.submit(service, name, model, declaration)
        except Exception as exc:  # a refusal is an answer too
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="gate-submission", daemon=True)
    thread.start()
    return thread, outcome


def release_fifo_reader(fifo: Path) -> None:
    """Unblock a reader waiting on ``fifo``: open it for writing and close it (end of file)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
