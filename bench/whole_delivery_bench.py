"""Ingestion of a whole delivery (every table of the demo, Latin-1, many files) against DuckDB.

The delivery is the synthetic generator's for one year (20,000 persons; 2,000 in quick mode): the
profile's ten tables and the catalogue's acts and hospital drugs (ER_CAM_F, ER_UCD_F monthly;
T_MCOaaA, T_MCOaaMED yearly), 113 files, Latin-1. Both sides run in fresh subprocesses (see
:mod:`bench.ingest_bench`), on the same files with the OS cache warmed, alternating:

* ours: ``ingest_delivery`` (typed parsing, every check, quarantine, duplicate keys, SHA-256,
  versioned commits, ledger, quality report, audit);
* DuckDB at its best settings: ``SET preserve_insertion_order=false``, all threads (its default),
  ``read_csv(..., encoding='latin-1')``, ``COPY ... TO`` Parquet at the lake's zstd level, one
  ``COPY`` per file, with DuckDB's type sniffing (no checks).

Best of ``REPEATS`` runs of each side; peak memory is the peak RSS of each side's subprocess, and its
private part (:mod:`bench.memory`: the libraries' pages, shared and dropped at will, are the rest).
Ratio = DuckDB time / our time (≥ 1.0: at least as fast); memory ratio = DuckDB / ours.

A third process measures the floor of the libraries the intake is built on (:data:`_FLOOR`): polars'
streaming engine writing each file to Parquet with no typing and no check, one SQLAlchemy
transaction per file on SQLite (the ledger) and one Delta table created with deltalake. Any
ingestion on this stack holds at least that much, so it says how far the memory goal can be reached
by our own code, whatever it does.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.ingest_bench import _DUCKDB_BEST, _OURS_ANY, _duckdb_options, _measure, cpu_time_row
from bench.memory import settle_library_pages

#: The libraries' floor: the least any intake on polars + SQLAlchemy + deltalake holds for the same
#: files (text columns only, nothing checked, typed or hashed; one tiny commit per file; one Delta table).
_FLOOR = """
import sys
from pathlib import Path
import deltalake
import polars as pl
import sqlalchemy
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
engine = sqlalchemy.create_engine(f"sqlite:///{out / 'ledger.db'}")
with engine.begin() as con:
    con.exec_driver_sql("CREATE TABLE ledger (name TEXT)")
for csv in sorted(Path(sys.argv[2]).glob("*.csv")):
    (pl.scan_csv(csv, separator=";", encoding="utf8-lossy", infer_schema=False)
       .sink_parquet(out / (csv.stem + ".parquet"), compression="zstd", compression_level=1))
    with engine.begin() as con:
        con.exec_driver_sql("INSERT INTO ledger VALUES (?)", (csv.name,))
deltalake.DeltaTable.create(str(out / "table"), schema=deltalake.Schema([deltalake.Field("name", "string")]))
"""

#: Runs of each side, alternating (the machine is shared; the best of each side is compared).
REPEATS = 5


def make_delivery(out_dir: Path, quick: bool) -> tuple[Path, int, int]:
    """The generator's delivery of one year: (directory, data rows, bytes)."""
    from pds_kernel.snds.generator import generate

    delivery = out_dir / "delivery"
    summary = generate(delivery, patients=2_000 if quick else 20_000, years=(2023, 2023), seed=11)
    size = sum(p.stat().st_size for p in delivery.glob("*.csv"))
    return delivery, sum(summary.files.values()), size


def private(runs: list[dict]) -> list[int]:
    """Each run's peak private memory (KiB; ``bench.memory``)."""
    return [m["peak_private_kib"] for m in runs]


def mib(runs: list[dict]) -> str:
    """Each run's peak RSS in MiB, as a list for a note."""
    return "[" + ", ".join(f"{m['peak_kib'] / 1024:.0f}" for m in runs) + "]"


