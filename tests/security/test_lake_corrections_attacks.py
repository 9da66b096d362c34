"""Attacks on corrections, versions and extract pinning: what an operator could get wrong (a
correction of the wrong month, a reordered header, a typo in a version or a retention) and what a
hostile local user could plant in a table folder or its Delta log before a correction.

Each test makes its attempts against a real lake written by the real ingestion and asserts that
they fail safely (a clear error, nothing lost, the lake and the ledger agreeing, an audit entry) or
give exactly the right result. Complements tests/security/test_lake_versions.py (not repeated
here: dropped or swapped rows, a month not loaded, hand edits of the log and ledger, traversal in
table names, concurrent writers).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from lake_versions_support import PRS, correction, fresh_runtime, loaded_lake, make_rows, write_delivery, write_table

from pds_kernel import lake as lake_mod
from pds_kernel.errors import IntegrityError, NotFound
from pds_kernel.extract.build import run_build, run_check
from pds_kernel.extract.layout import file_hashes
from pds_kernel.extract.pinning import pins_broken_by
from pds_kernel.extract.spec import parse_spec
from pds_kernel.ingest import Status, ingest_delivery
from pds_kernel.ingest.commits import check_log_matches_ledger
from pds_kernel.ingest.manifest import Manifest
from pds_kernel.lake import versions
from pds_kernel.lake.diff import diff_versions
from pds_kernel.lake.retention import apply_expiry
from pds_kernel.registry import Registry
from pds_kernel.snds.tables import TABLES

COLUMNS = list(TABLES["ER_PRS_F"].column_names)


def _feb(rows: dict) -> list[dict]:
    return [dict(r) for r in rows[("ER_PRS_F", "202302")]]


def _consistent(lake: Path) -> None:
    """The ledger and every table's latest version name the same files (what the next ingest checks)."""
    check_log_matches_ledger(lake, Manifest(lake))


