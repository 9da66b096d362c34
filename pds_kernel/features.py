"""Per-person features from a project's extract, for statistics and models.

Each function takes the extract's tables as polars LazyFrames (one machine) or Dask DataFrames (the
workspace's cluster) and returns the same kind of frame, one row per ``PERSON_ID`` with at least one
event in the window, so the same code scales from a laptop-sized extract to a national one:

    from pds_kernel import features as F, workspace as ws
    window = F.Window.year(2022)
    claims = F.claims_per_person(ws.open_table("ER_PRS_F"), window)              # polars
    claims = F.claims_per_person(ws.dask_dataframe("ER_PRS_F"), window)          # Dask
    table = F.person_table(ws.open_table, window)                               # everything, joined

* claims (ER_PRS_F): count, amount paid (``PRS_PAI_MNT``), distinct care days;
* drugs (ER_PHA_F + IR_PHA_R): boxes dispensed per ATC class (ATC level of 1, 3, 4, 5 or 7
  characters); the dispensing date is the claim's care date when ER_PRS_F carries the DCIR keys,
  else the flux date ``FLX_DIS_DTD`` (the month the claim was reported: most often one month after
  the care, see docs/synthetic-data.md);
* stays (T_MCOaaB diagnoses + T_MCOaaC dates): count, days, and stays per ICD-10 chapter of the
  principal diagnosis;
* outcome: whether a person has a stay with given ICD-10 codes (or any stay), or dies, in a window.

A window is half-open, ``[start, end)``, on the event's start date. Feature columns are named
``claims_n``, ``drug_atc_A10``, ``stays_icd_ch09``...; :func:`person_table` joins them onto the
cohort and fills people without events with 0.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from .errors import InvalidInput
from .snds.tables import DCIR_KEYS

PERSON = "PERSON_ID"
ATC_LEVELS = (1, 3, 4, 5, 7)

#: First three characters of each ICD-10 chapter (WHO 2019), sorted: a code belongs to the last
#: chapter whose start is <= its first three characters. U (XXII) sorts between T and V.
ICD10_CHAPTERS: tuple[tuple[str, int], ...] = (
    ("A00", 1), ("C00", 2), ("D50", 3), ("E00", 4), ("F00", 5), ("G00", 6), ("H00", 7), ("H60", 8),
    ("I00", 9), ("J00", 10), ("K00", 11), ("L00", 12), ("M00", 13), ("N00", 14), ("O00", 15),
    ("P00", 16), ("Q00", 17), ("R00", 18), ("S00", 19), ("U00", 22), ("V00", 20), ("Z00", 21),
)
_CHAPTER_STARTS = [start for start, _ in ICD10_CHAPTERS]


@dataclass(frozen=True)
class Window:
    """The half-open period ``[start, end)`` events are taken from."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if not (isinstance(self.start, date) and isinstance(self.end, date)) or self.end <= self.start:
            raise InvalidInput(f"a window needs two dates, start before end: got {self.start!r}, {self.end!r}")

    @classmethod
    def year(cls, year: int) -> Window:
        """Calendar year ``year``."""
        return cls(date(year, 1, 1), date(year + 1, 1, 1))

    @classmethod
    def before(cls, index: date, days: int = 365) -> Window:
        """The ``days`` days before ``index`` (a look-back window; ``index`` itself excluded)."""
        return cls(index - timedelta(days=days), index)


def icd10_chapter(code: str | None) -> int | None:
    """The ICD-10 chapter number (1-22) of ``code`` (``"I214"`` → 9), None if it is not a code."""
    if not code or len(code) < 3 or not code[0].isalpha() or not code[1:3].isdigit():
        return None
    index = bisect.bisect_right(_CHAPTER_STARTS, code[:3].upper()) - 1
    return ICD10_CHAPTERS[index][1] if index >= 0 else None


def chapter_column(chapter: int) -> str:
    return f"stays_icd_ch{chapter:02d}"


