"""The conformity check catches what must never reach a project: each planted fault is named."""

from __future__ import annotations

import json
import shutil
from datetime import date
from functools import partial

import polars as pl
import pytest
from extract_lake import DIABETES_SPEC

from pds_kernel.errors import DisclosureRisk
from pds_kernel.extract.build import raw_identifiers, run_build, run_check, write_parquet
from pds_kernel.extract.conformity import check_extract
from pds_kernel.extract.identifier_search import KEY_LENGTH, lookup_key
from pds_kernel.extract.layout import entry_files
from pds_kernel.extract.spec import PERSON_ID, parse_spec
from pds_kernel.hashing import sha256_file

SPEC = parse_spec(DIABETES_SPEC)


@pytest.fixture
def extract(runtime, registry, small_lake, tmp_path):
    """A writable copy of a conforming extract, with what the check needs."""
    built = run_build(runtime, "diab-study", SPEC, actor="root")
    copy = tmp_path / "copy"
    shutil.copytree(built.path, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    cohort = pl.read_parquet(copy / "COHORT.parquet")[PERSON_ID]
    return copy, cohort, raw_identifiers(small_lake.path)


def _first_file(directory, table):
    manifest = json.loads((directory / "manifest.json").read_text())
    return directory / entry_files(manifest["tables"][table])[0]["file"]


def _rewrite(directory, table, change):
    """Apply ``change`` to the (first) file of one table and record the new hash and rows, so only
    the planted fault remains."""
    path = _first_file(directory, table)
    changed = change(pl.read_parquet(path))
    write_parquet(changed, path)
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = manifest["tables"][table]
    item = next(f for f in entry.get("files", [entry]) if directory / f["file"] == path)
    item["sha256"] = sha256_file(path)
    item["rows"] = changed.height
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_conforming_copy_passes(extract):
    directory, cohort, raw = extract
    report = check_extract(directory, SPEC, cohort, raw)
    assert report.ok, report.reasons
    assert report.k_min is not None and report.k_min >= 1


def test_k_anonymity_without_min_k_is_reported_as_not_checked(extract):
    """#15: a manifest said ``ok: true`` next to k-anonymity 1, which read as "k = 1 is fine"."""
    directory, cohort, raw = extract
    assert SPEC.min_k is None
    report = check_extract(directory, SPEC, cohort, raw)
    shown = report.as_dict()
    assert shown["ok"] and shown["min_k"] is None
    assert shown["k_status"] == f"not checked: k = {report.k_min} and the spec sets no min_k"
    if report.k_min < 5:
        assert any("this was not checked" in note for note in shown["notes"]), shown["notes"]
    with_min_k = check_extract(directory, parse_spec(DIABETES_SPEC + "min_k: 1\n"), cohort, raw)
    assert with_min_k.as_dict()["k_status"] == f"meets the spec's min_k 1 (k = {report.k_min})"
    assert not any("not checked" in note for note in with_min_k.notes)


def test_planted_raw_identifier_value(extract, small_lake):
    directory, cohort, raw = extract
    nir = small_lake.rows["IR_BEN_R"][0]["BEN_NIR_PSA"]
    _rewrite(directory, "ER_PRS_F", lambda df: df.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(f"note: id={nir}")).otherwise(pl.col("PFS_EXE_NUM"))
        .alias("PFS_EXE_NUM")))
    report = check_extract(directory, SPEC, cohort, raw)
    assert not report.ok
    assert report.reasons == ["ER_PRS_F.PFS_EXE_NUM holds 1 raw identifier value(s) of the lake (as written)"]
    assert nir not in " ".join(report.reasons)  # the reason never repeats the identifier


def test_raw_identifier_column(extract, small_lake):
    directory, cohort, raw = extract
    _rewrite(directory, "T_MCOaaC", lambda df: df.with_columns(pl.lit("x").alias("NIR_ANO_17")))
    report = check_extract(directory, SPEC, cohort, raw)
    assert "T_MCOaaC.NIR_ANO_17 is a raw identifier column" in report.reasons


def test_extra_column(extract):
    directory, cohort, raw = extract
    _rewrite(directory, "T_MCOaaB", lambda df: df.with_columns(pl.lit("8").alias("ENT_MOD")))
    report = check_extract(directory, SPEC, cohort, raw)
    assert report.reasons == ["T_MCOaaB.ENT_MOD is not allowed by the spec"]


def test_person_outside_the_cohort(extract):
    directory, cohort, raw = extract
    _rewrite(directory, "ER_PRS_F", lambda df: pl.concat([df, df.head(1).with_columns(
        pl.lit("f" * 64).alias(PERSON_ID))]))
    report = check_extract(directory, SPEC, cohort, raw)
    assert report.reasons == ["ER_PRS_F holds 1 person(s) outside the cohort"]


