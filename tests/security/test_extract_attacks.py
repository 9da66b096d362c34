"""Attacks on the extract boundary (1/3): raw identifiers reaching the project, minimisation
bypassed, and the spec as hostile input. Each test is one real attempt, asserted refused or
harmless: real lake files, real builds (polars), the real registry and audit trail.

The other parts: test_extract_attacks_keys.py (keys, linkage across projects, published extract
tampering, who may build) and test_extract_attacks_cohort.py (the study's own cohort list).
"""

from __future__ import annotations

import json
import os
import time
from datetime import date

import extract_attacks_support
import polars as pl
import pytest
from extract_attacks_support import (
    DIABETES_SPEC,
    SMALL_SPEC,
    extract_dir,
    make_registry,
    manifest_of,
    rewrite_file,
    writable_copy,
    write_lake,
)

from pds_kernel.errors import DisclosureRisk, InvalidInput, PermissionDenied
from pds_kernel.extract.build import raw_identifiers, run_build
from pds_kernel.extract.conformity import check_extract
from pds_kernel.extract.spec import PERSON_ID, RAW_ID_COLUMNS, load_spec, parse_spec

rows = extract_attacks_support.rows  # fixtures: the small lake's rows, the lake and the registry
world = extract_attacks_support.world


def _cohort_nir(rows) -> str:
    """A BEN_NIR_PSA of a person in the A10 cohort, starting with a letter."""
    a10 = {c for c, atc in ((r["PHA_CIP_C13"], r["PHA_ATC_C07"]) for r in rows["IR_PHA_R"]) if atc.startswith("A10")}
    keys = {(r["FLX_DIS_DTD"], r["DCT_ORD_NUM"]) for r in rows["ER_PHA_F"] if r["PHA_PRS_C13"] in a10}
    users = {r["BEN_NIR_PSA"] for r in rows["ER_PRS_F"] if (r["FLX_DIS_DTD"], r["DCT_ORD_NUM"]) in keys}
    return sorted(n for n in users if n[0].isalpha())[0]


def _nothing_published(runtime, project="diab-study"):
    return not extract_dir(runtime.settings, project).exists()


def _audit_text(runtime) -> str:
    return json.dumps([e.details for e in runtime.audit.entries()], default=str) + \
        " ".join(e.actor for e in runtime.audit.entries())


# ---- 1. raw identifiers reaching the researcher -----------------------------------------------
def test_a_spec_asking_for_every_identifier_column_gets_pseudonyms_only(world):
    """IR_BEN_R, T_MCOaaC and KI_CCI_R asked whole ("all"): BEN_NIR_PSA, NIR_ANO_17, BEN_IDT_ANO
    and BEN_NIR_ANO are asked for; none of them, nor any of their values, is in the extract."""
    spec = parse_spec(DIABETES_SPEC.replace("IR_BEN_R: [BEN_NIR_PSA, BEN_NAI_ANN, BEN_NAI_MOI, BEN_SEX_COD, "
                                            "BEN_RES_DPT, BEN_RES_COM]", "IR_BEN_R: all"))
    assert set(spec.tables["IR_BEN_R"]) >= {"BEN_NIR_PSA", "BEN_IDT_ANO", "BEN_NIR_ANO"}
    built = run_build(world, "diab-study", spec, actor="root")
    raw = set(raw_identifiers(world.settings.paths.lake).to_list())
    for path in built.path.rglob("*.parquet"):
        frame = pl.read_parquet(path)
        assert not set(frame.columns) & set(RAW_ID_COLUMNS), path
        for column in frame.columns:
            assert not set(frame[column].cast(pl.String).drop_nulls().to_list()) & raw, f"{path}:{column}"


@pytest.mark.parametrize("plant", ["whole", "token"])
def test_a_nir_copied_into_a_text_column_of_the_lake_is_refused(runtime, rows, plant):
    """A person's BEN_NIR_PSA copied into a drug's free-text label (IR_PHA_R.PHA_MED_NOM is copied
    whole), as the value itself or inside a longer text: the build is refused, nothing is
    published, and neither the refusal nor the audit trail quotes the identifier."""
    nir = _cohort_nir(rows)
    rows["IR_PHA_R"][0]["PHA_MED_NOM"] = nir if plant == "whole" else f"patient id={nir}; see file"
    write_lake(runtime.settings.paths.lake, rows)
    make_registry(runtime)
    with pytest.raises(DisclosureRisk, match=r"IR_PHA_R.PHA_MED_NOM holds \d+ raw identifier") as refused:
        run_build(runtime, "diab-study", parse_spec(SMALL_SPEC), actor="root")
    assert nir not in str(refused.value) and nir not in _audit_text(runtime)
    assert _nothing_published(runtime)
    [failed] = runtime.audit.entries(action="extract.build")
    assert failed.outcome == "failed"


