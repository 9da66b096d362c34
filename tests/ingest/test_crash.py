"""kill -9 in the middle of an ingest, then a re-run, gives the lake of one clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from delivery_factory import make_rows, write_delivery

from pds_kernel import lake as lake_mod
from pds_kernel.errors import IntegrityError
from pds_kernel.ingest import ingest_delivery
from pds_kernel.runtime import Runtime
from pds_kernel.settings import load_settings
from pds_kernel.snds.tables import TABLES

pytestmark = pytest.mark.slow

MONTHS = ("202301", "202302", "202303", "202304", "202305", "202306")


def _config(root: Path) -> Path:
    root.mkdir(parents=True)
    config = root / "pds.yaml"
    config.write_text("paths:\n" + "".join(f"  {p}: {p}\n" for p in ("lake", "reports", "state", "raw"))
                      + "ingest:\n  batch_rows: 150\n")
    return config


def _snapshot(root: Path) -> dict:
    """Everything that must be equal between two lakes: table contents, quarantine, manifest counts."""
    lake = root / "lake"
    out = {}
    for table in TABLES:
        if lake_mod.has_table(lake, table):
            frame = lake_mod.scan_table(lake, table).collect()
            out[table] = frame.sort(list(TABLES[table].primary_key)).to_dicts()
    out["quarantine"] = {str(p.relative_to(lake)): p.read_text() for p in sorted((lake / "_quarantine").glob("*/*.csv"))}
    manifest = json.loads((lake / "_manifest.json").read_text())["files"]
    # a killed run and its re-run may take more table versions than one clean run: same content
    out["manifest"] = {name: {k: v for k, v in e.items() if k not in ("run", "version")}
                       for name, e in manifest.items()}
    out["files"] = sorted(str(p.relative_to(lake)) for p in lake.rglob("*.parquet")
                          if "_delta_log" not in p.parts)
    return out


def _corrupt(delivery: Path) -> None:
    prs = delivery / "ER_PRS_F_202303.csv"
    prs.write_text(prs.read_text(encoding="latin-1") + "1;2\n", encoding="latin-1")


@pytest.fixture(scope="module")
def crash_delivery(tmp_path_factory) -> Path:
    delivery = write_delivery(tmp_path_factory.mktemp("crash") / "delivery", make_rows(persons=1200, months=MONTHS))
    _corrupt(delivery)
    return delivery


@pytest.fixture(scope="module")
def clean(crash_delivery, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clean") / "pds"
    runtime = Runtime(load_settings(_config(root)))
    ingest_delivery(runtime, crash_delivery, actor="tester")
    runtime.close()
    return _snapshot(root)


def _wait_for(condition, proc, timeout=60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            return True
        time.sleep(0.002)
    return False


@pytest.mark.parametrize("moment", ["parsing", "committed", "manifest"])
def test_kill_then_rerun_equals_clean_run(crash_delivery, clean, tmp_path, moment):
    root = tmp_path / "pds"
    config = _config(root)
    lake = root / "lake"
    conditions = {
        "parsing": lambda: any((lake / "_staging").glob("*/*/*.parquet")),
        "committed": lambda: any((lake / "ER_PRS_F").glob("*/*.parquet")),
        # files are recorded in the manifest's journal as they are committed (the whole manifest
        # is written at the end of the run)
        "manifest": lambda: (lake / "_manifest.journal").exists() or (lake / "_manifest.json").exists(),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pds_kernel.cli import main; main()", "--config", str(config),
         "ingest", str(crash_delivery)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})
    try:
        killed = _wait_for(conditions[moment], proc)
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert killed, f"the ingest finished before reaching {moment!r}: make the delivery bigger"
    # the lake as left by the kill is readable or absent, never half-written
    for path in lake.glob("*/*/*.parquet"):
        pl.read_parquet_schema(path)
    runtime = Runtime(load_settings(config))
    result = ingest_delivery(runtime, crash_delivery, actor="tester")
    runtime.close()
    assert all(f.rows_read == f.rows_loaded + f.rows_quarantined for f in result.files)
    assert _snapshot(root) == clean


def test_a_run_killed_while_creating_a_table_is_repaired_by_the_next(crash_delivery, clean, tmp_path):
    """The state a kill leaves in the middle of a table's first commit (found by the test above,
    once in a few runs): the table's ``_delta_log/`` made, version 0 staged beside its final name
    and not linked yet, the table's file moved into the lake. Every reader refused such a log
    ("no files in log segment"); the next run removes it and the file, and builds the clean lake."""
    root = tmp_path / "pds"
    config = _config(root)
    log_dir = root / "lake" / "IR_BEN_R" / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / "00000000000000000000.json#1").write_text('{"protocol":{"minReaderVersion":1')
    moved = root / "lake" / "IR_BEN_R" / "snapshot" / "IR_BEN_R.parquet"
    moved.parent.mkdir()
    pl.DataFrame({"x": [1]}).write_parquet(moved)
    with pytest.raises(IntegrityError, match="killed while creating it; run pds ingest again"):
        lake_mod.versions.files_at(root / "lake", "IR_BEN_R")  # what a reader is told meanwhile
    runtime = Runtime(load_settings(config))
    ingest_delivery(runtime, crash_delivery, actor="tester")
    run = [e for e in runtime.audit.entries() if e.action == "ingest.run"][-1]
    runtime.close()
    assert run.details["unfinished_logs_removed"] == ["IR_BEN_R"]  # the repair is in the audit trail
    assert _snapshot(root) == clean


@pytest.fixture(scope="module")
def correction(crash_delivery, tmp_path_factory) -> Path:
    """A correction of March: the delivery's file less its last 40 claims."""
    fix = tmp_path_factory.mktemp("fix") / "fix"
    fix.mkdir()
    lines = (crash_delivery / "ER_PRS_F_202303.csv").read_text(encoding="latin-1").splitlines(keepends=True)
    (fix / "ER_PRS_F_202303.csv").write_text("".join(lines[:-41] + lines[-1:]), encoding="latin-1")
    return fix


