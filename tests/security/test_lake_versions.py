"""Attacks on the versioned lake: corrections that hide damage, versions edited by hand, names and
versions that reach outside their table, and writers racing each other.

Each test makes one attempt against a real lake written by the real ingestion (Delta Lake tables,
ledger, audit trail) and asserts that it fails: refused with a reason, or reported, never silent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from lake_versions_support import PRS, append_log_entry, correction, loaded_lake

from pds_kernel import lake as lake_mod
from pds_kernel.errors import IntegrityError, InvalidInput, InvalidTransition, NotFound
from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.lake import lake_lock, versions
from pds_kernel.lake.diff import diff_versions


def _month_rows(rows: dict) -> list[dict]:
    return [dict(r) for r in rows[("ER_PRS_F", "202302")]]


def test_correction_silently_dropping_rows_is_reported_and_the_rows_stay_readable(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    before = lake_mod.scan_table(lake, "ER_PRS_F").collect()
    month = _month_rows(rows)
    result = ingest_delivery(runtime, correction(tmp_path, month[5:]), actor="attacker", corrections=True)
    (f,) = result.files
    assert f.status == Status.CORRECTED and f.correction["removed"] == 5 and "5 removed" in f.reason
    assert not result.clean  # the command exits 3: someone has to look
    run = runtime.audit.entries(action="ingest.run")[-1]
    assert run.details["corrections"][PRS]["removed"] == 5
    [audit] = [e for e in runtime.audit.entries(action="ingest.file") if e.details.get("correction")]
    assert audit.actor == "attacker" and audit.details["correction"]["removed"] == 5
    latest = versions.latest_version(lake, "ER_PRS_F")
    assert lake_mod.scan_table(lake, "ER_PRS_F", latest - 1).collect().height == before.height


def test_correction_swapping_rows_for_as_many_new_ones_is_not_reported_as_no_change(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    month = _month_rows(rows)
    swapped = month[4:] + [dict(r, DCT_ORD_NUM=900_000 + i) for i, r in enumerate(month[:4])]
    assert len(swapped) == len(month)  # same row count: a count check would see nothing
    (f,) = ingest_delivery(runtime, correction(tmp_path, swapped), actor="attacker", corrections=True).files
    assert (f.correction["added"], f.correction["removed"], f.correction["changed"]) == (4, 4, 0)


def test_correction_of_a_month_not_loaded_is_refused(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    version = versions.latest_version(lake, "ER_PRS_F")
    files = lake_mod.table_files(lake, "ER_PRS_F")
    fix = correction(tmp_path, _month_rows(rows), name="ER_PRS_F_202309.csv")
    result = ingest_delivery(runtime, fix, actor="attacker", corrections=True)
    (f,) = result.files
    assert f.status == Status.REFUSED and "is not loaded" in f.reason
    assert versions.latest_version(lake, "ER_PRS_F") == version
    assert lake_mod.table_files(lake, "ER_PRS_F") == files
    assert not list((lake / "ER_PRS_F").glob("month=202309"))


def test_log_edited_by_hand_to_serve_a_file_outside_the_table_is_refused(tmp_path):
    runtime, _ = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    outside = lake_mod.table_files(lake, "IR_BEN_R")[0]  # the identifiers' referential
    append_log_entry(lake / "ER_PRS_F", [{"add": {
        "path": os.path.relpath(outside, lake / "ER_PRS_F"), "size": outside.stat().st_size,
        "partitionValues": {}, "modificationTime": 1, "dataChange": True}}])
    with pytest.raises(IntegrityError, match="outside"):
        lake_mod.scan_table(lake, "ER_PRS_F")


def test_log_edited_by_hand_to_drop_a_month_stops_the_next_ingest(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    dropped = lake_mod.table_files(lake, "ER_PRS_F")[0]
    append_log_entry(lake / "ER_PRS_F", [{"remove": {
        "path": str(dropped.relative_to(lake / "ER_PRS_F")), "deletionTimestamp": 1, "dataChange": True}}])
    assert dropped not in lake_mod.table_files(lake, "ER_PRS_F")  # a reader does see the forged version...
    with pytest.raises(IntegrityError, match="changed outside pds ingest"):  # ...the ingest refuses it
        ingest_delivery(runtime, tmp_path / "delivery", actor="attacker")
    assert versions.history(lake, "ER_PRS_F")[-1].run is None  # and history shows no run made it


def test_ledger_edited_by_hand_to_swap_a_file_is_refused(tmp_path):
    runtime, _ = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    data = json.loads((lake / "_manifest.json").read_text())
    january, february = data["files"]["ER_PRS_F_202301.csv"], data["files"][PRS]
    january["parquet"] = february["parquet"]
    (lake / "_manifest.json").write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="does not hold the files the ingest ledger records"):
        ingest_delivery(runtime, tmp_path / "delivery", actor="attacker")


@pytest.mark.parametrize("name", ["../ER_PRS_F", "ER_PRS_F/../IR_BEN_R", "/etc", "..", "ER_PRS_F/_delta_log"])
def test_path_traversal_in_a_table_name_is_refused(tmp_path, name):
    runtime, _ = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    for attempt in (lambda: versions.history(lake, name), lambda: diff_versions(lake, name, 0, 1),
                    lambda: lake_mod.scan_table(lake, name), lambda: lake_mod.table_files(lake, name, 1)):
        with pytest.raises(InvalidInput, match="unknown SNDS table"):
            attempt()


def test_diff_of_versions_across_tables_is_refused(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    # IR_BEN_R gets a version 2 (a new referential); ER_PRS_F has none
    (tmp_path / "ref").mkdir()
    from lake_versions_support import write_table

    write_table(tmp_path / "ref" / "IR_BEN_R.csv", "IR_BEN_R", rows["IR_BEN_R"][:6])
    ingest_delivery(runtime, tmp_path / "ref", actor="loader")
    assert versions.latest_version(lake, "IR_BEN_R") == 2 and versions.latest_version(lake, "ER_PRS_F") == 1
    with pytest.raises(NotFound, match="version 2 of table ER_PRS_F"):
        diff_versions(lake, "ER_PRS_F", 1, 2)
    for forged in ("IR_BEN_R@2", "IR_BEN_R:2", "../IR_BEN_R/2", "-1", "2.0", "1e3"):
        with pytest.raises(InvalidInput):
            versions.check_version(forged)
    done = subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()", "--config",
                           str(_config(tmp_path, lake)), "lake", "diff", "ER_PRS_F", "1", "IR_BEN_R@2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "bad version" in done.stderr and "Traceback" not in done.stderr


def _config(tmp_path: Path, lake: Path) -> Path:
    config = tmp_path / "pds.yaml"
    config.write_text(f"paths:\n  lake: {lake}\n  state: {tmp_path / 'pds' / 'state'}\n")
    return config


def test_concurrent_commits_to_one_table_lose_nothing(tmp_path):
    runtime, _ = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    start = versions.latest_version(lake, "ER_PRS_F")
    template = pl.read_parquet(lake_mod.table_files(lake, "ER_PRS_F")[0])
    writer = textwrap.dedent(f"""
        import sys, polars as pl
        from pathlib import Path
        from pds_kernel.lake import versions
        lake, who = Path({str(lake)!r}), sys.argv[1]
        frame = pl.read_parquet({str(lake_mod.table_files(lake, "ER_PRS_F")[0])!r})
        for i in range(8):
            rel = f"race/{{who}}-{{i}}.parquet"
            (lake / "ER_PRS_F" / "race").mkdir(exist_ok=True)
            frame.write_parquet(lake / "ER_PRS_F" / rel)
            versions.commit(lake, "ER_PRS_F", [versions.AddedFile(rel, (lake / "ER_PRS_F" / rel).stat().st_size,
                            frame.height)], [], {{"run": who, "entries": []}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, who]) for who in ("a", "b", "c")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert versions.latest_version(lake, "ER_PRS_F") == start + 24  # one version per commit, none lost
    races = [f for f in lake_mod.table_files(lake, "ER_PRS_F") if f.parent.name == "race"]
    assert len(races) == 24
    assert sorted(v.run for v in versions.history(lake, "ER_PRS_F", since=start)) == sorted(["a", "b", "c"] * 8)
    assert lake_mod.scan_table(lake, "ER_PRS_F").select(pl.len()).collect().item() > 24 * template.height


