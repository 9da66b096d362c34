"""Helpers of the extract tests: a small hand-built lake (rows kept in Python for brute-force checks)."""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from pds_kernel import lake as lake_mod
from pds_kernel.snds.tables import MISSING_DATE, TABLES, lake_schema

YEARS = (2021, 2022, 2023)
DRUGS = {  # CIP13 -> ATC7
    3400930000011: "A10BA02", 3400930000022: "A10AE04", 3400930000033: "C10AA05",
    3400930000044: "N02BE01", 3400930000055: "A10BD07",
}
DIAGNOSES = ["I210", "I214", "I251", "E119", "J189", "K359", "I10", "E110"]
#: NABM codes of laboratory tests: HbA1c (1577), creatinine (592), lipid panel (996), TSH (1208)
LAB_TESTS = [1577, 592, 996, 1208]


@dataclass
class SmallLake:
    path: Path
    rows: dict[str, list[dict]] = field(default_factory=dict)


def _ident(rng: random.Random, n: int = 17) -> str:
    return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(n))


def _month(d: date) -> str:
    return f"{d.year}{d.month:02d}"


def generate_rows(persons: int = 60, seed: int = 7) -> dict[str, list[dict]]:
    """Deterministic small SNDS-like rows, with every corner the filters care about."""
    rng = random.Random(seed)
    lab_rng = random.Random(seed + 1)  # its own stream: the other tables' rows stay as they were
    rows: dict[str, list[dict]] = {name: [] for name in TABLES}
    for cip, atc in DRUGS.items():
        rows["IR_PHA_R"].append(dict(PHA_CIP_C13=cip, PHA_PRS_IDE=cip % 10_000_000, PHA_MED_NOM=f"DRUG {atc}",
                                     PHA_ATC_C07=atc, PHA_ATC_L07=f"label {atc}", PHA_ATC_C03=atc[:3]))
    flux = 0
    for i in range(persons):
        nir, idt, nir_ano = _ident(rng), _ident(rng), _ident(rng)
        sex = rng.choice([1, 2])
        birth = rng.randint(1930, 2010)
        dpt = rng.choice(["75", "13", "2A", "69", "971"])
        rows["IR_BEN_R"].append(dict(
            BEN_NIR_PSA=nir, BEN_RNG_GEM=1, BEN_NIR_ANO=nir_ano, BEN_IDT_ANO=idt, BEN_CDI_NIR="00",
            BEN_NAI_ANN=birth, BEN_NAI_MOI=rng.randint(1, 12), BEN_SEX_COD=sex, BEN_DCD_DTE=MISSING_DATE,
            BEN_RES_DPT=dpt, BEN_RES_COM=f"{rng.randint(1, 400):03d}", ORG_AFF_BEN="01C751000",
            BEN_DTE_INS=date(2015, 3, 14), BEN_DTE_MAJ=date(2023, 5, 17), MAX_TRT_DTD=date(2023, 12, 20)))
        for _ in range(rng.randint(0, 6)):
            care = date(rng.choice(YEARS), rng.randint(1, 12), rng.randint(1, 28))
            flx = date(care.year, care.month, 1)
            flux += 1
            keys = dict(DCT_ORD_NUM=flux, FLX_DIS_DTD=flx, FLX_EMT_NUM=1, FLX_EMT_ORD=0, FLX_EMT_TYP=1,
                        FLX_TRT_DTD=care + timedelta(days=2), ORG_CLE_NUM="01C751000", PRS_ORD_NUM=1,
                        REM_TYP_AFF=1)
            rows["ER_PRS_F"].append(dict(
                **keys, BEN_NIR_PSA=nir, BEN_RNG_GEM=1, BEN_SEX_COD=sex, BEN_NAI_ANN=birth, BEN_RES_DPT=dpt,
                EXE_SOI_DTD=care, EXE_SOI_DTF=care, PRS_NAT_REF=3317, PRS_ACT_QTE=1.0,
                PRS_PAI_MNT=round(rng.uniform(2, 80), 2), BSE_REM_MNT=10.0,
                DPN_QLF=rng.choice([0, 0, 0, 71, None]), PSE_SPE_COD=50, PFS_EXE_NUM="751234567",
                ETB_PRE_FIN=None))
            for order in range(rng.randint(0, 2)):
                rows["ER_PHA_F"].append(dict(**keys, PHA_PRS_C13=rng.choice(list(DRUGS)), PHA_ACT_QSN=1,
                                             PHA_ACT_PRU=3.5, PHA_ORD_NUM=order + 1))
            for order in range(lab_rng.choice([0, 0, 1, 2])):
                rows["ER_BIO_F"].append(dict(**keys, BIO_PRS_IDE=lab_rng.choice(LAB_TESTS), BIO_ACT_QSN=1,
                                             BIO_ORD_NUM=order + 1))
        for s in range(rng.randint(0, 2)):
            start = date(rng.choice(YEARS), rng.randint(1, 12), rng.randint(1, 20))
            end = start + timedelta(days=rng.randint(0, 7))
            eta, rsa = rng.choice(["750000011", "2A0000022", "130000033"]), 1000 * i + s
            ghm = rng.choice(["05M042", "05K051", "90Z00Z", "04M053"])
            rows["T_MCOaaB"].append(dict(
                ETA_NUM=eta, RSA_NUM=rsa, DGN_PAL=rng.choice(DIAGNOSES), DGN_REL=rng.choice(DIAGNOSES + [None]),
                GRG_GHM=ghm, SEJ_NBJ=(end - start).days, AGE_ANN=start.year - birth, COD_SEX=str(sex),
                SOR_ANN=end.year, SOR_MOI=end.month, ENT_MOD="8", SOR_MOD="8", BDI_DEP=dpt,
                BDI_COD=f"{dpt}{rng.randint(100, 999)}"[:5]))
            ret = rng.choice(["0"] * 5 + ["1"])
            rows["T_MCOaaC"].append(dict(
                ETA_NUM=eta, RSA_NUM=rsa, NIR_ANO_17=nir, NIR_RET=ret, NAI_RET="0", SEX_RET="0", SEJ_RET="0",
                FHO_RET="0", PMS_RET="0", DAT_RET="0", ENT_DAT=start, SOR_DAT=end, EXE_SOI_DTD=start,
                EXE_SOI_DTF=end, SEJ_NUM=s))
            for n in range(rng.randint(0, 2)):
                rows["T_MCOaaD"].append(dict(ETA_NUM=eta, RSA_NUM=rsa, ASS_DGN=rng.choice(DIAGNOSES),
                                             DGN_ASS_NUM=n + 1))
        if rng.random() < 0.3:
            rows["IR_IMB_R"].append(dict(
                BEN_NIR_PSA=nir, BEN_RNG_GEM=1, IMB_ALD_NUM=8, IMB_ALD_DTD=date(rng.choice(YEARS), 1, 1),
                IMB_ALD_DTF=rng.choice([MISSING_DATE, date(2021, 6, 30), date(2022, 9, 30), date(2023, 12, 15)]),
                IMB_ETM_NAT=41,
                MED_MTF_COD=rng.choice(["E119", "E110", "I251"])))
        if rng.random() < 0.15:
            known = rng.random() < 0.7
            rows["KI_CCI_R"].append(dict(
                BEN_IDT_ANO=idt if known else _ident(rng), BEN_NIR_ANO=nir_ano, BEN_DCD_DTE=date(2023, rng.randint(1, 12), 9),
                DCD_CIM_COD=rng.choice(["I219", "C349"]), BEN_NAI_ANN=birth, BEN_SEX_COD=sex, DCD_DPT_COD=dpt))
    return rows


