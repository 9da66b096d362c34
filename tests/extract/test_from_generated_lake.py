"""From the synthetic generator through ingestion to two projects' extracts, checked against the CSVs.

The other extract tests use a hand-built lake; this one uses the real chain (generator → ``pds
ingest`` → ``pds extract build``) once per module, and recomputes both cohorts by brute force from
the delivery's CSV files alone (no lake, no extract code), applying the standard SNDS filters:

* A10 users: a care line of ER_PRS_F (not an information line, ``DPN_QLF`` ≠ 71) with a care date in
  2022, carrying (same 9 DCIR keys) an ER_PHA_F line of a drug whose ATC code starts with A10;
* I21 stays: a T_MCOaaC stay starting in 2022 with all 7 linkage return codes ``"0"``, billed in
  T_MCOaaB with principal diagnosis I21* and a GHM that is not an error GHM (``90…``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from extract_lake import unkeyed

from pds_kernel.extract.build import extract_dir, run_build
from pds_kernel.extract.layout import read_table, read_tables
from pds_kernel.extract.spec import PERSON_ID, RAW_ID_COLUMNS, parse_spec
from pds_kernel.ingest import ingest_delivery
from pds_kernel.pseudo import KeyStore, pseudonym
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.snds.generator import generate
from pds_kernel.snds.tables import DCIR_KEYS
from tests.conftest import make_settings

YEAR_START, YEAR_END = date(2022, 1, 1), date(2022, 12, 31)
RETURN_CODES = ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET")

DIAB = "gen-diab"
MI = "gen-mi"
SPECS = {
    DIAB: f"""
project: {DIAB}
years: [2022, 2022]
include: [{{drug: {{atc: [A10]}}}}]
tables:
  IR_BEN_R: all
  ER_PRS_F: all
  ER_PHA_F: all
  T_MCOaaC: all
  KI_CCI_R: all
""",
    MI: f"""
project: {MI}
years: [2022, 2022]
include: [{{diagnosis: {{icd10: [I21], where: [principal]}}}}]
tables:
  IR_BEN_R: all
  ER_PRS_F: all
  T_MCOaaB: all
  T_MCOaaC: all
