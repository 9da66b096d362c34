"""The versioned lake: every ingest a commit, corrections a new version with a row diff, old
versions readable by any Delta reader, the upgrade of a lake written before versions, expiry."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from delivery_factory import make_rows, write_delivery, write_table

from pds_kernel import lake as lake_mod
from pds_kernel.errors import InvalidTransition, NotFound
from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.ingest.manifest import Manifest
from pds_kernel.lake import versions
from pds_kernel.lake.diff import diff_versions
from pds_kernel.lake.retention import apply_expiry
from pds_kernel.lake.upgrade import upgrade_lake

PRS = "ER_PRS_F_202302.csv"


def _corrected_rows(rows: dict) -> tuple[list[dict], dict]:
    """February's ER_PRS_F with 2 rows removed, 3 amounts changed and 1 row added; the counts."""
    feb = [dict(r) for r in rows[("ER_PRS_F", "202302")]]
    removed = feb[:2]
    kept = feb[2:]
    for r in kept[:3]:
        r["PRS_PAI_MNT"] = r["PRS_PAI_MNT"] + 1000
    extra = dict(kept[-1], DCT_ORD_NUM=999_999)
    return [*kept, extra], {"added": 1, "changed": 3, "removed": len(removed)}


def _pds(config: Path, *args: str) -> subprocess.CompletedProcess:
    """``pds`` run by the OS user, whom the configuration maps to alice (``cli.identities``)."""
    if "identities" not in config.read_text():
        with open(config, "a") as handle:
            handle.write(f"cli:\n  identities:\n    {json.dumps(getpass.getuser())}: alice\n")
    return subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()",
                           "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "220"})


def test_every_ingest_is_a_commit_with_its_files(runtime, tmp_path):
    rows = make_rows(months=("202301", "202302"))
    january = {k: v for k, v in rows.items() if isinstance(k, str) or k[1] == "202301"}
    ingest_delivery(runtime, write_delivery(tmp_path / "d1", january), actor="tester")
    lake = runtime.settings.paths.lake
    assert versions.latest_version(lake, "ER_PRS_F") == 1  # 0 is the empty table's creation
    ingest_delivery(runtime, write_delivery(tmp_path / "d2", rows), actor="tester")
    history = versions.history(lake, "ER_PRS_F")
    assert [v.version for v in history] == [0, 1, 2]
    assert history[1].files == ["ER_PRS_F_202301.csv"] and history[2].files == [PRS]
    assert history[1].run != history[2].run
    # version 1 still shows January only; the ledger records the version of each file
    assert len(lake_mod.table_files(lake, "ER_PRS_F", 1)) == 1
    assert Manifest(lake).get(PRS).version == 2
    # a re-run that loads nothing makes no version
    ingest_delivery(runtime, write_delivery(tmp_path / "d2", rows), actor="tester")
    assert versions.latest_version(lake, "ER_PRS_F") == 2


def test_correction_makes_a_version_with_its_row_diff_and_keeps_the_old_one(runtime, delivery, rows, tmp_path):
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    before = lake_mod.scan_table(lake, "ER_PRS_F").collect()
    fixed, expected = _corrected_rows(rows)
    fix = tmp_path / "fix"
    fix.mkdir()
    write_table(fix / PRS, "ER_PRS_F", fixed)
    result = ingest_delivery(runtime, fix, actor="tester", corrections=True)
    (f,) = result.files
    assert f.status == Status.CORRECTED
    assert {k: f.correction[k] for k in expected} == expected
    assert f.correction["columns_changed"] == {"PRS_PAI_MNT": 3}
    assert f.rows_read == f.rows_loaded + f.rows_quarantined == len(fixed)
    assert not result.clean  # rows were removed: exit code 3 on the command line
    after = lake_mod.scan_table(lake, "ER_PRS_F").collect()
    assert after.height == before.height - expected["removed"] + expected["added"]
    # the earlier version reads as before, by our reader and by polars' Delta reader
    latest = versions.latest_version(lake, "ER_PRS_F")
    old = lake_mod.scan_table(lake, "ER_PRS_F", latest - 1).collect()
    assert old.sort(old.columns).equals(before.sort(before.columns))
    assert pl.scan_delta(str(lake / "ER_PRS_F"), version=latest - 1).select(pl.len()).collect().item() == before.height
    assert pl.scan_delta(str(lake / "ER_PRS_F")).select(pl.len()).collect().item() == after.height
    # the diff between the versions says the same; history names the correction
    diff = diff_versions(lake, "ER_PRS_F", latest - 1, latest)
    assert (diff.added, diff.changed, diff.removed) == (1, 3, 2)
    assert diff.unchanged == after.height - 1 - 3
    assert versions.history(lake, "ER_PRS_F")[-1].corrections[PRS]["removed"] == 2
    # the quality report lists the correction
    report = json.loads(result.report_json.read_text())
    assert report["run_status"]["corrected"] == 1
    # duplicates of the correction are checked against the other months, not the replaced one
    assert f.rows_quarantined == 0