def _linkage_spec(tmp_path, rows, subject_id: str, subject_of) -> object:
    people = rows["IR_BEN_R"]
    (tmp_path / "cohort.csv").write_text(f"BEN_NIR_PSA,{subject_id}\n" + "".join(
        f"{p['BEN_NIR_PSA']},{subject_of(n, p)}\n" for n, p in enumerate(people)))
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC + f"linkage: {{file: cohort.csv, source_id: BEN_NIR_PSA, "
                                                     f"subject_id: {subject_id}}}\n")
    return load_spec(tmp_path / "spec.yaml")


def test_a_subject_number_that_is_the_nir_is_refused(world, rows, tmp_path):
    """The project's linkage file gives each person's BEN_NIR_PSA again as their 'subject number':
    the COHORT table would hand the correspondence PERSON_ID -> identifier to the project."""
    spec = _linkage_spec(tmp_path, rows, "SUBJECT", lambda n, p: p["BEN_NIR_PSA"])
    with pytest.raises(DisclosureRisk, match="COHORT.SUBJECT holds .* raw identifier"):
        run_build(world, "diab-study", spec, actor="root")
    assert _nothing_published(world)


def test_an_identifier_as_a_column_name_is_refused(world, rows, tmp_path):
    """The subject column named after a person's raw identifier (an upper-case name that is no
    lake column passes the spec's rule): an identifier in a column name reaches the project."""
    nir = _cohort_nir(rows)
    spec = _linkage_spec(tmp_path, rows, nir, lambda n, p: f"S{n}")
    with pytest.raises(DisclosureRisk, match="a column name of COHORT is a raw identifier") as refused:
        run_build(world, "diab-study", spec, actor="root")
    assert nir not in str(refused.value)
    assert _nothing_published(world)


# ---- minimisation: what the parser lets through, the check refuses -----------------------------
@pytest.fixture
def published(world):
    built = run_build(world, "diab-study", parse_spec(SMALL_SPEC), actor="root")
    cohort = pl.read_parquet(built.path / "COHORT.parquet")[PERSON_ID]
    return built, cohort, raw_identifiers(world.settings.paths.lake)


def test_rows_outside_the_projects_years_are_refused_by_the_check(published, tmp_path):
    """A claim of 2019 (the project may see 2022-2023) in the claims table, with a true hash: the
    parser never sees it, so the conformity check must."""
    built, cohort, raw = published
    copy = writable_copy(built.path, tmp_path / "copy")
    claims = pl.read_parquet(next((copy / "ER_PRS_F").glob("*.parquet")))
    old = claims.head(1).with_columns(pl.lit(date(2019, 5, 3)).alias("EXE_SOI_DTD"))
    rewrite_file(copy, "ER_PRS_F", pl.concat([claims, old]))
    report = check_extract(copy, parse_spec(SMALL_SPEC), cohort, raw)
    assert not report.ok
    assert "ER_PRS_F.EXE_SOI_DTD: 1 date(s) outside the project's period 2022-01-01..2023-12-31" in report.reasons


def test_a_table_outside_the_spec_listed_with_a_true_hash_is_refused(published, tmp_path):
    built, cohort, raw = published
    copy = writable_copy(built.path, tmp_path / "copy")
    pl.DataFrame({PERSON_ID: cohort.head(3), "DGN_PAL": ["I21"] * 3}).write_parquet(copy / "T_MCOaaB.parquet")
    manifest = manifest_of(copy)
    from pds_kernel.hashing import sha256_file

    manifest["tables"]["T_MCOaaB"] = {"file": "T_MCOaaB.parquet", "sha256": sha256_file(copy / "T_MCOaaB.parquet"),
                                      "rows": 3, "columns": [PERSON_ID, "DGN_PAL"]}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = check_extract(copy, parse_spec(SMALL_SPEC), cohort, raw)
    assert not report.ok and "table T_MCOaaB is not allowed by the spec" in report.reasons


