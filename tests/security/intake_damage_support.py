"""Helpers of the intake damage attacks: crafted deliveries built with the ingestion tests' factory
(``tests/ingest/delivery_factory.py``), and what the lake holds after an ingest."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

from delivery_factory import fresh_runtime, make_rows, write_delivery, write_table

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import ingest_delivery, streamed
from pds_kernel.ingest.manifest import Manifest
from pds_kernel.ingest.quarantine import read_quarantine

__all__ = ["fresh_runtime", "make_rows", "write_delivery", "write_table", "ingest", "lake_values",
           "committed", "quarantine_of", "edit_fields"]


def edit_fields(path: Path, edits: dict[int, dict[str, str]]) -> None:
    """Set the given fields of data lines ``edits`` keys (0 = first row) of Latin-1 file ``path``."""
    lines = path.read_text(encoding="latin-1").split("\n")
    header = lines[0].split(";")
    for row, values in edits.items():
        fields = lines[row + 1].split(";")
        for column, text in values.items():
            fields[header.index(column)] = text
        lines[row + 1] = ";".join(fields)
    path.write_text("\n".join(lines), encoding="latin-1")


def ingest(runtime, delivery: Path) -> dict:
    """Ingest ``delivery``; the result of each file by name."""
    result = ingest_delivery(runtime, delivery, actor="attacker")
    for f in result.files:
        assert f.rows_read == f.rows_loaded + f.rows_quarantined, f
    return {f.name: f for f in result.files}


def lake_values(runtime, table: str, column: str) -> list:
    """Every value of ``column`` in ``table`` as the lake serves it (empty when not loaded)."""
    lake = runtime.settings.paths.lake
    if not Manifest(lake).of_table(table):
        return []
    return lake_mod.scan_table(lake, table).select(pl.col(column)).collect().to_series().to_list()


def committed(runtime, name: str) -> bool:
    return Manifest(runtime.settings.paths.lake).get(name) is not None


def quarantine_of(runtime, name: str, min_reason: int = 10) -> pl.DataFrame | None:
    """The quarantine of file ``name`` (None: nothing quarantined); every line's reason is longer
    than ``min_reason`` characters (a reason that says what to do)."""
    lake = runtime.settings.paths.lake
    entry = Manifest(lake).get(name)
    if not entry or not entry.quarantine:
        return None
    frame = read_quarantine(lake / entry.quarantine)
    assert frame["reason"].str.len_chars().min() > min_reason
    return frame


def quarantined_checks(runtime, name: str) -> dict[int, tuple[str, str]]:
    """``{line: (check, column)}`` of the quarantine of file ``name``, every entry with a reason
    that says what to do (more than 20 characters)."""
    frame = quarantine_of(runtime, name, min_reason=20)
    if frame is None:
        return {}
    return {line: (check, column or "") for line, check, column in frame.select("line", "check", "column").rows()}


def use_parser(monkeypatch, parser: str) -> None:
    """Make every file of the test go through the ``streamed`` parser, or the block parser."""
    monkeypatch.setattr(streamed, "MIN_BYTES", 0 if parser == "streamed" else 1 << 60)