def _pds(tmp_path: Path, lake: Path, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "pds.yaml"
    config.write_text(f"paths:\n  lake: {lake}\n  state: {tmp_path / 'pds' / 'state'}\n"
                      f"cli:\n  identities:\n    {json.dumps(getpass.getuser())}: alice\n")
    return subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()", "--config",
                           str(config), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


# ---- corrections an operator could get wrong -------------------------------------------------------
def test_reordered_header_changes_nothing_and_a_dropped_optional_column_is_counted_exactly(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    feb = _feb(rows)
    fix = tmp_path / "fix"
    fix.mkdir()
    write_table(fix / PRS, "ER_PRS_F", feb, columns=COLUMNS[::-1])  # same rows, header reversed
    result = ingest_delivery(runtime, fix, actor="operator", corrections=True)
    (f,) = result.files
    assert f.status == Status.CORRECTED and result.clean
    assert (f.correction["added"], f.correction["changed"], f.correction["removed"]) == (0, 0, 0)
    assert f.correction["unchanged"] == len(feb)
    # DPN_QLF is optional: left out, every row that held a value now holds none, and only those
    write_table(fix / PRS, "ER_PRS_F", feb, columns=[c for c in COLUMNS if c != "DPN_QLF"])
    (f,) = ingest_delivery(runtime, fix, actor="operator", corrections=True).files
    held = sum(r["DPN_QLF"] is not None for r in feb)
    assert 0 < held < len(feb)
    assert f.correction["changed"] == held and f.correction["columns_changed"] == {"DPN_QLF": held}
    latest = versions.latest_version(lake, "ER_PRS_F")
    again = diff_versions(lake, "ER_PRS_F", latest - 1, latest)
    assert (again.changed, again.columns_changed, again.unchanged) == (held, {"DPN_QLF": held},
                                                                        lake_mod.scan_table(lake, "ER_PRS_F").collect().height - held)
    mirror = diff_versions(lake, "ER_PRS_F", latest, latest - 2)  # reversed and across two versions
    assert (mirror.added, mirror.changed, mirror.removed) == (0, held, 0)
    _consistent(lake)


def test_header_only_correction_leaves_the_loaded_month_as_it_was(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    version, before = versions.latest_version(lake, "ER_PRS_F"), lake_mod.scan_table(lake, "ER_PRS_F").collect()
    (f,) = ingest_delivery(runtime, correction(tmp_path, []), actor="operator", corrections=True).files
    assert f.status == Status.EMPTY and f.rows_loaded == 0
    assert "the loaded rows are kept" in f.reason and "stays open" not in f.reason  # it is loaded, not open
    assert versions.latest_version(lake, "ER_PRS_F") == version  # no version, the month is not emptied
    assert lake_mod.scan_table(lake, "ER_PRS_F").collect().equals(before)
    assert runtime.audit.entries(action="ingest.file")[-1].details["status"] == Status.EMPTY
    _consistent(lake)


def test_correction_made_of_another_months_rows_loads_none_and_reports_every_row_removed(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    jan, feb = [dict(r) for r in rows[("ER_PRS_F", "202301")]], _feb(rows)
    before = lake_mod.scan_table(lake, "ER_PRS_F").collect()
    result = ingest_delivery(runtime, correction(tmp_path, jan), actor="operator", corrections=True)
    (f,) = result.files
    assert f.status == Status.CORRECTED and not result.clean  # exit code 3
    assert (f.rows_loaded, f.rows_quarantined) == (0, len(jan))  # January's rows are not February's
    assert (f.correction["removed"], f.correction["added"]) == (len(feb), 0)
    assert lake_mod.scan_table(lake, "ER_PRS_F").collect().height == before.height - len(feb)
    latest = versions.latest_version(lake, "ER_PRS_F")
    old = lake_mod.scan_table(lake, "ER_PRS_F", latest - 1).collect()
    assert old.sort(old.columns).equals(before.sort(before.columns))  # nothing lost: still readable
    _consistent(lake)


def test_correction_repeating_a_key_keeps_the_first_row_and_quarantines_the_repeat(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    feb = _feb(rows)
    repeat = dict(feb[0], PRS_PAI_MNT=feb[0]["PRS_PAI_MNT"] + 500)  # same key, another amount
    (f,) = ingest_delivery(runtime, correction(tmp_path, [*feb, repeat]), actor="operator", corrections=True).files
    assert (f.rows_loaded, f.rows_quarantined) == (len(feb), 1)
    assert (f.correction["added"], f.correction["changed"], f.correction["removed"]) == (0, 0, 0)
    lake = runtime.settings.paths.lake
    assert lake_mod.scan_table(lake, "ER_PRS_F").filter(pl.col("PRS_PAI_MNT") == repeat["PRS_PAI_MNT"]).collect().is_empty()


def test_chained_corrections_keep_every_version_readable_and_their_diffs_compose(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    feb = _feb(rows)
    ingest_delivery(runtime, correction(tmp_path, feb[2:]), actor="operator", corrections=True)
    second = [dict(r, PRS_PAI_MNT=r["PRS_PAI_MNT"] + 1) for r in feb[2:5]] + feb[5:] + [dict(feb[0], DCT_ORD_NUM=777_777)]
    ingest_delivery(runtime, correction(tmp_path, second), actor="operator", corrections=True)
    assert versions.latest_version(lake, "ER_PRS_F") == 3
    heights = [lake_mod.scan_table(lake, "ER_PRS_F", v).collect().height for v in (1, 2, 3)]
    assert heights[1] == heights[0] - 2 and heights[2] == heights[1] + 1
    whole = diff_versions(lake, "ER_PRS_F", 1, 3)
    assert (whole.added, whole.changed, whole.removed) == (1, 3, 2)
    assert sorted(Manifest(lake).get(PRS).superseded) == sorted(
        str(p.relative_to(lake)) for v in (1, 2) for p in lake_mod.table_files(lake, "ER_PRS_F", v)
        if p.parent.name == "month=202302")
    assert [sorted(v.corrections) for v in versions.history(lake, "ER_PRS_F", since=1)] == [[PRS], [PRS]]


# ---- versions and retentions given on the command line ---------------------------------------------
def test_hostile_versions_tables_and_retentions_on_the_command_line_fail_in_one_line(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    ingest_delivery(runtime, correction(tmp_path, _feb(rows)[3:]), actor="operator", corrections=True)
    files = sorted(p for p in lake.rglob("*.parquet"))
    attempts = {  # arguments: (exit code, what stderr says)
        ("lake", "diff", "ER_PRS_F", "1", "999999999999999999"): (3, "does not exist: its latest version is 2"),
        ("lake", "diff", "ER_PRS_F", "1", "99999999999999999999"): (2, "bad version"),
        ("lake", "diff", "ER_PRS_F", "--", "-1", "2"): (2, "bad version '-1'"),
        ("lake", "diff", "T_MCOaaB", "0", "1"): (3, "table T_MCOaaB has no versions"),  # catalogued, never loaded
        ("lake", "diff", "../ER_PRS_F", "1", "2"): (2, "unknown SNDS table"),
        ("lake", "expire", "--days", "nan"): (2, "bad retention nan"),
        ("lake", "expire", "--days", "inf"): (2, "bad retention inf"),
    }
    for args, (code, message) in attempts.items():
        started = time.monotonic()
        done = _pds(tmp_path, lake, *args)
        assert (done.returncode, "Traceback" in done.stderr) == (code, False), (args, done.stderr[-800:])
        assert message in done.stderr, (args, done.stderr)
        assert time.monotonic() - started < 30, args  # version 10**18 used to keep delta-rs busy for ages
    huge = _pds(tmp_path, lake, "lake", "expire", "--days", "1e300", "--dry-run")  # keeps everything
    assert huge.returncode == 0 and "nothing to delete" in huge.stdout, huge.stderr[-800:]
    assert sorted(p for p in lake.rglob("*.parquet")) == files  # nothing expired by any attempt
    assert versions.latest_version(lake, "ER_PRS_F") == 2


def test_a_pin_on_a_huge_version_or_an_unloaded_table_is_refused_at_once(tmp_path):
    """delta-rs walks every version number up to the one asked for (~85 s for 10**9): an extract
    pin or a notebook's ``scan_table(lake, t, 10**17)`` held a CPU for years. In a child process
    with a deadline, so that a regression fails instead of hanging the suite."""
    runtime, _ = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    child = textwrap.dedent(f"""
        from pathlib import Path
        from pds_kernel import lake as lake_mod
        from pds_kernel.errors import NotFound
        from pds_kernel.extract.pinning import pinned_versions
        for attempt in (lambda: pinned_versions(Path({str(lake)!r}), {{"ER_PRS_F": 999_999_999_999_999_999}}),
                        lambda: lake_mod.scan_table(Path({str(lake)!r}), "IR_BEN_R", 10**12),
                        lambda: pinned_versions(Path({str(lake)!r}), {{"T_MCOaaB": 1}})):
            try:
                attempt()
            except NotFound as exc:
                print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1500:]
    huge, far, unloaded = done.stdout.splitlines()
    assert "version 999999999999999999 of table ER_PRS_F does not exist: its latest version is 1" in huge
    assert "version 1000000000000 of table IR_BEN_R does not exist" in far
    assert "table T_MCOaaB has no versions" in unloaded


# ---- a crash right after a correction is committed ------------------------------------------------
def test_kill_after_a_correction_is_committed_leaves_it_audited_by_the_next_run(tmp_path):
    """kill -9 once the correction's version is committed and before its audit entries are
    written (injected in a child process at that point): the lake held a correction that removed
    rows and no audit entry named it; the re-run said "skipped"."""
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    fix = correction(tmp_path, _feb(rows)[3:])
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parents[1] / 'ingest')!r})
        from pathlib import Path
        from delivery_factory import fresh_runtime
        from pds_kernel.ingest import commits, ingest_delivery
        committed = commits.Commits.flush
        def commit_then_die(self):  # the versions are in the Delta logs: kill -9
            committed(self)
            os.kill(os.getpid(), signal.SIGKILL)
        commits.Commits.flush = commit_then_die
        ingest_delivery(fresh_runtime(Path({str(tmp_path / 'pds')!r})), Path({str(fix)!r}),
                        actor="killed", corrections=True)
    """)
    assert subprocess.run([sys.executable, "-c", child], timeout=120).returncode == -9
    assert versions.latest_version(lake, "ER_PRS_F") == 2  # the correction is in the lake
    result = ingest_delivery(runtime, fix, actor="operator", corrections=True)
    assert [f.status for f in result.files] == [Status.SKIPPED]  # not loaded twice
    [audit] = [e for e in runtime.audit.entries(action="ingest.file") if e.details.get("recovered_by")]
    assert audit.target == PRS and audit.details["status"] == Status.CORRECTED
    assert audit.details["correction"]["removed"] == 3 and audit.details["version"] == 2
    assert runtime.audit.entries(action="ingest.run")[-1].details["recovered"] == [PRS]
    _consistent(lake)
    assert Manifest(lake).get(PRS).version == 2
    ingest_delivery(runtime, fix, actor="operator", corrections=True)  # recovered once, audited once
    assert len([e for e in runtime.audit.entries(action="ingest.file") if e.details.get("recovered_by")]) == 1


# ---- what a hostile local user plants in a table folder or its log --------------------------------
def test_a_linked_partition_folder_is_refused_before_any_row_leaves_the_lake(tmp_path):
    runtime, _ = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    outside = tmp_path / "outside"
    outside.mkdir()
    (lake / "ER_PRS_F" / "month=202303").symlink_to(outside)
    march = tmp_path / "march"
    march.mkdir()
    write_table(march / "ER_PRS_F_202303.csv", "ER_PRS_F", make_rows(persons=12, months=("202303",))[("ER_PRS_F", "202303")])
    version = versions.latest_version(lake, "ER_PRS_F")
    with pytest.raises(IntegrityError, match="leads outside"):
        ingest_delivery(runtime, march, actor="operator")
    assert list(outside.iterdir()) == []  # no claim written through the link
    assert versions.latest_version(lake, "ER_PRS_F") == version
    assert lake_mod.scan_table(lake, "ER_PRS_F").collect().height  # the table is still readable
    assert runtime.audit.entries(action="ingest.run")[-1].outcome == "failed"
    _consistent(lake)
    (lake / "ER_PRS_F" / "month=202303").unlink()
    (f,) = ingest_delivery(runtime, march, actor="operator").files
    assert f.status == Status.LOADED and versions.latest_version(lake, "ER_PRS_F") == version + 1


def test_planted_entries_in_a_table_folder_are_named_or_removed_never_followed(tmp_path, caplog):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    month = lake / "ER_PRS_F" / "month=202302"
    precious = tmp_path / "precious.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(precious)
    (month / "evil.parquet").symlink_to(precious)  # removed as a leftover: the link, not its target
    (month / "planted.parquet").mkdir()  # a folder under a data file's name
    (month / "planted.parquet" / "keep").write_text("x")
    fix = correction(tmp_path, _feb(rows)[1:])
    with caplog.at_level(logging.ERROR), pytest.raises(IntegrityError, match="planted.parquet is not a file"):
        ingest_delivery(runtime, fix, actor="operator", corrections=True)
    assert "could not record" not in caplog.text  # nothing was committed: no false alarm
    assert (month / "planted.parquet" / "keep").exists() and precious.is_file()
    assert versions.latest_version(lake, "ER_PRS_F") == 1
    (month / "planted.parquet" / "keep").unlink()
    (month / "planted.parquet").rmdir()
    (f,) = ingest_delivery(runtime, fix, actor="operator", corrections=True).files
    assert f.status == Status.CORRECTED and f.correction["removed"] == 1
    assert precious.is_file() and not (month / "evil.parquet").is_symlink()
    _consistent(lake)


def test_files_planted_in_the_delta_log(tmp_path):
    runtime, rows = loaded_lake(tmp_path)
    lake = runtime.settings.paths.lake
    log_dir = lake / "ER_PRS_F" / versions.DELTA_LOG
    (log_dir / "notes.txt").write_text("hello")  # not log files: ignored by every reader
    (log_dir / "00000000000000000002.json.tmp").write_text("{")
    (f,) = ingest_delivery(runtime, correction(tmp_path, _feb(rows)[1:]), actor="operator", corrections=True).files
    assert f.status == Status.CORRECTED and versions.latest_version(lake, "ER_PRS_F") == 2
    for name, text in (("_last_checkpoint", '{"version": 1, "size": 3}'), (f"{9:020d}.json", '{"commitInfo": {}}\n')):
        (log_dir / name).write_text(text)  # a checkpoint hint to nothing; a version after a gap
        for attempt in (lambda: versions.history(lake, "ER_PRS_F"), lambda: lake_mod.scan_table(lake, "ER_PRS_F"),
                        lambda: ingest_delivery(runtime, correction(tmp_path, _feb(rows)[2:]), actor="operator",
                                                corrections=True)):
            with pytest.raises(IntegrityError, match="is unreadable"):
                attempt()
        shown = _pds(tmp_path, lake, "lake", "history", "ER_PRS_F")
        assert shown.returncode == 7 and "Traceback" not in shown.stderr and "restore" in shown.stderr
        (log_dir / name).unlink()
    assert versions.latest_version(lake, "ER_PRS_F") == 2  # no refused attempt made a version
    _consistent(lake)


# ---- extracts pinned to versions, across corrections, threads and retention -------------------------
SPEC = """
project: ver-study
years: [2023, 2023]
include:
  - drug: {atc: [A10]}
tables:
  IR_BEN_R: [BEN_NAI_ANN, BEN_SEX_COD]
  ER_PRS_F: all
  ER_PHA_F: all
generalise: {birth_date: year, care_date: month}
"""


def test_pinned_extract_same_bytes_on_one_thread_then_refused_once_expired(tmp_path):
    root = tmp_path / "pds"
    runtime = fresh_runtime(root)
    rows = make_rows(persons=150, months=("202301", "202302"))
    ingest_delivery(runtime, write_delivery(tmp_path / "delivery", rows), actor="loader")
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)
    registry.upsert_project("root", "ver-study", title="v", start_date=date(2024, 1, 1), end_date=date(2099, 12, 31))
    spec, lake = parse_spec(SPEC), runtime.settings.paths.lake
    first = run_build(runtime, "ver-study", spec, actor="root")
    pin = first.manifest["lake_versions"]
    assert first.manifest["tables"]["ER_PRS_F"]["rows"] > 20
    ingest_delivery(runtime, correction(tmp_path, _feb(rows)[4:]), actor="operator", corrections=True)
    child = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parents[1] / 'ingest')!r})
        from pathlib import Path
        from delivery_factory import fresh_runtime
        from pds_kernel.extract.build import run_build
        from pds_kernel.extract.layout import file_hashes
        from pds_kernel.extract.spec import parse_spec
        built = run_build(fresh_runtime(Path({str(root)!r})), "ver-study", parse_spec({SPEC!r}), actor="root",
                          pin={pin!r})
        print(json.dumps(file_hashes(built.manifest)))
    """)
    one_thread = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "POLARS_MAX_THREADS": "1"})
    assert one_thread.returncode == 0, one_thread.stderr[-1500:]
    assert json.loads(one_thread.stdout.splitlines()[-1]) == file_hashes(first.manifest)  # same bytes
    newer = run_build(runtime, "ver-study", spec, actor="root")
    [change] = newer.manifest["lake_changes"]
    assert (change["table"], change["from_version"], change["to_version"], change["removed"]) == ("ER_PRS_F", 1, 2, 4)
    back = run_build(runtime, "ver-study", spec, actor="root", pin=pin)  # published again on version 1
    assert file_hashes(back.manifest) == file_hashes(first.manifest)
    planned = apply_expiry(runtime, actor="operator", retention_days=0, dry_run=True)
    assert pins_broken_by(runtime.settings, {e.table: e.files for e in planned}) == [("ver-study", "ER_PRS_F", 1)]
    config = tmp_path / "operator.yaml"  # the operator is told, before anything is deleted
    config.write_text(f"paths:\n  lake: {lake}\n  state: {root / 'state'}\n  projects: {root / 'projects'}\n"
                      f"cli:\n  identities:\n    {json.dumps(getpass.getuser())}: root\n")
    told = subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()", "--config", str(config),
                           "lake", "expire", "--days", "0", "--dry-run"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert told.returncode == 0, told.stderr[-1500:]
    assert "ver-study" in told.stdout and "ER_PRS_F" in told.stdout and "would be refused" in told.stdout
    assert [e.files for e in apply_expiry(runtime, actor="operator", retention_days=0)] == [
        [f"ER_PRS_F/month=202302/{PRS[:-4]}.parquet"]]
    with pytest.raises(NotFound, match="expired by the retention policy"):  # never the latest instead
        run_build(runtime, "ver-study", spec, actor="root", pin=pin)
    assert runtime.audit.entries(action="extract.build")[-1].outcome == "failed"
    assert file_hashes(json.loads((back.path / "manifest.json").read_text())) == file_hashes(first.manifest)
    with pytest.raises(NotFound, match="expired by the retention policy"):  # the published extract's check
        run_check(runtime, "ver-study", actor="root")
    checked = runtime.audit.entries(action="extract.check")[-1]
    assert checked.outcome == "failed" and "expired" in checked.details["reason"]
    # the expiry recorded itself in the log (delta-rs: VACUUM START and END, the files of version 2)
    assert [v.operation for v in versions.history(lake, "ER_PRS_F", since=2)] == ["VACUUM START", "VACUUM END"]
    latest = run_build(runtime, "ver-study", spec, actor="root")  # on the latest: the change is named
    [change] = latest.manifest["lake_changes"]
    assert (change["from_version"], change["to_version"]) == (1, 4) and "expired" in change["note"]
    assert file_hashes(latest.manifest) == file_hashes(newer.manifest)  # version 4 reads as version 2
