"""Cohort criteria on medical acts (CCAM) and hospital drugs (UCD), from the synthetic delivery.

The real chain once per module (generator → ingestion → extract build, one machine, then on a local
Dask cluster of two worker processes); the expected persons are computed independently, by DuckDB
SQL on the delivery's CSV files alone (no lake, no extract code), with the standard SNDS filters:

* a DCIR act (ER_CAM_F) or hospital drug (ER_UCD_F) counts when its line hangs (same 9 DCIR keys)
  on an ER_PRS_F care line that is not an information line (``DPN_QLF`` ≠ 71), cared for in 2022;
* a PMSI act (T_MCOaaA) or drug (T_MCOaaMED) counts when its stay (ETA_NUM, RSA_NUM) is billed in
  T_MCOaaB with a GHM that is not an error GHM (``90…``) and starts in 2022 in T_MCOaaC with all
  7 linkage return codes ``"0"``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pds_kernel.errors import InvalidInput
from pds_kernel.extract.build import run_build
from pds_kernel.extract.dask_backend import DaskBackend
from pds_kernel.extract.layout import file_hashes
from pds_kernel.extract.spec import PERSON_ID, parse_spec
from pds_kernel.ingest import ingest_delivery
from pds_kernel.pseudo import KeyStore, pseudonym
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.snds.generator import generate
from pds_kernel.snds.tables import DCIR_KEYS
from tests.conftest import make_settings

PROJECT = "acts-drugs"
#: A coronary angioplasty (stays of an infarction), an ECG (town and stays), a chest X-ray.
CCAM = ("DDAF001", "DEQP003", "ZBQK002")
#: Oxaliplatin and carboplatin (chemotherapy sessions), temozolomide (retroceded), as the spec
#: may write them: 7 digits, or 13.
UCD = ("9301401", "0000009239145", "9354082")
RETURN_CODES = ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET")


def _spec(include: str, tables: str = "  IR_BEN_R: [BEN_SEX_COD]\n") -> str:
    return f"project: {PROJECT}\nyears: [2022, 2022]\ninclude: [{include}]\ntables:\n{tables}"


def _quoted(codes) -> str:
    return ", ".join(f"'{c}'" for c in codes)


# ---- DuckDB on the CSV files -------------------------------------------------------------------
def _sql(delivery: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for view, pattern in (("prs", "ER_PRS_F_*.csv"), ("cam", "ER_CAM_F_*.csv"), ("ucd", "ER_UCD_F_*.csv"),
                          ("b", "T_MCOaaB_*.csv"), ("c", "T_MCOaaC_*.csv"), ("a", "T_MCO??A.csv"),
                          ("med", "T_MCO??MED.csv")):
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_csv('{delivery / pattern}', delim=';', "
                    "header=true, all_varchar=true, encoding='latin-1')")
    return con


def _care_2022(column: str) -> str:
    return f"strptime(substr({column}, 1, 9), '%d%b%Y')::DATE BETWEEN DATE '2022-01-01' AND DATE '2022-12-31'"


def expected(delivery: Path, dcir: tuple[str, str], pmsi: tuple[str, str]) -> set[str]:
    """Persons with a line of DCIR detail view ``dcir = (view, condition)`` on a 2022 care line, or
    a row of PMSI detail view ``pmsi = (view, condition)`` in a valid 2022 stay."""
    con = _sql(delivery)
    keys = " AND ".join(f"p.{k} = d.{k}" for k in DCIR_KEYS)
    linked = " AND ".join(f"coalesce(c.{k}, '') = '0'" for k in RETURN_CODES)
    rows = con.execute(f"""
        SELECT p.BEN_NIR_PSA FROM prs p JOIN {dcir[0]} d ON {keys}
        WHERE coalesce(p.DPN_QLF, '') <> '71' AND {_care_2022('p.EXE_SOI_DTD')} AND {dcir[1]}
        UNION
        SELECT c.NIR_ANO_17 FROM c JOIN b USING (ETA_NUM, RSA_NUM) JOIN {pmsi[0]} x USING (ETA_NUM, RSA_NUM)
        WHERE {linked} AND NOT starts_with(coalesce(b.GRG_GHM, ''), '90')
          AND {_care_2022('c.EXE_SOI_DTD')} AND {pmsi[1]}
    """).fetchall()
    return {r[0] for r in rows}


def expected_procedures(delivery: Path) -> set[str]:
    return expected(delivery, ("cam", f"d.CAM_PRS_IDE IN ({_quoted(CCAM)})"), ("a", f"x.CDC_ACT IN ({_quoted(CCAM)})"))


def expected_hospital_drugs(delivery: Path) -> set[str]:
    thirteen = tuple(c if len(c) == 13 else "000000" + c for c in UCD)
    return expected(delivery, ("ucd", f"d.UCD_UCD_COD IN ({_quoted(thirteen)})"),
                    ("med", f"x.UCD_UCD_COD IN ({_quoted(thirteen)})"))


# ---- the chain, once per module ------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("acts")
    runtime = Runtime(make_settings(root / "pds"))
    delivery = root / "delivery"
    generate(delivery, patients=400, years=(2022, 2022), seed=11)
    ingest_delivery(runtime, delivery, actor="test")
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)
    registry.upsert_project("root", PROJECT, title=PROJECT, start_date=date(2024, 1, 1), end_date=date(2099, 12, 31))
    yield runtime, delivery
    runtime.close()


def _cohort(runtime, spec_text: str, backend=None) -> tuple[set[str], dict]:
    result = run_build(runtime, PROJECT, parse_spec(spec_text), actor="root", backend=backend)
    cohort = pl.read_parquet(result.path / "COHORT.parquet")[PERSON_ID]
    return set(cohort), result.manifest


def _pseudonyms(runtime, nirs: set[str]) -> set[str]:
    key = KeyStore.from_runtime(runtime).get(PROJECT)
    return {pseudonym(key, nir) for nir in nirs}


def test_the_generator_writes_acts_and_hospital_drugs_of_the_demo_persons(chain):
    _runtime, delivery = chain
    con = _sql(delivery)
    ben = set(pl.read_csv(delivery / "IR_BEN_R.csv", separator=";", infer_schema=False)["BEN_NIR_PSA"])
    keys = ", ".join(DCIR_KEYS)
    for view in ("cam", "ucd"):  # every detail line hangs on a claim of a person of the demo
        orphans = con.execute(f"SELECT count(*) FROM {view} d ANTI JOIN prs p USING ({keys})").fetchone()[0]
        assert orphans == 0
    for view in ("a", "med"):
        assert con.execute(f"SELECT count(*) FROM {view} ANTI JOIN b USING (ETA_NUM, RSA_NUM)").fetchone()[0] == 0
    assert {r[0] for r in con.execute("SELECT DISTINCT BEN_NIR_PSA FROM prs").fetchall()} <= ben
    acts = {r[0] for r in con.execute("SELECT DISTINCT CDC_ACT FROM a UNION SELECT DISTINCT CAM_PRS_IDE FROM cam").fetchall()}
    assert set(CCAM) <= acts
    assert con.execute("SELECT count(DISTINCT UCD_UCD_COD) FROM med").fetchone()[0] >= 2


def test_procedures_select_exactly_the_persons_with_those_acts(chain):
    runtime, delivery = chain
    want = expected_procedures(delivery)
    assert len(want) > 20, "the demo should hold persons with these acts"
    got, manifest = _cohort(runtime, _spec(f"{{procedures: {{ccam: [{', '.join(CCAM)}]}}}}",
                                           "  ER_CAM_F: [CAM_PRS_IDE, CAM_ACT_PRU]\n  T_MCOaaA: [CDC_ACT]\n"))
    assert got == _pseudonyms(runtime, want)
    assert manifest["conformity"]["ok"] and manifest["tables"]["ER_CAM_F"]["rows"] > 0


def test_hospital_drugs_select_exactly_the_persons_given_those_drugs(chain):
    runtime, delivery = chain
    want = expected_hospital_drugs(delivery)
    assert len(want) >= 3, "the demo should hold persons given these drugs"
    codes = ", ".join(f'"{c}"' for c in UCD)
    got, _manifest = _cohort(runtime, _spec(f"{{hospital_drugs: {{ucd: [{codes}]}}}}",
                                            "  ER_UCD_F: all\n  T_MCOaaMED: [UCD_UCD_COD, ADM_NBR]\n"))
    assert got == _pseudonyms(runtime, want)


def test_one_machine_and_dask_give_the_same_extract(chain):
    from distributed import Client, LocalCluster

    runtime, _delivery = chain
    codes = ", ".join(f'"{c}"' for c in UCD)
    text = _spec(f"{{procedures: {{ccam: [{', '.join(CCAM)}]}}}}, {{hospital_drugs: {{ucd: [{codes}]}}}}",
                 "  ER_CAM_F: all\n  ER_UCD_F: all\n  T_MCOaaA: all\n  T_MCOaaMED: all\n")
    one = run_build(runtime, PROJECT, parse_spec(text), actor="root")
    one_bytes = {str(p.relative_to(one.path)): p.read_bytes() for p in one.path.rglob("*.parquet")}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as local, Client(local) as client:
        backend = DaskBackend(runtime.settings.paths.lake, client=client)
        two = run_build(runtime, PROJECT, parse_spec(text), actor="root", backend=backend)
    two_bytes = {str(p.relative_to(two.path)): p.read_bytes() for p in two.path.rglob("*.parquet")}
    assert one.manifest["persons"] == two.manifest["persons"] > 0
    assert file_hashes(two.manifest) == file_hashes(one.manifest)  # partitioned tables: every part
    assert two_bytes == one_bytes and len(one_bytes) == len(file_hashes(one.manifest))


@pytest.mark.parametrize(("criterion", "error"), [
    ("{procedures: {ccam: [DEQP03]}}", r"procedures.ccam\[0\]: 'DEQP03' is not a CCAM act code"),
    ("{procedures: {ccam: [deqp003]}}", r"'deqp003' is not a CCAM act code"),
    ("{procedures: {ccam: [ZZZZ999]}}", r"'ZZZZ999' is in no nomenclature of the SNDS catalogue \(IR_CCAM_V63"),
    ("{procedures: {icd10: [I21]}}", r"procedures"),
    ("{hospital_drugs: {ucd: [930140]}}", r"hospital_drugs.ucd\[0\]: 930140 is not a UCD code"),
    ("{hospital_drugs: {ucd: ['93014011']}}", r"'93014011' is not a UCD code"),
    ("{hospital_drugs: {ucd: ['1234567']}}", r"'1234567' is in no nomenclature of the SNDS catalogue \(NU_UCD_R"),
    ("{hospital_drugs: {ucd: ['3400890000000']}}", r"is in no nomenclature"),
])
def test_codes_are_checked_at_the_boundary(criterion, error):
    with pytest.raises(InvalidInput, match=error):
        parse_spec(_spec(criterion))


def test_ucd_codes_of_7_and_13_digits_are_the_same_code():
    a = parse_spec(_spec('{hospital_drugs: {ucd: ["9301401", "0000009301401"]}}'))
    assert a.include[0].codes == ("9301401",)
    assert set(a.needed_tables()) >= {"ER_PRS_F", "ER_UCD_F", "T_MCOaaB", "T_MCOaaC", "T_MCOaaMED"}
