"""Support of tests/security/test_disk_quota_attacks.py: a hostile rebuild child run in the gate's
real rebuild sandbox, hostile commands run in a researcher's real workspace sandbox, and what the
host's disk and mounts look like afterwards."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from pds_kernel.airlock import rebuild as rebuild_module
from pds_kernel.airlock.rebuild import release_copies
from pds_kernel.airlock.rebuild_sandbox import RebuildSandbox
from pds_kernel.airlock.staging import RefusedFiles, StagedFile

PROJECT = "diab-2024"
#: the bounds the tests give the rebuild sandbox: small, so that an attack that got through would
#: show at once (and cost little)
SCRATCH_MB = 8
SCRATCH_FILES = 64

#: the start of every hostile child: its items (as the sandbox sees them), its out folder, and
#: ``report(what)``, which ends it with ``what`` as the reason of every file (the gate hands the
#: reason back: the test reads what the child managed to do)
#: ``fill(path, total)``: write ``total`` bytes to ``path`` in blocks of 1 MiB: (bytes written, the
#: error that stopped it or None)
FILL = r"""
import errno, json, os, sys, time
def fill(path, total, block=1 << 20):
    written = 0
    try:
        with open(path, "wb") as fh:
            while written < total:
                written += fh.write(b"x" * min(block, total - written))
                fh.flush()
    except OSError as exc:
        return written, errno.errorcode.get(exc.errno, str(exc.errno))
    return written, None
"""
PRELUDE = FILL + r"""
items = json.load(sys.stdin)
out = os.path.dirname(items[0][1])
def report(what):
    sys.stdout.write(json.dumps({name: json.dumps(what) for _, _, name in items}))
    sys.stdout.flush()
    os._exit(0)
"""


def table_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"region": ["N", "S"], "persons": [120, 85]}), buffer)
    return buffer.getvalue()


def sandbox(tmp_path: Path) -> RebuildSandbox:
    return RebuildSandbox(PROJECT, tmp_path / "state" / "rebuilds", SCRATCH_MB, SCRATCH_FILES)


def hostile_rebuild(tmp_path: Path, monkeypatch, body: str) -> tuple[dict[str, str], Path]:
    """Submit one table whose rebuild runs ``PRELUDE + body`` in the real rebuild sandbox instead
    of the parsers (a child a crafted file took over); the reasons the gate refuses it with, and
    the request's staging folder. The staging folder must hold the submitted file only, unchanged."""
    staging = tmp_path / "staging" / PROJECT / "r1"
    staging.mkdir(parents=True)
    data = table_bytes()
    (staging / "0-t.parquet").write_bytes(data)
    monkeypatch.setattr(rebuild_module, "CHILD", [sys.executable, "-c", PRELUDE + body])
    staged = [StagedFile(0, "t.parquet", "0-t.parquet", "0" * 64, len(data))]
    try:
        release_copies(staging, staged, sandbox(tmp_path), holder="mallory")
    except RefusedFiles as refused:
        reasons = refused.reasons
    else:
        raise AssertionError("the gate took the hostile child's copy")
    assert sorted(p.name for p in staging.iterdir()) == ["0-t.parquet"], "partial output left behind"
    assert (staging / "0-t.parquet").read_bytes() == data
    return reasons, staging


def child_said(reasons: dict[str, str]):
    """What the hostile child reported (its reason), or None when the gate gave its own reason."""
    reason = reasons["t.parquet"]
    try:
        return json.loads(reason)
    except ValueError:
        return None


def mounts_under(path: Path) -> list[str]:
    """Mount points of this mount namespace at or below ``path``."""
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def disk_bytes(path: Path) -> int:
    """Bytes the files below ``path`` take on its disk (blocks, not apparent sizes)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def run_in_workspace(world, script: str, user: str = "alice", project: str = "proj-a") -> dict:
    """Run ``python -c script`` in the researcher's real workspace sandbox (the spec and command of
    a workspace start: :func:`pds_kernel.sandbox.exec.prepare_sandbox`); the JSON it prints last."""
    from pds_kernel.sandbox.exec import finish_sandbox, prepare_sandbox

    prepared = prepare_sandbox(world.runtime, user, project, [sys.executable, "-I", "-c", script],
                               actor="red-team")
    try:
        done = subprocess.run(prepared.argv, env=prepared.env, capture_output=True, cwd="/", timeout=300)
    finally:
        finish_sandbox(prepared)
    assert done.returncode == 0, done.stderr[-3000:].decode("utf-8", "replace")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])