def atc_column(atc: str) -> str:
    return f"drug_atc_{atc}"


def _is_dask(frame: Any) -> bool:
    return type(frame).__module__.startswith("dask")


def _check_level(level: int) -> None:
    if level not in ATC_LEVELS:
        raise InvalidInput(f"an ATC level has 1, 3, 4, 5 or 7 characters, not {level}")


def _dask_in_window(ddf, column: str, window: Window):
    import pandas as pd

    values = ddf[column]
    return ddf[(values >= pd.Timestamp(window.start)) & (values < pd.Timestamp(window.end))]


# ---- claims -----------------------------------------------------------------------------------
def claims_per_person(claims, window: Window):
    """ER_PRS_F → ``claims_n``, ``claims_amount`` (sum of PRS_PAI_MNT), ``claims_days`` (distinct
    care days) per person, for claims whose care date ``EXE_SOI_DTD`` is in ``window``."""
    if _is_dask(claims):
        rows = _dask_in_window(claims[[PERSON, "EXE_SOI_DTD", "PRS_PAI_MNT"]], "EXE_SOI_DTD", window)
        totals = rows.groupby(PERSON).agg(claims_n=("PRS_PAI_MNT", "size"), claims_amount=("PRS_PAI_MNT", "sum"))
        days = rows[[PERSON, "EXE_SOI_DTD"]].drop_duplicates().groupby(PERSON).size().rename("claims_days")
        return totals.join(days).reset_index()
    return (claims.filter(pl.col("EXE_SOI_DTD").is_between(window.start, window.end, closed="left"))
            .group_by(PERSON)
            .agg(pl.len().cast(pl.Int64).alias("claims_n"),
                 pl.col("PRS_PAI_MNT").fill_null(0).sum().alias("claims_amount"),
                 pl.col("EXE_SOI_DTD").n_unique().cast(pl.Int64).alias("claims_days")))


# ---- drugs ------------------------------------------------------------------------------------
def atc_classes(referential, level: int = 3) -> list[str]:
    """The ATC classes of ``level`` characters present in IR_PHA_R (small: read at once)."""
    _check_level(level)
    if _is_dask(referential):
        codes = referential["PHA_ATC_C07"].dropna().str.slice(0, level).unique().compute()
        return sorted(c for c in codes.tolist() if len(c) == level)
    codes = (referential.select(pl.col("PHA_ATC_C07").str.slice(0, level).alias("atc")).drop_nulls()
             .unique().collect().get_column("atc").to_list())
    return sorted(c for c in codes if len(c) == level)


def _dispensing_date_source(dispensings, claims) -> str:
    """"care" when the claims carry the DCIR keys and the care date, else "flux"."""
    if claims is None:
        return "flux"
    names = list(claims.columns) if _is_dask(claims) else claims.collect_schema().names()
    return "care" if {*DCIR_KEYS, "EXE_SOI_DTD"} <= set(names) else "flux"