def run(out_dir: Path, quick: bool) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    delivery, rows, size = make_delivery(out_dir, quick)
    generated_in = time.perf_counter() - t0
    files = sorted(delivery.glob("*.csv"))
    for csv in files:  # warm the OS cache for both sides
        csv.read_bytes()
    if not quick:  # a smoke run (the test suite's) leaves the page cache of its neighbours alone
        settle_library_pages()  # the same cached library pages for both sides (bench.memory)
    options, peer = _duckdb_options()
    label = peer.replace("DuckDB COPY", "DuckDB COPY, best settings")
    duck, ours = [], []
    for attempt in range(1 if quick else REPEATS):
        duck.append(_measure(_DUCKDB_BEST, str(out_dir / f"duck-{attempt}"), str(delivery), options))
        ours.append(_measure(_OURS_ANY, str(out_dir / f"ours-{attempt}"), str(delivery)))
    floor = min((_measure(_FLOOR, str(out_dir / f"floor-{attempt}"), str(delivery))
                 for attempt in range(1 if quick else REPEATS)), key=lambda m: m["peak_kib"])
    best_duck, best_ours = (min(r, key=lambda m: m["seconds"]) for r in (duck, ours))
    ratio = best_duck["seconds"] / best_ours["seconds"]
    memory = best_duck["peak_kib"] / max(m["peak_kib"] for m in ours)
    mb = size / 1e6
    tried = ", ".join(f"{m['seconds']:.1f}" for m in ours)
    tried_duck = ", ".join(f"{m['seconds']:.1f}" for m in duck)
    rows_out = [
        dict(name=f"whole delivery: {len(files)} files", value=round(best_ours["seconds"], 2), unit="s", peer=label,
             peer_value=round(best_duck["seconds"], 2), ratio=round(ratio, 2),
             note=f"{rows:,} rows, {mb:,.0f} MB of Latin-1 CSV; best of {len(ours)}; ours "
                  f"[{tried}] s, DuckDB [{tried_duck}] s; goal ≥ 1.0"),
        cpu_time_row("whole delivery: CPU time (median)", ours, duck, label),
        dict(name="whole delivery: throughput", value=round(mb / best_ours["seconds"], 1), unit="MB/s", peer=label,
             peer_value=round(mb / best_duck["seconds"], 1), ratio=round(ratio, 2),
             note=f"{len(files) / best_ours['seconds']:,.0f} files/s against {len(files) / best_duck['seconds']:,.0f}"),
        dict(name="whole delivery: peak memory", value=round(max(m["peak_kib"] for m in ours) / 1024), unit="MiB",
             peer=label, peer_value=round(best_duck["peak_kib"] / 1024), ratio=round(memory, 2),
             note=f"highest peak RSS of our runs against DuckDB's fastest run; ratio = DuckDB / ours (goal ≥ 1.0); "
                  f"every run: ours {mib(ours)} MiB, DuckDB {mib(duck)} MiB; medians "
                  f"{statistics.median(m['peak_kib'] for m in ours) / 1024:.0f} against "
                  f"{statistics.median(m['peak_kib'] for m in duck) / 1024:.0f} MiB"),
        dict(name="whole delivery: peak private memory", value=round(max(private(ours)) / 1024), unit="MiB",
             peer=label, peer_value=round(min(private(duck)) / 1024),
             ratio=round(min(private(duck)) / max(private(ours)), 2),
             note=f"RssAnon, sampled every 5 ms (bench/memory.py), highest of ours against DuckDB's lowest; medians "
                  f"{statistics.median(private(ours)) / 1024:.0f} against {statistics.median(private(duck)) / 1024:.0f} "
                  f"MiB; library pages (RssFile) {max(m['peak_library_kib'] for m in ours) / 1024:.0f} against "
                  f"{max(m['peak_library_kib'] for m in duck) / 1024:.0f} MiB"),
        dict(name="whole delivery: peak memory of the libraries' floor", value=round(floor["peak_kib"] / 1024),
             unit="MiB", peer=label, peer_value=round(best_duck["peak_kib"] / 1024),
             ratio=round(best_duck["peak_kib"] / floor["peak_kib"], 2),
             note=f"polars streaming CSV to Parquet with no typing nor check, a SQLAlchemy commit per file, "
                  f"one Delta table ({floor['seconds']:.1f} s; lowest of its runs; private "
                  f"{floor['peak_private_kib'] / 1024:.0f} MiB): what any intake on "
                  f"these libraries holds at least; ratio = DuckDB / floor"),
    ]
    markdown = (
        f"Delivery generated in {generated_in:.0f} s: {len(files)} files of 14 tables "
        f"(the profile's ten tables and the catalogue's ER_CAM_F, ER_UCD_F, T_MCOaaA, T_MCOaaMED), one year. "
        f"Ours does more than DuckDB's COPY: typed SAS and PMSI dates, every check of the profile and "
        f"the catalogue (nomenclature counts), quarantine, duplicate keys, SHA-256, versioned commits, "
        f"ledger, quality report and audit. Ratio {ratio:.2f} on this run (best of each side).")
    return {"title": "Ingestion of a whole delivery vs DuckDB", "rows": rows_out, "markdown": markdown}
