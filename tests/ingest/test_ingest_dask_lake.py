"""``pds ingest --dask`` on a local cluster of three worker processes builds the same lake as a
local run, table by table.

The delivery: the synthetic generator's (the profile's tables and the catalogue's acts and hospital
drugs, monthly, yearly and snapshot files) plus one schema-generated file of a table of every other
(product, delivery kind) of the catalogue (EGB, DCIRS, DAMIR, the disease map, PMSI HAD...), with
a damaged file (rows quarantined) and a duplicate key. Compared for every table of the
lake: the rows, a hash of the content (every row, sorted), the SHA-256 of every committed Parquet
file by path, the table's versions (operation, files, corrections) and its quarantine; then the
ingest ledger and the quality report (run-specific fields removed: run id, time, lake path).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from delivery_factory import fresh_runtime

from pds_kernel import lake as lake_mod
from pds_kernel.ingest import ingest_delivery
from pds_kernel.lake.versions import history, versioned_tables
from pds_kernel.snds.catalogue import ingestible_names, ingestible_table
from pds_kernel.snds.generator import GENERATED_TABLES, generate
from pds_kernel.snds.schema_generator import generate_catalogue

#: Fields of the report that name the run rather than the lake.
RUN_FIELDS = ("run", "generated", "lake")


@pytest.fixture(scope="module")
def two_lakes(tmp_path_factory):
    from distributed import LocalCluster

    root = tmp_path_factory.mktemp("dask-lake")
    delivery = root / "delivery"
    generate(delivery, patients=120, years=(2022, 2022), seed=3)
    others: dict[tuple[str, str], str] = {}
    for name in ingestible_names():
        if name not in GENERATED_TABLES:
            table = ingestible_table(name)
            others.setdefault((table.group, table.split), name)
    assert len(others) >= 8
    generate_catalogue(delivery, rows=4, period="202206", seed=3, tables=list(others.values()))
    prs = delivery / "ER_PRS_F_202203.csv"
    text = prs.read_text(encoding="latin-1")
    prs.write_text(text + text.splitlines()[1] + "\n" + "1;2\n", encoding="latin-1")  # duplicate, short row
    cam = delivery / "ER_CAM_F_202204.csv"  # an act whose claim does not exist: one foreign-key miss
    header, first = cam.read_text(encoding="latin-1").splitlines()[:2]
    fields = first.split(";")
    fields[header.split(";").index("DCT_ORD_NUM")] = "999999999"
    cam.write_text(cam.read_text(encoding="latin-1") + ";".join(fields) + "\n", encoding="latin-1")
    local = ingest_delivery(fresh_runtime(root / "local"), delivery, actor="tester")
    with LocalCluster(processes=True, n_workers=3, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        dask_runtime = fresh_runtime(root / "dask")
        distributed = ingest_delivery(dask_runtime, delivery, actor="tester", dask_address=cluster.scheduler_address)
    assert dask_runtime.audit.entries(action="ingest.run")[-1].details["dask"] is True
    return root, local, distributed


def _table_state(lake: Path, table: str) -> dict:
    frame = lake_mod.scan_table(lake, table).collect()
    ordered = frame.sort(frame.columns, nulls_last=True) if frame.height else frame
    files = lake_mod.table_files(lake, table)
    return {
        "rows": frame.height,
        "schema": {k: str(v) for k, v in frame.schema.items()},
        "content_sha256": hashlib.sha256(ordered.write_csv().encode()).hexdigest(),
        "files": {str(f.relative_to(lake)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
        "versions": [(v.version, v.operation, v.files, v.corrections) for v in history(lake, table)],
        "quarantine": {p.name: p.read_bytes() for p in sorted((lake / "_quarantine" / table).glob("*.csv"))},
    }


def _report(result) -> dict:
    report = json.loads(result.report_json.read_text())
    return {k: v for k, v in report.items() if k not in RUN_FIELDS}


def _ledger(lake: Path) -> dict:
    files = lake_mod.read_manifest(lake)
    return {name: {k: v for k, v in entry.items() if k != "run"} for name, entry in files.items()}


def test_both_lakes_hold_the_same_tables_and_files(two_lakes):
    root, local, distributed = two_lakes
    tables = versioned_tables(root / "local" / "lake")
    with_rows = {f.table for f in local.files if f.rows_loaded}  # KI_CCI_R: nobody died (headers only)
    assert set(tables) == with_rows and len(with_rows) >= 20
    assert versioned_tables(root / "dask" / "lake") == tables
    assert sum(f.rows_quarantined for f in local.files) == 2  # the duplicate and the short row
    assert [(f.name, f.status, f.rows_loaded, f.rows_quarantined) for f in distributed.files] == \
        [(f.name, f.status, f.rows_loaded, f.rows_quarantined) for f in local.files]


def test_the_lakes_are_equal_table_by_table(two_lakes):
    root, _local, _distributed = two_lakes
    different = []
    for table in versioned_tables(root / "local" / "lake"):
        a, b = _table_state(root / "local" / "lake", table), _table_state(root / "dask" / "lake", table)
        different += [f"{table}.{key}" for key in a if a[key] != b[key]]
    assert different == []


def test_the_ledgers_and_quality_reports_are_equal(two_lakes):
    root, local, distributed = two_lakes
    assert _ledger(root / "dask" / "lake") == _ledger(root / "local" / "lake")
    a, b = _report(local), _report(distributed)
    assert [k for k in a if a[k] != b.get(k)] == []
    assert a["tables"]  # the per-table quality figures are there to compare
    misses = {i["name"]: i["missing"] for i in a["integrity"]}
    assert misses["fk_ER_CAM_F_ER_PRS_F"] == 1 and misses["pharmacy_without_claim"] == 0
    assert misses["fk_ER_UCD_F_ER_PRS_F"] == 0 and misses["fk_T_MCOaaA_T_MCOaaB"] == 0