def drugs_per_person(dispensings, referential, window: Window, *, level: int = 3,
                     classes: Sequence[str] | None = None, claims=None):
    """ER_PHA_F + IR_PHA_R → boxes dispensed (``PHA_ACT_QSN``) per ATC class of ``level``
    characters, one column ``drug_atc_<class>`` per class (default: every class of IR_PHA_R), plus
    ``drug_boxes`` (all classes). Pass ``claims`` (ER_PRS_F) to date dispensings by their care date
    (needs the 9 DCIR keys in the extract); without it, the flux date is used."""
    _check_level(level)
    classes = list(classes) if classes is not None else atc_classes(referential, level)
    if any(not isinstance(c, str) or len(c) != level for c in classes):
        raise InvalidInput(f"ATC classes of level {level} have {level} characters: {classes!r}")
    dated_by_care = _dispensing_date_source(dispensings, claims) == "care"
    if _is_dask(dispensings):
        return _drugs_dask(dispensings, referential, window, level, classes, claims if dated_by_care else None)
    atc = referential.select(pl.col("PHA_CIP_C13").alias("PHA_PRS_C13"),
                             pl.col("PHA_ATC_C07").str.slice(0, level).alias("atc")).unique("PHA_PRS_C13")
    rows = dispensings.select(PERSON, *DCIR_KEYS, "PHA_PRS_C13", pl.col("PHA_ACT_QSN").fill_null(0).alias("boxes"))
    if dated_by_care:
        dates = claims.select(*DCIR_KEYS, pl.col("EXE_SOI_DTD").alias("day")).unique(list(DCIR_KEYS))
        rows = rows.join(dates, on=list(DCIR_KEYS), how="left")
    else:
        rows = rows.with_columns(pl.col("FLX_DIS_DTD").alias("day"))
    rows = (rows.filter(pl.col("day").is_between(window.start, window.end, closed="left"))
            .join(atc, on="PHA_PRS_C13", how="left"))
    return rows.group_by(PERSON).agg(
        pl.col("boxes").sum().cast(pl.Int64).alias("drug_boxes"),
        *[pl.col("boxes").filter(pl.col("atc") == c).sum().cast(pl.Int64).alias(atc_column(c)) for c in classes])


def _drugs_dask(dispensings, referential, window: Window, level: int, classes: list[str], claims):
    atc = referential[["PHA_CIP_C13", "PHA_ATC_C07"]].compute()  # the referential is small
    atc = atc.drop_duplicates("PHA_CIP_C13").set_index("PHA_CIP_C13")["PHA_ATC_C07"].str.slice(0, level)
    rows = dispensings[[PERSON, *DCIR_KEYS, "PHA_PRS_C13", "PHA_ACT_QSN"]]
    if claims is not None:
        dates = claims[[*DCIR_KEYS, "EXE_SOI_DTD"]].drop_duplicates(subset=list(DCIR_KEYS))
        rows = rows.merge(dates.rename(columns={"EXE_SOI_DTD": "day"}), on=list(DCIR_KEYS), how="left")
    else:
        rows = rows.assign(day=rows["FLX_DIS_DTD"])
    rows = _dask_in_window(rows, "day", window)

    def per_class(part, atc=atc, classes=classes):
        import pandas as pd

        codes = part["PHA_PRS_C13"].map(atc)
        boxes = part["PHA_ACT_QSN"].fillna(0).astype("int64")
        out = {PERSON: part[PERSON], "drug_boxes": boxes}
        for c in classes:
            out[atc_column(c)] = boxes.where(codes == c, 0)
        return pd.DataFrame(out)

    meta = {PERSON: rows.dtypes[PERSON], "drug_boxes": "int64", **{atc_column(c): "int64" for c in classes}}
    return rows.map_partitions(per_class, meta=meta).groupby(PERSON).sum().reset_index()


# ---- stays ------------------------------------------------------------------------------------
def _chapters_of(codes: np.ndarray) -> np.ndarray:
    """Vectorised :func:`icd10_chapter` for an array of codes (0 where a code is not one)."""
    starts = np.array(_CHAPTER_STARTS)
    numbers = np.array([n for _, n in ICD10_CHAPTERS])
    text = np.array([c[:3].upper() if isinstance(c, str) else "" for c in codes], dtype=object)
    valid = np.array([len(t) == 3 and t[0].isalpha() and t[1:].isdigit() for t in text], dtype=bool)
    index = np.searchsorted(starts, np.where(valid, text, "").astype(str), side="right") - 1
    return np.where(valid & (index >= 0), numbers[np.clip(index, 0, None)], 0)


def _chapter_expr(code: pl.Expr) -> pl.Expr:
    three = code.str.slice(0, 3).str.to_uppercase()
    expr = pl.lit(0)
    for start, number in ICD10_CHAPTERS:  # ascending starts: the last match wins
        expr = pl.when(three >= start).then(pl.lit(number)).otherwise(expr)
    return pl.when(three.str.contains(r"^[A-Z][0-9]{2}$")).then(expr).otherwise(pl.lit(0))