def _partition_month(table: str, row: dict, stay_month: dict) -> str | None:
    t = TABLES[table]
    if t.split == "snapshot":
        return None
    if t.month_from:
        return _month(row[t.month_from])
    return stay_month[(row["ETA_NUM"], row["RSA_NUM"])]


def write_lake(path: Path, rows: dict[str, list[dict]]) -> None:
    """Write ``rows`` as a lake: one Parquet per partition with exactly the lake schema."""
    stay_month = {(r["ETA_NUM"], r["RSA_NUM"]): _month(r["EXE_SOI_DTD"]) for r in rows["T_MCOaaC"]}
    for table, table_rows in rows.items():
        if not table_rows:
            continue
        parts: dict[str | None, list[dict]] = {}
        for row in table_rows:
            parts.setdefault(_partition_month(table, row, stay_month), []).append(row)
        for month, part in parts.items():
            directory = lake_mod.partition_dir(path, table, month)
            directory.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(part, schema=lake_schema(table)).write_parquet(
                directory / "part.parquet")
    (path / lake_mod.MANIFEST_NAME).write_text(json.dumps({"fixture": "small", **lake_mod.manifest_of_written_files(path)}))


DIABETES_SPEC = """
project: diab-study
years: [2022, 2023]
include:
  - drug: {atc: [A10]}
exclude:
  - long_term_illness: {icd10: [I25]}
tables:
  IR_BEN_R: [BEN_NIR_PSA, BEN_NAI_ANN, BEN_NAI_MOI, BEN_SEX_COD, BEN_RES_DPT, BEN_RES_COM]
  ER_PRS_F: all
  ER_PHA_F: all
  IR_PHA_R: all
  IR_IMB_R: [MED_MTF_COD, IMB_ALD_DTD]
  T_MCOaaB: [DGN_PAL, GRG_GHM, BDI_COD]
  T_MCOaaC: all
  T_MCOaaD: all
  KI_CCI_R: all
generalise: {birth_date: year, commune: departement, care_date: month}
quasi_identifiers: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
"""


def write_spec(directory: Path, text: str, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def unkeyed(frame: pl.DataFrame, project_key: bytes, numbers: dict[str, list]) -> pl.DataFrame:
    """``frame`` (an extract table) with its keyed record numbers (pds_kernel.extract.record_keys)
    turned back into the lake's, found among ``numbers`` (column -> the lake's values)."""
    from pds_kernel.extract.record_keys import keyed_numbers, record_key

    key = record_key(project_key)
    for column, values in numbers.items():
        if column in frame.columns:
            lake = pl.Series(values, dtype=pl.Int64).drop_nulls().unique()
            frame = frame.with_columns(pl.col(column).replace_strict(keyed_numbers(key, column, lake), lake,
                                                                     return_dtype=pl.Int64))
    return frame


def lake_numbers(rows: dict[str, list[dict]]) -> dict[str, list]:
    """The record numbers of the small lake's rows (for :func:`unkeyed`)."""
    return {"DCT_ORD_NUM": [r["DCT_ORD_NUM"] for r in rows["ER_PRS_F"]],
            "RSA_NUM": [r["RSA_NUM"] for r in rows["T_MCOaaC"]]}