""",
}


# ---- brute force on the delivery's CSV files ---------------------------------------------------
def _csv(delivery: Path, table: str) -> pl.DataFrame:
    """Every file of ``table`` (``NAME.csv`` or ``NAME_YYYYMM.csv``), Latin-1, all columns as text."""
    files = sorted(delivery.glob(f"{table}.csv")) + sorted(delivery.glob(f"{table}_??????.csv"))
    assert files, f"no {table} file in the delivery"
    frames = [pl.read_csv(f.read_bytes().decode("latin-1").encode(), separator=";", infer_schema=False)
              for f in files]
    return pl.concat(frames)


def _sas_date(column: str) -> pl.Expr:
    """``01JAN2022:00:00:00`` → date (the SAS datetime text of the delivery)."""
    return pl.col(column).str.slice(0, 9).str.to_date("%d%b%Y", strict=True)


def _in_2022(column: str) -> pl.Expr:
    return _sas_date(column).is_between(YEAR_START, YEAR_END).fill_null(False)


def brute_force_a10(delivery: Path) -> set[str]:
    a10 = _csv(delivery, "IR_PHA_R").filter(pl.col("PHA_ATC_C07").str.starts_with("A10"))["PHA_CIP_C13"]
    lines = _csv(delivery, "ER_PHA_F").filter(pl.col("PHA_PRS_C13").is_in(a10.implode()))
    care = _csv(delivery, "ER_PRS_F").filter((pl.col("DPN_QLF").is_null() | (pl.col("DPN_QLF") != "71"))
                                             & _in_2022("EXE_SOI_DTD"))
    return set(care.join(lines, on=list(DCIR_KEYS), how="inner")["BEN_NIR_PSA"])


def brute_force_i21(delivery: Path) -> set[str]:
    billed = _csv(delivery, "T_MCOaaB")
    valid = billed.filter(~pl.col("GRG_GHM").str.starts_with("90").fill_null(False))
    i21 = valid.filter(pl.col("DGN_PAL").str.starts_with("I21").fill_null(False)).select("ETA_NUM", "RSA_NUM")
    linked = pl.all_horizontal([(pl.col(c) == "0").fill_null(False) for c in RETURN_CODES])
    stays = _csv(delivery, "T_MCOaaC").filter(linked & _in_2022("EXE_SOI_DTD"))
    return set(stays.join(i21, on=["ETA_NUM", "RSA_NUM"], how="inner")["NIR_ANO_17"])


def raw_ids_of_delivery(delivery: Path) -> set[str]:
    ids: set[str] = set()
    for table in ("IR_BEN_R", "ER_PRS_F", "T_MCOaaC", "KI_CCI_R"):
        df = _csv(delivery, table)
        for column in RAW_ID_COLUMNS:
            if column in df.columns:
                ids |= set(df[column].drop_nulls())
    return ids


# ---- the chain, once per module -----------------------------------------------------------------
class Generated:
    def __init__(self, runtime: Runtime, delivery: Path):
        self.runtime = runtime
        self.delivery = delivery
        self.keys = {p: KeyStore.from_runtime(runtime).get(p) for p in SPECS}

    def read(self, project: str, table: str) -> pl.DataFrame:
        return read_table(extract_dir(self.runtime.settings, project), table)

    def tables(self, project: str) -> dict[str, pl.DataFrame]:
        return read_tables(extract_dir(self.runtime.settings, project))


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Generated:
    root = tmp_path_factory.mktemp("generated")
    runtime = Runtime(make_settings(root / "pds"))
    delivery = root / "delivery"
    generate(delivery, patients=400, years=(2022, 2022), seed=7)
    ingest_delivery(runtime, delivery, actor="test")
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)
    for project, text in SPECS.items():
        registry.upsert_project("root", project, title=project, start_date=date(2024, 1, 1),
                                end_date=date(2099, 12, 31))
        run_build(runtime, project, parse_spec(text), actor="root")
    yield Generated(runtime, delivery)
    runtime.close()


# ---- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("project", "brute_force"), [(DIAB, brute_force_a10), (MI, brute_force_i21)])
def test_cohort_equals_brute_force_on_the_csv_files(generated, project, brute_force):
    expected = brute_force(generated.delivery)
    assert expected, "the generated delivery should hold persons of this cohort"
    key = generated.keys[project]
    cohort = generated.read(project, "COHORT")[PERSON_ID]
    assert cohort.is_unique().all()
    assert set(cohort) == {pseudonym(key, nir) for nir in expected}


def test_same_person_same_pseudonym_in_every_table(generated):
    """Each row's PERSON_ID is the pseudonym of that row's own source identifier (claims by their 9
    keys, stays by ETA_NUM/RSA_NUM), and every table's persons are cohort persons."""
    prs = _csv(generated.delivery, "ER_PRS_F")
    for project in SPECS:
        key = generated.keys[project]
        cohort = set(generated.read(project, "COHORT")[PERSON_ID])
        # claim and stay numbers back to the lake's (the extract keys them by project)
        numbers = {"DCT_ORD_NUM": prs["DCT_ORD_NUM"].cast(pl.Int64).to_list(),
                   "RSA_NUM": _csv(generated.delivery, "T_MCOaaC")["RSA_NUM"].cast(pl.Int64).to_list()}
        claims = unkeyed(generated.read(project, "ER_PRS_F"), key, numbers)
        assert claims.height > 0
        # the extract's claim keys written back as the delivery's text, to find the claim's owner
        as_text = claims.with_columns(
            [pl.col(c).dt.strftime("%d%b%Y:00:00:00").str.to_uppercase() for c in ("FLX_DIS_DTD", "FLX_TRT_DTD")]
        ).with_columns([pl.col(c).cast(pl.String) for c in DCIR_KEYS])
        owners = as_text.join(prs.select(*DCIR_KEYS, "BEN_NIR_PSA"), on=list(DCIR_KEYS), how="left")
        assert owners["BEN_NIR_PSA"].null_count() == 0 and owners.height == claims.height
        for pid, nir in owners.select(PERSON_ID, "BEN_NIR_PSA").unique().iter_rows():
            assert pid == pseudonym(key, nir)
        stays = unkeyed(generated.read(project, "T_MCOaaC"), key, numbers)
        stay_owner = _csv(generated.delivery, "T_MCOaaC").select(
            pl.col("ETA_NUM"), pl.col("RSA_NUM"), pl.col("NIR_ANO_17"))
        linked = stays.with_columns(pl.col("ETA_NUM").cast(pl.String), pl.col("RSA_NUM").cast(pl.String)).join(
            stay_owner, on=["ETA_NUM", "RSA_NUM"], how="left")
        assert linked["NIR_ANO_17"].null_count() == 0
        for pid, nir in linked.select(PERSON_ID, "NIR_ANO_17").unique().iter_rows():
            assert pid == pseudonym(key, nir)
        for table, df in generated.tables(project).items():
            if PERSON_ID in df.columns:
                assert set(df[PERSON_ID]) <= cohort, table
        assert set(generated.read(project, "IR_BEN_R")[PERSON_ID]) == cohort


def test_pseudonyms_differ_across_projects(generated):
    diab = set(generated.read(DIAB, "COHORT")[PERSON_ID])
    mi = set(generated.read(MI, "COHORT")[PERSON_ID])
    assert generated.keys[DIAB] != generated.keys[MI]
    assert not diab & mi
    # the MI persons as the diabetes project would name them: never the MI project's names
    for nir in brute_force_i21(generated.delivery):
        assert pseudonym(generated.keys[DIAB], nir) not in mi
        assert pseudonym(generated.keys[MI], nir) in mi
        if pseudonym(generated.keys[DIAB], nir) in diab:  # in both cohorts: two different names
            assert pseudonym(generated.keys[DIAB], nir) != pseudonym(generated.keys[MI], nir)


def test_no_raw_identifier_of_the_lake_in_the_extracts(generated):
    raw = raw_ids_of_delivery(generated.delivery)
    assert len(raw) > 400
    pattern = sorted(raw)
    for project in SPECS:
        for table, df in generated.tables(project).items():
            assert not set(df.columns) & set(RAW_ID_COLUMNS), table
            for column in df.columns:
                values = df[column].cast(pl.String)
                hits = values.str.contains_any(pattern).fill_null(False)
                assert not hits.any(), f"{project}/{table}.{column} holds a raw identifier"