def stays_per_person(diagnoses, stays, window: Window, *, chapters: Sequence[int] = tuple(range(1, 23))):
    """T_MCOaaB (principal diagnosis ``DGN_PAL``) + T_MCOaaC (dates) → ``stays_n``, ``stays_days``
    (sum of end - start, at least 0) and ``stays_icd_chNN`` per ICD-10 chapter, for stays that start
    (``EXE_SOI_DTD``) in ``window``."""
    keys = [PERSON, "ETA_NUM", "RSA_NUM"]
    chapters = list(chapters)
    if any(c not in range(1, 23) for c in chapters):
        raise InvalidInput(f"ICD-10 chapters are numbered 1 to 22: {chapters!r}")
    if _is_dask(diagnoses):
        import pandas as pd

        dated = _dask_in_window(stays[[*keys, "EXE_SOI_DTD", "EXE_SOI_DTF"]], "EXE_SOI_DTD", window)
        rows = dated.merge(diagnoses[[*keys, "DGN_PAL"]], on=keys, how="left")

        def per_chapter(part, chapters=chapters):
            chapter = _chapters_of(part["DGN_PAL"].to_numpy(dtype=object, na_value=None))
            start = pd.to_datetime(part["EXE_SOI_DTD"].astype("datetime64[ns]"))
            end = pd.to_datetime(part["EXE_SOI_DTF"].astype("datetime64[ns]"))
            days = (end - start).dt.days.fillna(0).clip(lower=0).astype("int64")
            out = {PERSON: part[PERSON], "stays_n": np.ones(len(part), dtype="int64"), "stays_days": days}
            for c in chapters:
                out[chapter_column(c)] = (chapter == c).astype("int64")
            return pd.DataFrame(out, index=part.index)

        meta = {PERSON: rows.dtypes[PERSON], "stays_n": "int64", "stays_days": "int64",
                **{chapter_column(c): "int64" for c in chapters}}
        return rows.map_partitions(per_chapter, meta=meta).groupby(PERSON).sum().reset_index()
    rows = (stays.select(*keys, "EXE_SOI_DTD", "EXE_SOI_DTF")
            .filter(pl.col("EXE_SOI_DTD").is_between(window.start, window.end, closed="left"))
            .join(diagnoses.select(*keys, "DGN_PAL"), on=keys, how="left")
            .with_columns(_chapter_expr(pl.col("DGN_PAL")).fill_null(0).alias("chapter"),
                          (pl.col("EXE_SOI_DTF") - pl.col("EXE_SOI_DTD")).dt.total_days().fill_null(0)
                          .clip(lower_bound=0).alias("days")))
    return rows.group_by(PERSON).agg(
        pl.len().cast(pl.Int64).alias("stays_n"), pl.col("days").sum().cast(pl.Int64).alias("stays_days"),
        *[(pl.col("chapter") == c).sum().cast(pl.Int64).alias(chapter_column(c)) for c in chapters])