def test_second_writer_while_an_ingest_holds_the_lake_is_refused(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    version = versions.latest_version(lake, "ER_PRS_F")
    fix = correction(tmp_path, _month_rows(rows)[3:])
    with lake_lock(lake):  # another ingest (or upgrade, or expiry) is running
        with pytest.raises(InvalidTransition, match="another ingest is running"):
            ingest_delivery(runtime, fix, actor="attacker", corrections=True)
    assert versions.latest_version(lake, "ER_PRS_F") == version


# ---- the repair of an interrupted table creation (a Delta log with no commit) -------------------
def _unborn_log(lake: Path, table: str = "IR_BEN_R") -> Path:
    log_dir = lake / table / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / "00000000000000000000.json#1").write_text("{")  # what a killed creation leaves
    return log_dir


def test_a_link_planted_in_an_uncommitted_log_is_not_followed_and_stops_the_run(tmp_path):
    """The next run removes an uncommitted log: a link inside it must not make it delete, or
    empty, what the link points to."""
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    log_dir = _unborn_log(tmp_path / "lake")
    (log_dir / "other").symlink_to(precious)
    with pytest.raises(IntegrityError, match="holds no commit but holds other"):
        versions.remove_interrupted_creations(tmp_path / "lake")
    assert precious.read_text() == "keep" and (log_dir / "other").is_symlink()
    assert (log_dir / "00000000000000000000.json#1").exists()  # nothing removed
    (log_dir / "other").unlink()
    (log_dir / "00000000000000000000.json").symlink_to(precious)  # a link under a commit's name
    assert versions.remove_interrupted_creations(tmp_path / "lake") == []  # a table: left as it is
    assert precious.read_text() == "keep"


def test_a_folder_in_an_uncommitted_log_stops_the_run(tmp_path):
    log_dir = _unborn_log(tmp_path / "lake")
    (log_dir / "_commits").mkdir()
    (log_dir / "_commits" / "kept.json").write_text("{}")
    with pytest.raises(IntegrityError, match="_commits"):
        versions.remove_interrupted_creations(tmp_path / "lake")
    assert (log_dir / "_commits" / "kept.json").exists()


def test_a_linked_table_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "_delta_log").mkdir(parents=True)
    staged = elsewhere / "_delta_log" / "00000000000000000000.json#1"
    staged.write_text("{")
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "IR_PHA_R").symlink_to(elsewhere)
    assert versions.remove_interrupted_creations(tmp_path / "lake") == []
    assert staged.exists()
