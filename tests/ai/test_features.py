"""Per-person features (pds_kernel.features) against a brute-force count over random rows, with
polars and with Dask (both must give exactly the brute-force numbers)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, timedelta

import polars as pl
import pytest

from pds_kernel import features as F
from pds_kernel import workspace as ws
from pds_kernel.errors import InvalidInput
from pds_kernel.snds.tables import DCIR_KEYS

CIP_ATC = {3400900000011: "A10BA02", 3400900000022: "A10AE04", 3400900000033: "C10AA05",
           3400900000044: "N02BE01", 3400900000055: None}
CODES = ["I214", "I10", "E119", "J189", "C509", "S720", "Z511", "U071", "H601", "H250", "D500", "D489", "bad", None]
WINDOW = F.Window(date(2022, 3, 1), date(2023, 3, 1))


def _day(rng: random.Random) -> date:
    return date(2021, 6, 1) + timedelta(days=rng.randint(0, 700))


@pytest.fixture(scope="module")
def extract(tmp_path_factory):
    """A small random extract (polars frames written as the extract's Parquet files) and its rows."""
    rng = random.Random(5)
    root = tmp_path_factory.mktemp("extract")
    persons = [f"{i:064x}" for i in range(1, 41)]
    rows: dict[str, list[dict]] = defaultdict(list)
    flux = 0
    for pid in persons[:-3]:  # the last three have no event at all
        rows["IR_BEN_R"].append(dict(PERSON_ID=pid, BEN_NAI_ANN=rng.randint(1930, 2000), BEN_SEX_COD=rng.choice([1, 2])))
        for _ in range(rng.randint(0, 8)):
            flux += 1
            care = _day(rng)
            keys = dict(DCT_ORD_NUM=flux, FLX_DIS_DTD=date(care.year, care.month, 1) + timedelta(days=40),
                        FLX_EMT_NUM=1, FLX_EMT_ORD=0, FLX_EMT_TYP=1, FLX_TRT_DTD=care, ORG_CLE_NUM="01C751000",
                        PRS_ORD_NUM=1, REM_TYP_AFF=1)
            rows["ER_PRS_F"].append(dict(PERSON_ID=pid, **keys, EXE_SOI_DTD=care,
                                         PRS_PAI_MNT=rng.choice([None, round(rng.uniform(1, 90), 2)])))
            for n in range(rng.randint(0, 3)):
                rows["ER_PHA_F"].append(dict(PERSON_ID=pid, **keys, PHA_PRS_C13=rng.choice(list(CIP_ATC)),
                                             PHA_ACT_QSN=rng.randint(1, 3), PHA_ORD_NUM=n + 1))
        for s in range(rng.randint(0, 3)):
            start = _day(rng)
            eta, rsa = rng.choice(["750000011", "130000033"]), 1000 * int(pid, 16) + s
            rows["T_MCOaaB"].append(dict(PERSON_ID=pid, ETA_NUM=eta, RSA_NUM=rsa, DGN_PAL=rng.choice(CODES)))
            rows["T_MCOaaC"].append(dict(PERSON_ID=pid, ETA_NUM=eta, RSA_NUM=rsa, EXE_SOI_DTD=start,
                                         EXE_SOI_DTF=start + timedelta(days=rng.randint(-1, 9))))
        if rng.random() < 0.2:
            rows["KI_CCI_R"].append(dict(PERSON_ID=pid, BEN_DCD_DTE=_day(rng), DCD_CIM_COD="I219"))
    rows["COHORT"] = [dict(PERSON_ID=p) for p in persons]
    rows["IR_PHA_R"] = [dict(PHA_CIP_C13=cip, PHA_ATC_C07=atc) for cip, atc in CIP_ATC.items()]
    for name, table in rows.items():
        pl.DataFrame(table).write_parquet(root / f"{name}.parquet")
    return root, rows


def _in(d: date, window: F.Window = WINDOW) -> bool:
    return window.start <= d < window.end


def expected(rows) -> dict[str, dict[str, float]]:
    """Brute force: feature → person → value, people without events omitted (0)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    care_day = {tuple(r[k] for k in DCIR_KEYS): r["EXE_SOI_DTD"] for r in rows["ER_PRS_F"]}
    days = defaultdict(set)
    for r in rows["ER_PRS_F"]:
        if _in(r["EXE_SOI_DTD"]):
            out["claims_n"][r["PERSON_ID"]] += 1
            out["claims_amount"][r["PERSON_ID"]] += r["PRS_PAI_MNT"] or 0
            days[r["PERSON_ID"]].add(r["EXE_SOI_DTD"])
    for pid, d in days.items():
        out["claims_days"][pid] = len(d)
    for r in rows["ER_PHA_F"]:
        if _in(care_day[tuple(r[k] for k in DCIR_KEYS)]):
            atc = CIP_ATC[r["PHA_PRS_C13"]]
            out["drug_boxes"][r["PERSON_ID"]] += r["PHA_ACT_QSN"]
            if atc:
                out[F.atc_column(atc[:3])][r["PERSON_ID"]] += r["PHA_ACT_QSN"]
    diagnosis = {(r["ETA_NUM"], r["RSA_NUM"]): r["DGN_PAL"] for r in rows["T_MCOaaB"]}
    for r in rows["T_MCOaaC"]:
        if _in(r["EXE_SOI_DTD"]):
            pid = r["PERSON_ID"]
            out["stays_n"][pid] += 1
            out["stays_days"][pid] += max(0, (r["EXE_SOI_DTF"] - r["EXE_SOI_DTD"]).days)
            chapter = F.icd10_chapter(diagnosis[(r["ETA_NUM"], r["RSA_NUM"])])
            if chapter:
                out[F.chapter_column(chapter)][pid] += 1
    return out


def test_icd10_chapters():
    assert [F.icd10_chapter(c) for c in ["A09", "B99", "C509", "D489", "D500", "E119", "H259", "H601", "I214",
                                         "S720", "T983", "U071", "V010", "Y98", "Z511", "z511"]] == \
        [1, 1, 2, 2, 3, 4, 7, 8, 9, 19, 19, 22, 20, 20, 21, 21]
    assert F.icd10_chapter("bad") is None and F.icd10_chapter(None) is None and F.icd10_chapter("I2") is None


def test_windows():
    assert F.Window.year(2022) == F.Window(date(2022, 1, 1), date(2023, 1, 1))
    assert F.Window.before(date(2023, 1, 1), 365) == F.Window(date(2022, 1, 1), date(2023, 1, 1))
    with pytest.raises(InvalidInput):
        F.Window(date(2023, 1, 1), date(2023, 1, 1))


@pytest.mark.parametrize("dask", [False, True], ids=["polars", "dask"])
def test_person_table_is_the_brute_force_count(extract, monkeypatch, dask):
    root, rows = extract
    monkeypatch.setenv("PDS_DATA_DIR", str(root))
    table = ws.person_features(WINDOW, dask=dask)
    frame = pl.from_pandas(table.compute()) if dask else table.collect()
    assert sorted(frame.get_column("PERSON_ID").to_list()) == sorted(r["PERSON_ID"] for r in rows["COHORT"])
    want = expected(rows)
    assert {"claims_n", "drug_atc_A10", "drug_atc_C10", "drug_atc_N02", "stays_icd_ch09", "stays_icd_ch22"} \
        <= set(frame.columns)
    assert len([c for c in frame.columns if c.startswith("stays_icd_ch")]) == 22
    births = {r["PERSON_ID"]: r for r in rows["IR_BEN_R"]}
    checked = Counter()
    for record in frame.iter_rows(named=True):
        pid = record["PERSON_ID"]
        for column, value in record.items():
            if column == "PERSON_ID":
                continue
            if column == "age":
                assert value == (2023 - births[pid]["BEN_NAI_ANN"] if pid in births else None)
            elif column == "female":
                assert value == (int(births[pid]["BEN_SEX_COD"] == 2) if pid in births else None)
            else:
                assert value == pytest.approx(want[column].get(pid, 0)), (pid, column)
                checked[column] += bool(value)
    assert checked["claims_n"] and checked["drug_atc_A10"] and checked["stays_icd_ch09"] and checked["stays_days"]


def test_drugs_without_the_dcir_keys_are_dated_by_flux(extract):
    root, rows = extract
    pha, ref = pl.scan_parquet(root / "ER_PHA_F.parquet"), pl.scan_parquet(root / "IR_PHA_R.parquet")
    got = F.drugs_per_person(pha, ref, WINDOW, level=1).collect()
    want = Counter()
    for r in rows["ER_PHA_F"]:
        if _in(r["FLX_DIS_DTD"]) and CIP_ATC[r["PHA_PRS_C13"]]:
            want[(r["PERSON_ID"], CIP_ATC[r["PHA_PRS_C13"]][0])] += r["PHA_ACT_QSN"]
    assert {(p, c[-1]): v for row in got.iter_rows(named=True) for c, v in row.items()
            if c.startswith("drug_atc_") and v for p in [row["PERSON_ID"]]} == dict(want)
    with pytest.raises(InvalidInput):
        F.drugs_per_person(pha, ref, WINDOW, level=2)


def test_outcome(extract):
    root, rows = extract
    stays, diag = pl.scan_parquet(root / "T_MCOaaC.parquet"), pl.scan_parquet(root / "T_MCOaaB.parquet")
    deaths = pl.scan_parquet(root / "KI_CCI_R.parquet")
    got = F.outcome_per_person(WINDOW, stays=stays, diagnoses=diag, deaths=deaths, icd10=["I21"]).collect()
    diagnosis = {(r["ETA_NUM"], r["RSA_NUM"]): r["DGN_PAL"] for r in rows["T_MCOaaB"]}
    want = {r["PERSON_ID"] for r in rows["T_MCOaaC"]
            if _in(r["EXE_SOI_DTD"]) and (diagnosis[(r["ETA_NUM"], r["RSA_NUM"])] or "").startswith("I21")}
    want |= {r["PERSON_ID"] for r in rows["KI_CCI_R"] if _in(r["BEN_DCD_DTE"])}
    assert set(got.get_column("PERSON_ID").to_list()) == want and got.height == len(want)
    assert set(got.get_column("outcome").to_list()) <= {1}
    with pytest.raises(InvalidInput):
        F.outcome_per_person(WINDOW)