def _corrected_snapshot(root: Path) -> dict:
    out = _snapshot(root)
    # a correction's file is named after its run: compare the names without the run
    out["files"] = sorted(f.split(".2")[0] for f in out["files"])
    for entry in out["manifest"].values():
        entry["superseded"] = [f.split(".2")[0] for f in entry.get("superseded") or []]
        if entry.get("parquet"):
            entry["parquet"] = entry["parquet"].split(".2")[0]
        if entry.get("quarantine"):
            entry["quarantine"] = entry["quarantine"].split(".2")[0]
    out["quarantine"] = {k.split(".2")[0]: v for k, v in out["quarantine"].items()}
    return out


def test_kill_during_a_correction_then_rerun_equals_clean_correction(crash_delivery, correction, tmp_path):
    clean_root, root = tmp_path / "clean", tmp_path / "pds"
    for r in (clean_root, root):
        runtime = Runtime(load_settings(_config(r)))
        ingest_delivery(runtime, crash_delivery, actor="tester")
        runtime.close()
    runtime = Runtime(load_settings(clean_root / "pds.yaml"))
    ingest_delivery(runtime, correction, actor="tester", corrections=True)
    runtime.close()
    lake = root / "lake"
    before = {p for p in (lake / "ER_PRS_F").rglob("*.parquet")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pds_kernel.cli import main; main()", "--config", str(root / "pds.yaml"),
         "ingest", "--correction", str(correction)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})
    try:  # kill once the corrected file is in the lake, before or while its version is committed
        killed = _wait_for(lambda: set((lake / "ER_PRS_F").rglob("*.parquet")) - before, proc)
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert killed, "the correction finished before its file reached the lake"
    runtime = Runtime(load_settings(root / "pds.yaml"))
    result = ingest_delivery(runtime, correction, actor="tester", corrections=True)
    runtime.close()
    assert all(f.rows_read == f.rows_loaded + f.rows_quarantined for f in result.files)
    assert _corrected_snapshot(root) == _corrected_snapshot(clean_root)
