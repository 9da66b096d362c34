"""Helpers of the versioned-lake attacks: a small real lake made by the ingestion (the ingestion
tests' delivery factory), and the Delta log files of its tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

from delivery_factory import fresh_runtime, make_rows, write_delivery, write_table

from pds_kernel.ingest import ingest_delivery

__all__ = ["fresh_runtime", "make_rows", "write_delivery", "write_table", "loaded_lake", "correction",
           "append_log_entry"]

PRS = "ER_PRS_F_202302.csv"


def loaded_lake(tmp_path: Path):
    """A runtime whose lake holds a small two-month delivery; its rows."""
    runtime = fresh_runtime(tmp_path / "pds")
    rows = make_rows(persons=12, months=("202301", "202302"))
    ingest_delivery(runtime, write_delivery(tmp_path / "delivery", rows), actor="loader")
    return runtime, rows


def correction(tmp_path: Path, rows_of_month: list[dict], name: str = PRS) -> Path:
    """A correction delivery holding ``rows_of_month`` as the file ``name``."""
    fix = tmp_path / "fix"
    fix.mkdir(exist_ok=True)
    for old in fix.iterdir():
        old.unlink()
    write_table(fix / name, name.rsplit("_", 1)[0] if name[-10:-4].isdigit() else name[:-4], rows_of_month)
    return fix


def append_log_entry(table_dir: Path, actions: list[dict]) -> Path:
    """Write the next commit file of a Delta table by hand (what an attacker with write access to
    the lake can do): ``actions`` are Delta log actions (``{"add": ...}``, ``{"remove": ...}``)."""
    log = table_dir / "_delta_log"
    last = max(int(p.stem) for p in log.glob("*.json"))
    path = log / f"{last + 1:020d}.json"
    lines = [json.dumps({"commitInfo": {"timestamp": 1, "operation": "WRITE"}})]
    lines += [json.dumps(a) for a in actions]
    path.write_text("\n".join(lines) + "\n")
    return path
