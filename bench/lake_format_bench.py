"""Delta Lake against Apache Iceberg for the lake's versioned commits (the ADR's measurements).

Both formats only *record* Parquet files the ingest has already written (neither rewrites data),
so what is compared is the commit itself, on the shape of the many-files bench: ``files`` small
Parquet files of one monthly table (20 rows each), committed in batches of 256 files (the ingest's
flush), then ``corrections`` single-month corrections (remove the month's file, add its new one),
then the time to open the table's latest version and list its files (what every reader pays).

    python -m bench.lake_format_bench [FILES ...]      # needs deltalake and pyiceberg[sql-sqlite]

Iceberg uses pyiceberg's SQL catalog on SQLite (the local setting the design names); its tables
are unpartitioned because ``add_files`` infers partitions from a column the lake files do not hold
(the month is the folder), so a correction deletes the month's data file by path.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa

BATCH = 256
CORRECTIONS = 20


def _months(count: int) -> list[str]:
    return [f"{2023 - i // 12:04d}{12 - i % 12:02d}" for i in range(count)]


def _write_files(root: Path, months: list[str], tag: str = "") -> list[Path]:
    paths = []
    for i, month in enumerate(months):
        folder = root / f"month={month}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ER_PRS_F_{month}{tag}.parquet"
        pl.DataFrame({"PERSON_ID": [f"P{i:07d}{r:02d}" for r in range(20)],
                      "PRS_NAT_REF": list(range(20)), "PRS_PAI_MNT": [1.5 * r for r in range(20)]}
                     ).write_parquet(path, compression="zstd", compression_level=1)
        paths.append(path)
    return paths


def bench_delta(root: Path, months: list[str]) -> dict:
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction, CommitProperties, RemoveAction

    files = _write_files(root, months)
    schema = pa.schema([("PERSON_ID", pa.string()), ("PRS_NAT_REF", pa.int64()),
                        ("PRS_PAI_MNT", pa.float64()), ("month", pa.string())])

    def add(path: Path, month: str) -> AddAction:
        st = path.stat()
        return AddAction(str(path.relative_to(root)), st.st_size, {"month": month},
                         int(st.st_mtime * 1000), True, json.dumps({"numRecords": 20}))

    t0 = time.perf_counter()
    DeltaTable.create(str(root), schema=schema, partition_by=["month"])
    table = DeltaTable(str(root))
    for start in range(0, len(files), BATCH):
        actions = [add(p, m) for p, m in zip(files[start:start + BATCH], months[start:start + BATCH])]
        table.create_write_transaction(actions, mode="append", schema=schema, partition_by=["month"],
                                       commit_properties=CommitProperties(custom_metadata={"run": "x"}))
    commit = time.perf_counter() - t0
    fixed = _write_files(root, months[:CORRECTIONS], tag=".v2")
    t0 = time.perf_counter()
    for old, new, month in zip(files, fixed, months):
        table.create_write_transaction(
            [RemoveAction(str(old.relative_to(root)), True, int(time.time() * 1000), old.stat().st_size,
                          {"month": month}), add(new, month)],
            mode="append", schema=schema, partition_by=["month"])
    correct = time.perf_counter() - t0
    t0 = time.perf_counter()
    listed = len(DeltaTable(str(root)).file_uris())
    read = time.perf_counter() - t0
    assert listed == len(files), listed
    return {"commit_s": commit, "correction_s": correct, "open_s": read, "versions": table.version()}


def bench_iceberg(root: Path, months: list[str]) -> dict:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    data = root / "data"
    files = _write_files(data, months)
    catalog = SqlCatalog("bench", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}")
    catalog.create_namespace("lake")
    schema = pa.schema([("PERSON_ID", pa.string()), ("PRS_NAT_REF", pa.int64()), ("PRS_PAI_MNT", pa.float64())])
    t0 = time.perf_counter()
    table = catalog.create_table("lake.ER_PRS_F", schema=schema)
    for start in range(0, len(files), BATCH):
        table.add_files([str(p) for p in files[start:start + BATCH]])
    commit = time.perf_counter() - t0
    fixed = _write_files(data, months[:CORRECTIONS], tag=".v2")
    t0 = time.perf_counter()
    for old, new in zip(files, fixed):
        table = catalog.load_table("lake.ER_PRS_F")
        with table.transaction() as tx, tx.update_snapshot().overwrite() as overwrite:
            current = {f.file.file_path: f.file for f in table.scan().plan_files()}  # what a reader plans
            overwrite.delete_data_file(current[str(old)])
            overwrite.append_data_file(parquet_file_to_data_file(table.io, table.metadata, str(new)))
    correct = time.perf_counter() - t0
    t0 = time.perf_counter()
    listed = len(list(catalog.load_table("lake.ER_PRS_F").scan().plan_files()))
    read = time.perf_counter() - t0
    assert listed == len(files), listed
    return {"commit_s": commit, "correction_s": correct, "open_s": read,
            "versions": len(catalog.load_table("lake.ER_PRS_F").metadata.snapshots)}


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [1_600, 20_000]
    print("| format | files | commit per file (ms) | per correction (ms) | open + list latest (s) |")
    print("|---|---|---|---|---|")
    for n in sizes:
        months = _months(n)  # one file per month (past years too: only distinct partitions matter)
        for name, fn in (("Delta Lake (deltalake)", bench_delta), ("Iceberg (pyiceberg, SQLite catalog)", bench_iceberg)):
            root = Path(tempfile.mkdtemp(prefix="pds-lakefmt-"))
            try:
                r = fn(root, months)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            print(f"| {name} | {n:,} | {1000 * r['commit_s'] / n:.2f} | "
                  f"{1000 * r['correction_s'] / CORRECTIONS:.0f} | {r['open_s']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
