"""Small hand-made SNDS deliveries for the ingestion tests (format of ``pds_kernel.snds.tables``)."""

from __future__ import annotations

import random
from dataclasses import fields
from datetime import date, timedelta
from pathlib import Path

from pds_kernel.runtime import Runtime
from pds_kernel.settings import Ingest, Paths, Settings
from pds_kernel.snds.tables import MISSING_DATE, TABLES, file_name

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DRUGS = {3400930000011: "A10BA02", 3400930000022: "C10AA05", 3400930000033: "N02BE01"}


def format_value(table: str, column: str, value) -> str:
    """The text of ``value`` in a delivered file."""
    if value is None:
        return ""
    col = TABLES[table].column(column)
    if col.type == "date":
        if col.fmt == "sas_datetime":
            return f"{value.day:02d}{MONTHS[value.month - 1]}{value.year}:00:00:00"
        return value.strftime("%d%m%Y")
    return str(value)


def write_table(path: Path, table: str, rows: list[dict], columns: list[str] | None = None,
                encoding: str = "latin-1") -> Path:
    columns = columns or list(TABLES[table].column_names)
    lines = [";".join(columns)]
    for row in rows:
        lines.append(";".join(format_value(table, c, row.get(c)) for c in columns))
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def make_rows(persons: int = 30, months: tuple[str, ...] = ("202301", "202302"), seed: int = 3) -> dict:
    """Coherent rows: ``{"IR_BEN_R": [...], "IR_PHA_R": [...], ("ER_PRS_F", "202301"): [...]...}``."""
    rng = random.Random(seed)
    rows: dict = {"IR_PHA_R": [], "IR_BEN_R": []}
    for cip, atc in DRUGS.items():
        rows["IR_PHA_R"].append(dict(PHA_CIP_C13=cip, PHA_PRS_IDE=cip % 1000, PHA_MED_NOM=f"MÉDICAMENT {atc}",
                                     PHA_ATC_C07=atc, PHA_ATC_L07=f"libellé {atc}", PHA_ATC_C03=atc[:3]))
    for i in range(persons):
        rows["IR_BEN_R"].append(dict(
            BEN_NIR_PSA=f"NIR{i:014d}", BEN_RNG_GEM=1, BEN_NIR_ANO=f"ANO{i:014d}", BEN_IDT_ANO=f"IDT{i:014d}",
            BEN_CDI_NIR="00", BEN_NAI_ANN=1940 + i % 80, BEN_NAI_MOI=1 + i % 12, BEN_SEX_COD=1 + i % 2,
            BEN_DCD_DTE=MISSING_DATE, BEN_RES_DPT="2A" if i % 7 == 0 else "075", BEN_RES_COM="001",
            ORG_AFF_BEN="01C751000", BEN_DTE_INS=date(2015, 3, 14), BEN_DTE_MAJ=date(2023, 5, 17),
            MAX_TRT_DTD=date(2023, 12, 20)))
    order = 0
    for month in months:
        flux = date(int(month[:4]), int(month[4:]), 1)
        prs, pha, mco_c = [], [], []
        for i in range(persons):
            for _ in range(rng.randint(0, 3)):
                order += 1
                care = flux - timedelta(days=rng.randint(0, 40))
                keys = dict(DCT_ORD_NUM=order, FLX_DIS_DTD=flux, FLX_EMT_NUM=1, FLX_EMT_ORD=0, FLX_EMT_TYP=1,
                            FLX_TRT_DTD=flux + timedelta(days=3), ORG_CLE_NUM="01C751000", PRS_ORD_NUM=1,
                            REM_TYP_AFF=1)
                prs.append(dict(**keys, BEN_NIR_PSA=f"NIR{i:014d}", BEN_RNG_GEM=1, BEN_SEX_COD=1 + i % 2,
                                BEN_NAI_ANN=1940 + i % 80, BEN_RES_DPT="075", EXE_SOI_DTD=care, EXE_SOI_DTF=care,
                                PRS_NAT_REF=3317, PRS_ACT_QTE=1.0, PRS_PAI_MNT=round(rng.uniform(1, 90), 2),
                                BSE_REM_MNT=25.0, DPN_QLF=rng.choice([0, 71, None]), PSE_SPE_COD=1,
                                PFS_EXE_NUM="751234567", ETB_PRE_FIN=None))
                if rng.random() < 0.5:
                    pha.append(dict(**keys, PHA_PRS_C13=rng.choice(list(DRUGS)), PHA_ACT_QSN=1,
                                    PHA_ACT_PRU=3.5, PHA_ORD_NUM=1))
            if rng.random() < 0.2:
                start = flux + timedelta(days=rng.randint(0, 20))
                mco_c.append(dict(ETA_NUM="2A0000022", RSA_NUM=int(month) * 1000 + i, NIR_ANO_17=f"NIR{i:014d}",
                                  NIR_RET="0", NAI_RET="0", SEX_RET="0", SEJ_RET="0", FHO_RET="0", PMS_RET="0",
                                  DAT_RET="0", ENT_DAT=start, SOR_DAT=start + timedelta(days=2),
                                  EXE_SOI_DTD=start, EXE_SOI_DTF=start + timedelta(days=2), SEJ_NUM=1))
        rows[("ER_PRS_F", month)] = prs
        rows[("ER_PHA_F", month)] = pha
        rows[("T_MCOaaC", month)] = mco_c
    return rows


def write_delivery(directory: Path, rows: dict) -> Path:
    """Write ``rows`` (as returned by :func:`make_rows`) as delivery files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, table_rows in rows.items():
        table, month = (key, None) if isinstance(key, str) else key
        write_table(directory / file_name(table, month), table, table_rows)
    return directory


def fresh_runtime(root: Path, **ingest) -> Runtime:
    """A runtime whose paths are all fresh directories under ``root`` (several per test)."""
    paths = Paths(**{f.name: root / f.name for f in fields(Paths)})
    settings = Settings(paths=paths, ingest=Ingest(**ingest))
    return Runtime(settings)


def write_large_claims(path: Path, at_least: int, persons: int = 600, month: str = "202301") -> Path:
    """An ER_PRS_F file of ``month`` of at least ``at_least`` bytes: the rows of
    :func:`make_rows` repeated with new order numbers, so that every key stays unique."""
    rows = make_rows(persons=persons, months=(month,))[("ER_PRS_F", month)]
    columns = list(TABLES["ER_PRS_F"].column_names)
    body = [[format_value("ER_PRS_F", c, row.get(c)) for c in columns] for row in rows]
    order = columns.index("DCT_ORD_NUM")
    lines, size, copy = [";".join(columns)], 0, 0
    while size < at_least:
        for values in body:
            values = list(values)
            values[order] = str(copy * len(body) + int(values[order]))
            lines.append(";".join(values))
            size += len(lines[-1]) + 1
        copy += 1
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path