# ---- 3. the spec as hostile input ---------------------------------------------------------------
_BASE = "project: diab-study\nyears: [2022]\ninclude: [{drug: {atc: [A10]}}]\n"
_LAUGHS = ("[&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], "
           "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], "
           "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]]")


@pytest.mark.parametrize("text, message", [
    # billion laughs: 500 bytes that an error message would quote as 250 MB (a few GB one level on)
    (_BASE + f"tables:\n  IR_BEN_R: [{_LAUGHS}]\n", "anchors and aliases"),
    ("project: diab-study\nyears: [" + _LAUGHS + "]\ninclude: [{drug: {atc: [A10]}}]\ntables: {IR_BEN_R: all}\n",
     "anchors and aliases"),
    (_BASE + "tables: " + "[" * 20000 + "]" * 20000 + "\n", "nested deeper than"),  # RecursionError before
    (_BASE + "tables: {IR_BEN_R: [BEN_SEX_COD]}\ntables: {IR_BEN_R: all}\n", "'tables' is given twice"),
    (_BASE + "tables:\n  IR_BEN_R: [BEN_SEX_COD]\n  IR_BEN_R: all\n", "'IR_BEN_R' is given twice"),
    ("project: diab-study\nyears: [2022]\ninclude: 5\ntables: {IR_BEN_R: all}\n", "include: expected a list"),
    (_BASE + "exclude: {long_term_illness: {icd10: [E10]}}\ntables: {IR_BEN_R: all}\n", "exclude: expected a list"),
    (_BASE + "tables: {IR_BEN_R: all}\nquasi_identifiers: [[BEN_SEX_COD]]\n", "not a \\(non-identifier\\) column"),
    (_BASE + "tables: {IR_BEN_R: all}\nlinkage: {file: [a.csv], source_id: BEN_NIR_PSA, subject_id: SUBJ}\n",
     "linkage.file: expected text"),
    (_BASE + "tables: {IR_BEN_R: all}\n# " + "x" * 300_000 + "\n", "at most 256 KiB"),
    (_BASE + "tables: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "not valid YAML"),
    ("project: ../mi-study\nyears: [2022]\ninclude: [{drug: {atc: [A10]}}]\ntables: {IR_BEN_R: all}\n",
     "invalid project id"),
    (_BASE + "tables: {'../../var/keys': all}\n", "unknown table"),
    (_BASE + "tables: {IR_BEN_R: ['../BEN_SEX_COD']}\n", "unknown column"),
])
def test_a_hostile_spec_is_refused_quickly_with_a_clear_error(text, message):
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=message) as refused:
        parse_spec(text)
    assert time.monotonic() - started < 2 and len(str(refused.value)) < 2000


def test_a_spec_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(SMALL_SPEC.encode() + b"# caf\xe9 in Latin-1\n")
    with pytest.raises(InvalidInput, match="is not UTF-8 text"):
        load_spec(path)


def test_a_spec_file_that_is_a_device_or_a_directory_is_refused(tmp_path):
    for path in ("/dev/zero", tmp_path):
        with pytest.raises(InvalidInput, match="not a regular file"):
            load_spec(path)


