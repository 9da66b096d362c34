"""Building, publishing and refusing extracts: pseudonyms, raw identifiers, determinism, access."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
from datetime import date

import polars as pl
import pytest
from extract_lake import DIABETES_SPEC, lake_numbers, unkeyed, write_spec

from pds_kernel.errors import PermissionDenied
from pds_kernel.extract.build import extract_dir, raw_identifiers, run_build, run_check
from pds_kernel.extract.layout import entry_files, file_hashes, read_table
from pds_kernel.extract.spec import PERSON_ID, parse_spec
from pds_kernel.hashing import sha256_file
from pds_kernel.pseudo import KeyStore, pseudonym

MI_SPEC = """
project: mi-study
years: [2022, 2023]
include: [{diagnosis: {icd10: [I21], where: [principal]}}]
tables:
  IR_BEN_R: [BEN_NAI_ANN, BEN_SEX_COD]
  T_MCOaaB: [ETA_NUM, RSA_NUM, DGN_PAL]
  T_MCOaaC: [ETA_NUM, RSA_NUM, EXE_SOI_DTD]
  ER_PRS_F: [DCT_ORD_NUM, EXE_SOI_DTD, PRS_PAI_MNT]
"""


def _read(runtime, project, table) -> pl.DataFrame:
    return read_table(extract_dir(runtime.settings, project), table)


@pytest.fixture
def built(runtime, registry, small_lake):
    return run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")


def test_extract_is_published_read_only_with_a_true_manifest(runtime, built):
    directory = extract_dir(runtime.settings, "diab-study")
    assert directory.is_symlink() and directory.resolve() == built.path.resolve()
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["builder"] == "root" and manifest["backend"] == "polars"
    assert manifest["spec_sha256"] == parse_spec(DIABETES_SPEC).sha256 and len(manifest["lake_snapshot"]) == 16
    assert manifest["conformity"]["ok"] and manifest["conformity"]["k_min"] >= 1
    assert set(manifest["tables"]) == {"IR_BEN_R", "ER_PRS_F", "ER_PHA_F", "IR_PHA_R", "IR_IMB_R", "T_MCOaaB",
                                       "T_MCOaaC", "T_MCOaaD", "KI_CCI_R", "COHORT"}
    for entry in manifest["tables"].values():
        for item in entry_files(entry):
            path = directory / item["file"]
            assert sha256_file(path) == item["sha256"]
            assert pl.read_parquet(path).height == item["rows"]
            assert path.stat().st_mode & 0o777 == 0o444
        assert entry["rows"] == sum(item["rows"] for item in entry_files(entry))
    assert built.path.stat().st_mode & 0o777 == 0o555
    assert not list(runtime.settings.paths.projects.glob("diab-study/.staging-*"))
    assert not any(p.name.endswith(".key") for p in built.path.rglob("*"))
    [entry] = runtime.audit.entries(action="extract.build")
    assert entry.outcome == "ok" and entry.actor == "root" and entry.details["persons"] == manifest["persons"]


def test_same_pseudonym_in_every_table(runtime, built, small_lake):
    key = KeyStore.from_runtime(runtime).get("diab-study")
    rows = small_lake.rows
    claim_owner = {r["DCT_ORD_NUM"]: r["BEN_NIR_PSA"] for r in rows["ER_PRS_F"]}
    stay_owner = {(r["ETA_NUM"], r["RSA_NUM"]): r["NIR_ANO_17"] for r in rows["T_MCOaaC"]}
    numbers = lake_numbers(rows)  # the extract's claim and stay numbers are keyed by the project
    prs = unkeyed(_read(runtime, "diab-study", "ER_PRS_F"), key, numbers)
    assert prs.height > 0
    for number, pid in prs.select("DCT_ORD_NUM", PERSON_ID).iter_rows():
        assert pid == pseudonym(key, claim_owner[number])
    pha = unkeyed(_read(runtime, "diab-study", "ER_PHA_F"), key, numbers)
    for number, pid in pha.select("DCT_ORD_NUM", PERSON_ID).iter_rows():
        assert pid == pseudonym(key, claim_owner[number])
    for table in ("T_MCOaaC", "T_MCOaaD"):
        df = unkeyed(_read(runtime, "diab-study", table), key, numbers)
        assert df.height > 0
        for eta, rsa, pid in df.select("ETA_NUM", "RSA_NUM", PERSON_ID).iter_rows():
            assert pid == pseudonym(key, stay_owner[(eta, rsa)])
    cohort = set(_read(runtime, "diab-study", "COHORT")[PERSON_ID])
    ben = _read(runtime, "diab-study", "IR_BEN_R")
    assert set(ben[PERSON_ID]) == cohort
    # causes of death: resolved through IR_BEN_R by BEN_IDT_ANO, else BEN_NIR_ANO
    by_idt = {r["BEN_IDT_ANO"]: r["BEN_NIR_PSA"] for r in rows["IR_BEN_R"]}
    by_nir = {r["BEN_NIR_ANO"]: r["BEN_NIR_PSA"] for r in rows["IR_BEN_R"]}
    expected = set()
    for r in rows["KI_CCI_R"]:
        owner = by_idt.get(r["BEN_IDT_ANO"]) or by_nir.get(r["BEN_NIR_ANO"])
        if owner and pseudonym(key, owner) in cohort:
            expected.add(pseudonym(key, owner))
    deaths = _read(runtime, "diab-study", "KI_CCI_R")
    assert set(deaths[PERSON_ID]) == expected and expected
    assert any(r["BEN_IDT_ANO"] not in by_idt for r in rows["KI_CCI_R"]), "fixture has deaths linked by BEN_NIR_ANO"


def test_no_raw_identifier_anywhere(runtime, built, small_lake):
    raw = set(raw_identifiers(small_lake.path).to_list())
    assert len(raw) > 100
    for path in built.path.rglob("*.parquet"):
        df = pl.read_parquet(path)
        for column in df.columns:
            values = set(df[column].cast(pl.String).drop_nulls().to_list())
            assert not values & raw, f"{path.name}.{column} holds a raw identifier"


def test_generalisation_applied(runtime, built):
    ben = _read(runtime, "diab-study", "IR_BEN_R")
    assert "BEN_NAI_MOI" not in ben.columns
    assert (ben["BEN_RES_COM"] == ben["BEN_RES_DPT"]).all()
    for path in built.path.rglob("*.parquet"):
        df = pl.read_parquet(path)
        for column, dtype in df.schema.items():
            if dtype == pl.Date:
                assert (df[column].dt.day() == 1).all(), f"{path.name}.{column}"


def test_pseudonyms_differ_across_projects(runtime, registry, small_lake, built):
    run_build(runtime, "mi-study", parse_spec(MI_SPEC), actor="root")
    diab = set(_read(runtime, "diab-study", "COHORT")[PERSON_ID])
    mi = set(_read(runtime, "mi-study", "COHORT")[PERSON_ID])
    keys = KeyStore.from_runtime(runtime)
    people = [r["BEN_NIR_PSA"] for r in small_lake.rows["IR_BEN_R"]]
    in_both = [p for p in people if pseudonym(keys.get("diab-study"), p) in diab
               and pseudonym(keys.get("mi-study"), p) in mi]
    assert in_both, "the fixture should put someone in both cohorts"
    assert not diab & mi


def test_rebuild_is_deterministic_and_replaces_atomically(runtime, built):
    first = file_hashes(built.manifest)
    again = run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")
    assert file_hashes(again.manifest) == first
    assert again.path != built.path and not built.path.exists()
    assert extract_dir(runtime.settings, "diab-study").resolve() == again.path.resolve()


def test_a_rebuild_whose_previous_build_cannot_be_removed_is_published(runtime, built, caplog):
    """The previous build is removed after the new one is published and recorded: a file of it that
    cannot be removed (immutable, ``chattr +i``) leaves it on disk, logged, and the rebuild stands."""
    stuck = next(p for p in sorted(built.path.rglob("*.parquet")))
    subprocess.run(["chattr", "+i", str(stuck)], check=True)
    try:
        with caplog.at_level(logging.WARNING, logger="pds_kernel.extract.build"):
            again = run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")
        assert extract_dir(runtime.settings, "diab-study").resolve() == again.path.resolve()
        assert stuck.exists()
        assert [r for r in caplog.records if "could not be removed" in r.getMessage()
                and str(built.path) in r.getMessage()]
        latest = [e for e in runtime.audit.entries(project="diab-study", action="extract.build")][-1]
        assert latest.outcome == "ok" and latest.details["build_id"] == again.path.name
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)


def test_check_of_the_published_extract(runtime, built):
    report = run_check(runtime, "diab-study", actor="root")
    assert report.ok, report.reasons
    assert report.k_anonymity["IR_BEN_R"]["columns"] == ["BEN_NAI_ANN", "BEN_SEX_COD", "BEN_RES_DPT"]
    [entry] = runtime.audit.entries(action="extract.check")
    assert entry.outcome == "ok"


def test_closed_project_refused_and_audited(runtime, registry, small_lake):
    registry.close_project("root", "diab-study", reason="end of study")
    with pytest.raises(PermissionDenied, match="closed"):
        run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")
    [entry] = runtime.audit.entries(action="extract.build")
    assert entry.outcome == "denied" and "closed" in entry.details["reason"]
    assert not extract_dir(runtime.settings, "diab-study").exists()


def test_only_an_administrator_builds(runtime, registry, small_lake):
    registry.add_member("root", "diab-study", "alice", "researcher", date(2024, 6, 30))  # expired
    with pytest.raises(PermissionDenied, match="only an administrator"):
        run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="alice")
    assert [e.outcome for e in runtime.audit.entries(action="extract.build")] == ["denied"]


def test_destroyed_key_refuses_a_rebuild(runtime, registry, built):
    registry.close_project("root", "diab-study", reason="end of study")
    KeyStore.from_runtime(runtime).destroy("diab-study", "root", confirm=True)
    registry.upsert_project("root", "diab-study", status="active")  # reopened: the tombstone still refuses
    with pytest.raises(PermissionDenied, match="destroyed"):
        run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")
    assert runtime.audit.entries(action="extract.build")[-1].outcome == "failed"


def test_spec_of_another_project_refused(runtime, registry, small_lake):
    with pytest.raises(PermissionDenied, match="not mi-study"):
        run_build(runtime, "mi-study", parse_spec(DIABETES_SPEC), actor="root")


def test_linkage_subject_numbers_reach_the_cohort_table_not_the_source_ids(runtime, registry, small_lake, tmp_path):
    people = small_lake.rows["IR_BEN_R"]
    (tmp_path / "cohort.csv").write_text(
        "BEN_NIR_PSA,SUBJECT\n" + "".join(f"{p['BEN_NIR_PSA']},SUBJ-{n}\n" for n, p in enumerate(people)))
    spec_path = write_spec(tmp_path, DIABETES_SPEC + "linkage: {file: cohort.csv, source_id: BEN_NIR_PSA, "
                                                     "subject_id: SUBJECT}\n")
    from pds_kernel.extract.spec import load_spec

    result = run_build(runtime, "diab-study", load_spec(spec_path), actor="root")
    cohort = pl.read_parquet(result.path / "COHORT.parquet")
    assert cohort.columns == [PERSON_ID, "SUBJECT"]
    key = KeyStore.from_runtime(runtime).get("diab-study")
    subject_of = {pseudonym(key, p["BEN_NIR_PSA"]): f"SUBJ-{n}" for n, p in enumerate(people)}
    for pid, subject in cohort.iter_rows():
        assert subject_of[pid] == subject
    os.remove(tmp_path / "cohort.csv")  # the correspondence is not kept: check still works without it
    report = run_check(runtime, "diab-study", actor="root")
    assert report.ok and report.notes


def test_no_key_bytes_reach_the_logs_at_debug_level(runtime, registry, small_lake, caplog):
    """Every logger at DEBUG (ours, polars', pyarrow's...): neither the key's hex nor its raw bytes."""
    caplog.set_level(logging.DEBUG)
    result = run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")
    run_check(runtime, "diab-study", actor="root")
    key = KeyStore.from_runtime(runtime).get("diab-study")
    assert any(r.name.startswith("pds_kernel") for r in caplog.records), "the build should log something"
    assert any("diab-study" in r.getMessage() for r in caplog.records)
    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records) + caplog.text
    forms = {"hex": key.hex(), "HEX": key.hex().upper(), "repr": repr(key)[2:-1],
             "latin-1": key.decode("latin-1"), "base64": base64.b64encode(key).decode()}
    for name, form in forms.items():
        assert form not in logged, f"the key ({name}) reached the logs"
    raw_ids = set(raw_identifiers(small_lake.path).to_list())
    assert not {word for word in logged.replace(",", " ").split() if word.strip("'\"") in raw_ids}
    assert result.manifest["persons"] > 0