# ---- outcome ----------------------------------------------------------------------------------
def outcome_per_person(window: Window, *, diagnoses=None, stays=None, deaths=None,
                       icd10: Sequence[str] | None = None):
    """Persons with the outcome in ``window``: a stay whose principal diagnosis starts with one of
    ``icd10`` (any stay when ``icd10`` is None), and/or a death (KI_CCI_R ``BEN_DCD_DTE``) when
    ``deaths`` is given. One row per person with the outcome, ``outcome`` = 1 (polars only: the
    outcome is per person, small)."""
    parts = []
    if stays is not None:
        rows = stays.filter(pl.col("EXE_SOI_DTD").is_between(window.start, window.end, closed="left"))
        if icd10:
            if diagnoses is None:
                raise InvalidInput("an outcome on ICD-10 codes needs the diagnoses (T_MCOaaB)")
            prefixes = [str(c).upper() for c in icd10]
            coded = diagnoses.filter(pl.any_horizontal(pl.col("DGN_PAL").str.starts_with(p) for p in prefixes))
            rows = rows.join(coded.select(PERSON, "ETA_NUM", "RSA_NUM"), on=[PERSON, "ETA_NUM", "RSA_NUM"])
        parts.append(rows.select(PERSON))
    if deaths is not None:
        parts.append(deaths.filter(pl.col("BEN_DCD_DTE").is_between(window.start, window.end, closed="left"))
                     .select(PERSON))
    if not parts:
        raise InvalidInput("give the stays (T_MCOaaC) and/or the deaths (KI_CCI_R) the outcome is made of")
    return pl.concat(parts).unique().with_columns(pl.lit(1, pl.Int8).alias("outcome"))


# ---- everything, joined ----------------------------------------------------------------------
def person_table(open_table: Callable[[str], Any], window: Window, *, level: int = 3,
                 atc: Sequence[str] | None = None, chapters: Sequence[int] = tuple(range(1, 23)),
                 age_at: int | None = None):
    """One row per cohort member (``COHORT``) with age, sex and every feature above over
    ``window``, 0 where a person has no event. ``open_table`` is :func:`workspace.open_table`
    (polars) or :func:`workspace.dask_dataframe` (Dask); tables missing from the extract are
    skipped. ``age_at`` (default: the window's last year) gives ``age`` from ``BEN_NAI_ANN``."""
    def table(name: str):
        from .errors import NotFound

        try:
            return open_table(name)
        except NotFound:
            return None

    cohort, ben = table("COHORT"), table("IR_BEN_R")
    if cohort is None:
        raise InvalidInput("the extract has no COHORT table: person features need the cohort's PERSON_IDs")
    claims, pha, ref = table("ER_PRS_F"), table("ER_PHA_F"), table("IR_PHA_R")
    diag, dates = table("T_MCOaaB"), table("T_MCOaaC")
    parts = []
    if claims is not None:
        parts.append(claims_per_person(claims, window))
    if pha is not None and ref is not None:
        parts.append(drugs_per_person(pha, ref, window, level=level, classes=atc, claims=claims))
    if diag is not None and dates is not None:
        parts.append(stays_per_person(diag, dates, window, chapters=chapters))
    year = age_at if age_at is not None else (window.end - timedelta(days=1)).year
    dask = _is_dask(cohort)
    base = cohort[[PERSON]] if dask else cohort.select(PERSON)
    if ben is not None:
        if dask:
            people = ben[[PERSON, "BEN_NAI_ANN", "BEN_SEX_COD"]].drop_duplicates(subset=[PERSON])
            people = people.assign(age=year - people["BEN_NAI_ANN"].astype("float64"),
                                   female=(people["BEN_SEX_COD"] == 2).astype("int8"))
            base = base.merge(people[[PERSON, "age", "female"]], on=PERSON, how="left")
        else:
            people = ben.select(PERSON, (year - pl.col("BEN_NAI_ANN").cast(pl.Float64)).alias("age"),
                                (pl.col("BEN_SEX_COD") == 2).cast(pl.Int8).alias("female")).unique(PERSON)
            base = base.join(people, on=PERSON, how="left")
    for part in parts:
        if dask:
            base = base.merge(part, on=PERSON, how="left")
        else:
            base = base.join(part, on=PERSON, how="left")
    if dask:
        counts = [c for c in base.columns if c not in (PERSON, "age", "female")]
        base = base.fillna({c: 0 for c in counts})
        return base.astype({c: "float64" if c == "claims_amount" else "int64" for c in counts})
    counts = [c for c in base.collect_schema().names() if c not in (PERSON, "age", "female")]
    return base.with_columns(pl.col(counts).fill_null(0))