def test_ungeneralised_quasi_identifiers(extract):
    directory, cohort, raw = extract
    _rewrite(directory, "ER_PRS_F", lambda df: df.with_columns(pl.lit(date(2022, 5, 17)).alias("EXE_SOI_DTD")))
    _rewrite(directory, "IR_BEN_R", lambda df: df.with_columns(pl.lit("13055").alias("BEN_RES_COM")))
    report = check_extract(directory, SPEC, cohort, raw)
    assert sorted(report.reasons) == sorted([
        f"ER_PRS_F.EXE_SOI_DTD: {pl.read_parquet(_first_file(directory, 'ER_PRS_F')).height} date(s) not generalised to the month",
        f"IR_BEN_R.BEN_RES_COM: {pl.read_parquet(_first_file(directory, 'IR_BEN_R')).height} value(s) finer than a département",
    ])


def test_tampered_or_unlisted_file(extract):
    directory, cohort, raw = extract
    (directory / "notes.csv").write_text("hello\n")
    path = directory / "IR_PHA_R.parquet"
    write_parquet(pl.read_parquet(path).head(1), path)
    report = check_extract(directory, SPEC, cohort, raw)
    assert "file notes.csv is not listed in the manifest" in report.reasons
    assert "file IR_PHA_R.parquet does not match the SHA-256 recorded in the manifest" in report.reasons


def test_min_k_refuses_the_build(runtime, registry, small_lake):
    spec = parse_spec(DIABETES_SPEC + "min_k: 1000\n")
    with pytest.raises(DisclosureRisk, match="k-anonymity 1 is below the spec's min_k 1000"):
        run_build(runtime, "diab-study", spec, actor="root")
    assert not (runtime.settings.paths.projects / "diab-study" / "extract").exists()
    assert not list((runtime.settings.paths.projects / "diab-study").glob(".staging-*"))
    entry = runtime.audit.entries(action="extract.build")[-1]
    assert entry.outcome == "failed" and "min_k" in entry.details["reason"]


def test_check_command_catches_tampering_of_the_published_extract(runtime, registry, small_lake):
    built = run_build(runtime, "diab-study", SPEC, actor="root")
    target = built.path / "IR_PHA_R.parquet"
    built.path.chmod(0o755)
    target.chmod(0o644)
    target.write_bytes(b"not parquet any more")
    with pytest.raises(pl.exceptions.ComputeError):
        pl.read_parquet(target)
    target.unlink()
    report = run_check(runtime, "diab-study", actor="root")
    assert not report.ok and "file IR_PHA_R.parquet listed in the manifest is missing" in report.reasons
    assert runtime.audit.entries(action="extract.check")[-1].outcome == "failed"


def test_raw_identifiers_found_the_same_way_through_the_lake_lookup(extract, small_lake):
    """The build passes a lookup (the lake's identifiers whose key is among the extract's windows)
    instead of every identifier of the lake: the same faults, counted the same (rows holding an
    identifier), in any text column and row."""
    directory, cohort, raw = extract
    people = small_lake.rows["IR_BEN_R"]
    nir, idt, stay_nir = people[0]["BEN_NIR_PSA"], people[1]["BEN_IDT_ANO"], small_lake.rows["T_MCOaaC"][0]["NIR_ANO_17"]
    _rewrite(directory, "ER_PRS_F", lambda df: df.with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(pl.lit(f"{nir} {idt}"))  # 3 rows, 2 identifiers each
        .when(pl.int_range(pl.len()) < 5).then(pl.lit(nir))                # 2 rows: the value
        .otherwise(pl.col("PFS_EXE_NUM")).alias("PFS_EXE_NUM")))
    _rewrite(directory, "T_MCOaaB", lambda df: df.with_columns(pl.lit(f"x-{stay_nir}").alias("DGN_PAL")))
    rows_b = pl.read_parquet(_first_file(directory, "T_MCOaaB")).height
    expected = ["ER_PRS_F.PFS_EXE_NUM holds 5 raw identifier value(s) of the lake (as written)",
                f"T_MCOaaB.DGN_PAL holds {rows_b} raw identifier value(s) of the lake (as written)"]
    with_all = check_extract(directory, SPEC, cohort, raw)
    looked_up = check_extract(directory, SPEC, cohort, partial(raw_identifiers, small_lake.path))
    assert sorted(with_all.reasons) == sorted(looked_up.reasons) == sorted(expected)
    keys = pl.DataFrame({"text": [nir, "NOBODY", idt[:KEY_LENGTH], nir.lower(), None]}).select(lookup_key(pl.col("text")))
    found = raw_identifiers(small_lake.path, among=keys.to_series())
    assert sorted(found.to_list()) == sorted([nir, idt])