def test_changed_month_without_correction_flag_is_still_refused(runtime, delivery, rows):
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    version = versions.latest_version(lake, "ER_PRS_F")
    write_table(delivery / PRS, "ER_PRS_F", _corrected_rows(rows)[0])
    result = ingest_delivery(runtime, delivery, actor="tester")
    f = next(f for f in result.files if f.name == PRS)
    assert f.status == Status.REFUSED and "--correction" in f.reason
    assert versions.latest_version(lake, "ER_PRS_F") == version


def test_lake_history_and_diff_commands(tmp_path):
    config = tmp_path / "pds.yaml"
    config.write_text("paths:\n  lake: lake\n  reports: reports\n  state: state\n")
    rows = make_rows(months=("202301", "202302"))
    assert _pds(config, "ingest", str(write_delivery(tmp_path / "d", rows))).returncode == 0
    fix = tmp_path / "fix"
    fix.mkdir()
    write_table(fix / PRS, "ER_PRS_F", _corrected_rows(rows)[0])
    corrected = _pds(config, "ingest", "--correction", str(fix))
    assert corrected.returncode == 3, corrected.stdout + corrected.stderr  # rows removed: look at it
    assert "corrections (by primary key)" in corrected.stdout and "PRS_PAI_MNT (3)" in corrected.stdout
    shown = _pds(config, "lake", "history", "ER_PRS_F")
    assert shown.returncode == 0, shown.stderr
    assert "versions of ER_PRS_F" in shown.stdout and f"{PRS}: 1 / 3 / 2" in shown.stdout
    diff = _pds(config, "lake", "diff", "ER_PRS_F", "1", "2")
    assert diff.returncode == 0, diff.stderr
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in diff.stdout.splitlines()
             if line.count("│") == 3}
    assert (lines["added"], lines["changed"], lines["removed"]) == ("1", "3", "2")
    missing = _pds(config, "lake", "diff", "ER_PRS_F", "1", "7")
    assert missing.returncode != 0 and "version 7" in missing.stderr and "Traceback" not in missing.stderr


def _make_old_format_lake(lake: Path) -> None:
    """What the ingestion wrote before versions: the same files and ledger, no _delta_log, no
    version fields."""
    for log in lake.glob(f"*/{versions.DELTA_LOG}"):
        shutil.rmtree(log)
    data = json.loads((lake / "_manifest.json").read_text())
    for entry in data["files"].values():
        for key in ("version", "superseded", "correction"):
            entry.pop(key, None)
    (lake / "_manifest.json").write_text(json.dumps(data))


def test_lake_with_the_old_manifest_is_readable_then_upgraded(runtime, delivery, rows, tmp_path):
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    contents = {t: lake_mod.scan_table(lake, t).collect() for t in ("ER_PRS_F", "IR_BEN_R")}
    _make_old_format_lake(lake)
    assert not versions.versioned_tables(lake)
    for table, frame in contents.items():  # readable as it is
        assert lake_mod.scan_table(lake, table).collect().equals(frame)
    with pytest.raises(InvalidTransition, match="pds lake upgrade"):
        ingest_delivery(runtime, delivery, actor="tester")
    done = upgrade_lake(lake)
    assert {t.table for t in done} >= {"ER_PRS_F", "IR_BEN_R", "IR_PHA_R"}
    assert all(t.version == 1 for t in done)
    for table, frame in contents.items():
        assert lake_mod.scan_table(lake, table).collect().equals(frame)
        assert pl.scan_delta(str(lake / table)).select(pl.len()).collect().item() == frame.height
    assert upgrade_lake(lake) == []  # again: nothing to do
    # and the lake takes corrections now
    fix = tmp_path / "fix"
    fix.mkdir()
    write_table(fix / PRS, "ER_PRS_F", _corrected_rows(rows)[0])
    (f,) = ingest_delivery(runtime, fix, actor="tester", corrections=True).files
    assert f.status == Status.CORRECTED and f.correction["removed"] == 2