@pytest.mark.parametrize("file", ["../outside/cohort.csv", "/etc/passwd", "link.csv"])
def test_a_linkage_file_outside_the_specs_directory_is_refused(tmp_path, file):
    """The linkage file is read as CSV and its header quoted in errors: a spec naming the key store,
    the trusted third party's files or another project's list (directly, by '..', or through a
    symbolic link next to the spec) is refused before anything is read."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "cohort.csv").write_text("BEN_NIR_PSA,SUBJ\nX,1\n")
    (tmp_path / "specs").mkdir()
    os.symlink(tmp_path / "outside" / "cohort.csv", tmp_path / "specs" / "link.csv")
    (tmp_path / "specs" / "spec.yaml").write_text(
        SMALL_SPEC + f"linkage: {{file: '{file}', source_id: BEN_NIR_PSA, subject_id: SUBJ}}\n")
    with pytest.raises(InvalidInput, match="linkage.file: .* inside the spec's directory"):
        load_spec(tmp_path / "specs" / "spec.yaml")


def test_a_malformed_linkage_file_never_quotes_an_identifier(world, rows, tmp_path):
    """A line of the linkage file with an unclosed quote: polars' error quotes the line (a raw
    identifier); the refusal and the audit trail must not."""
    nir = rows["IR_BEN_R"][3]["BEN_NIR_PSA"]
    (tmp_path / "cohort.csv").write_text(f"BEN_NIR_PSA,SUBJ\n{rows['IR_BEN_R'][0]['BEN_NIR_PSA']},1\n\"{nir},2\n")
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC + "linkage: {file: cohort.csv, source_id: BEN_NIR_PSA, "
                                                     "subject_id: SUBJ}\n")
    with pytest.raises(InvalidInput, match="not a readable CSV file") as refused:
        run_build(world, "diab-study", load_spec(tmp_path / "spec.yaml"), actor="root")
    assert nir not in str(refused.value) and nir not in _audit_text(world)


def test_a_linkage_file_larger_than_the_build_reads_is_refused_unread(world, tmp_path):
    """A linkage file of 2 GiB (sparse: no disk used) would be read whole into memory."""
    from pds_kernel.extract.linkage import MAX_LINKAGE_BYTES

    with open(tmp_path / "cohort.csv", "wb") as handle:
        handle.write(b"BEN_NIR_PSA,SUBJ\n")
        handle.truncate(2 * MAX_LINKAGE_BYTES)
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC + "linkage: {file: cohort.csv, source_id: BEN_NIR_PSA, "
                                                     "subject_id: SUBJ}\n")
    with pytest.raises(InvalidInput, match="holds more than 1024 MiB"):
        run_build(world, "diab-study", load_spec(tmp_path / "spec.yaml"), actor="root")
    assert _nothing_published(world, "diab-study")


def test_building_project_b_with_the_spec_of_project_a_is_refused(world):
    with pytest.raises(PermissionDenied, match="the spec is for project diab-study, not mi-study"):
        run_build(world, "mi-study", parse_spec(SMALL_SPEC), actor="root")
    with pytest.raises(InvalidInput, match="invalid project id"):
        run_build(world, "../diab-study", parse_spec(SMALL_SPEC), actor="root")
    assert _nothing_published(world, "mi-study")


@pytest.mark.parametrize("planted", ["project", "builds", "spec.yaml"])
def test_a_symbolic_link_in_the_projects_directory_is_not_followed(world, tmp_path, planted):
    """Someone with write access to projects/ plants a link: the project's directory, its builds/
    or its kept spec.yaml pointing elsewhere (a world-readable place, another project's spec, the
    key store). The build must not write the extract or the spec through it."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    projects = world.settings.paths.projects
    pdir = projects / "diab-study"
    if planted == "project":
        os.symlink(outside, pdir)
    else:
        pdir.mkdir(parents=True)
        if planted == "builds":
            os.symlink(outside, pdir / "builds")
        else:
            (outside / "victim.txt").write_text("not a spec\n")
            os.symlink(outside / "victim.txt", pdir / "spec.yaml")
    with pytest.raises((InvalidInput, PermissionDenied), match="symbolic link"):
        run_build(world, "diab-study", parse_spec(SMALL_SPEC), actor="root")
    assert [p.name for p in outside.iterdir()] in ([], ["victim.txt"])
    if planted == "spec.yaml":
        assert (outside / "victim.txt").read_text() == "not a spec\n"


def test_a_planted_extract_link_does_not_make_the_build_delete_another_projects_extract(world):
    """projects/diab-study/extract replaced by a link to mi-study's published build: publishing
    diab-study used to remove "the previous build", i.e. wherever the link pointed."""
    other = run_build(world, "mi-study", parse_spec(SMALL_SPEC.replace("diab-study", "mi-study")), actor="root")
    pdir = world.settings.paths.projects / "diab-study"
    pdir.mkdir(parents=True)
    os.symlink(os.path.relpath(other.path, pdir), pdir / "extract")
    built = run_build(world, "diab-study", parse_spec(SMALL_SPEC), actor="root")
    assert other.path.is_dir() and (other.path / "manifest.json").is_file()
    assert extract_dir(world.settings, "diab-study").resolve() == built.path.resolve()