def test_expiry_deletes_replaced_files_past_the_retention_and_only_them(runtime, delivery, rows, tmp_path):
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    fix = tmp_path / "fix"
    fix.mkdir()
    write_table(fix / PRS, "ER_PRS_F", _corrected_rows(rows)[0])
    ingest_delivery(runtime, fix, actor="tester", corrections=True)
    latest = versions.latest_version(lake, "ER_PRS_F")
    current = lake_mod.scan_table(lake, "ER_PRS_F").collect()
    assert apply_expiry(runtime, actor="tester") == []  # within the default retention: kept
    assert lake_mod.scan_table(lake, "ER_PRS_F", latest - 1).collect().height
    planned = apply_expiry(runtime, actor="tester", retention_days=0, dry_run=True)
    assert [e.files for e in planned] == [[f"ER_PRS_F/month=202302/{PRS[:-4]}.parquet"]]
    assert (lake / planned[0].files[0]).is_file()
    done = apply_expiry(runtime, actor="tester", retention_days=0)
    assert done == planned and not (lake / planned[0].files[0]).exists()
    with pytest.raises(NotFound, match="expired by the retention policy"):
        lake_mod.scan_table(lake, "ER_PRS_F", latest - 1)
    assert lake_mod.scan_table(lake, "ER_PRS_F").collect().equals(current)
    assert not Manifest(lake).get(PRS).superseded
    assert runtime.audit.entries(action="lake.expire")[-1].details["files"] == {"ER_PRS_F": planned[0].files}
    # the ledger and the log still agree: the next ingest runs
    ingest_delivery(runtime, delivery, actor="tester")


def test_ledger_behind_the_log_is_repaired_from_the_commit_metadata(runtime, delivery):
    """The state a kill leaves between a version's commit and its journal entry."""
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    full = json.loads((lake / "_manifest.json").read_text())
    cut = dict(full, files={n: e for n, e in full["files"].items() if not n.startswith("ER_PRS_F")})
    (lake / "_manifest.json").write_text(json.dumps(cut))
    prs_files = sorted(p for p in (lake / "ER_PRS_F").rglob("*.parquet"))
    result = ingest_delivery(runtime, delivery, actor="tester")
    assert {f.status for f in result.files} == {Status.SKIPPED}  # nothing loaded twice
    assert sorted(p for p in (lake / "ER_PRS_F").rglob("*.parquet")) == prs_files  # nothing removed
    assert json.loads((lake / "_manifest.json").read_text())["files"] == full["files"]


def test_entry_dataclass_round_trips_with_version_fields(tmp_path):
    manifest = Manifest(tmp_path)
    entry = replace(_entry(), version=3, superseded=["ER_PRS_F/month=202301/x.parquet"],
                    correction={"added": 1, "changed": 0, "removed": 0, "unchanged": 4, "columns_changed": {}})
    manifest.put(entry)
    manifest.save()
    assert Manifest(tmp_path).get(entry.name) == entry


def _entry():
    from pds_kernel.ingest.manifest import ManifestEntry

    return ManifestEntry(name="ER_PRS_F_202301.csv", table="ER_PRS_F", month="202301", sha256="0" * 64,
                         rows_read=5, rows_loaded=5, rows_quarantined=0,
                         parquet="ER_PRS_F/month=202301/ER_PRS_F_202301.parquet", quarantine=None, run="r")



def test_recovery_keeps_the_delta_checkpoints(runtime, delivery):
    """After 100 versions delta-rs writes a Parquet checkpoint into _delta_log/: the clean-up of
    files left by a killed run must not take it for one."""
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    folder = lake / "IR_PHA_R"
    (source,) = lake_mod.table_files(lake, "IR_PHA_R")
    frame = pl.read_parquet(source)
    for i in range(100):
        rel = f"snapshot/extra-{i}.parquet"
        frame.head(0).write_parquet(folder / rel)
        versions.commit(lake, "IR_PHA_R", [versions.AddedFile(rel, (folder / rel).stat().st_size, 0)], [],
                        {"run": "test", "entries": []})
    checkpoints = sorted((folder / versions.DELTA_LOG).glob("*.checkpoint.parquet"))
    assert checkpoints, "delta-rs wrote no checkpoint after 100 versions"
    from pds_kernel.ingest.pipeline import recover

    removed = recover(lake, Manifest(lake))
    assert all(versions.DELTA_LOG not in p.parts for p in removed)
    assert sorted((folder / versions.DELTA_LOG).glob("*.checkpoint.parquet")) == checkpoints
    assert lake_mod.scan_table(lake, "IR_PHA_R").collect().equals(frame)


def test_the_delta_schema_is_the_one_arrow_gives_for_every_table():
    """``delta_schema`` is built from polars' schema without pyarrow: the same Delta schema as
    through an Arrow table of the lake types, for every table of the catalogue."""
    from deltalake import Schema

    from pds_kernel.ingest.parse import lake_schema
    from pds_kernel.snds.catalogue import ingestible_names

    names = ingestible_names()
    assert len(names) > 180
    for table in names:
        through_arrow = Schema.from_arrow(pl.DataFrame(schema=lake_schema(table)).to_arrow().schema)
        assert versions.delta_schema(table).to_json() == through_arrow.to_json(), table
