"""From inclusion and exclusion criteria to the set of persons of the cohort.

A person is a beneficiary identified by ``BEN_NIR_PSA`` (PMSI's ``NIR_ANO_17`` is the same value;
causes of death are resolved through IR_BEN_R). Each criterion is a step returning the distinct
``BEN_NIR_PSA`` that satisfy it inside the project's period; the cohort is the intersection of the
inclusion sets minus the union of the exclusion sets.

The standard SNDS filters are always on: DCIR information lines (``DPN_QLF = 71``) are not care;
PMSI error stays (``GRG_GHM`` starting with ``90``) and stays whose linkage return codes are not all
``"0"`` are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import polars as pl

from ..snds.tables import DCIR_KEYS
from .frames import Backend, LakeFrames
from .spec import Criterion, ExtractSpec

PERSON = "BEN_NIR_PSA"
STAY_KEYS = ("ETA_NUM", "RSA_NUM")
RETURN_CODES = ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET")
INFORMATION_LINE = 71


def _starts_with_any(column: str, prefixes: Iterable[str]) -> pl.Expr:
    """``column`` starts with one of ``prefixes``: one ``is_in`` per prefix length (a code
    nomenclature has a handful), so a list of thousands of codes stays one flat expression.

    A chain of one ``starts_with`` per prefix grew a tree as deep as the list, which polars took
    time quadratic in to plan: 1,000 ATC prefixes took 19 s, 3,000 over two minutes, and a spec of
    25,000 (150 KB, within the spec's bound) never finished (red team 21B)."""
    by_length: dict[int, set[str]] = {}
    for prefix in prefixes:
        by_length.setdefault(len(prefix), set()).add(prefix)
    expr = pl.lit(False)
    for length, group in sorted(by_length.items()):
        head = pl.col(column).str.slice(0, length)
        expr = expr | head.is_in(pl.Series(sorted(group), dtype=pl.String).implode())
    return expr.fill_null(False)


def claims(frames: LakeFrames, start: date, end: date) -> pl.LazyFrame:
    """ER_PRS_F care lines (information lines dropped) with a care start date in [start, end]."""
    return frames.scan("ER_PRS_F").filter(
        (pl.col("DPN_QLF").is_null() | (pl.col("DPN_QLF") != INFORMATION_LINE))
        & pl.col("EXE_SOI_DTD").is_between(start, end)
    )


def stays(frames: LakeFrames, start: date, end: date) -> pl.LazyFrame:
    """T_MCOaaC rows of valid stays starting in [start, end]: linkage OK and not an error stay."""
    linked = pl.lit(True)
    for code in RETURN_CODES:
        linked = linked & (pl.col(code) == "0").fill_null(False)
    error_stays = frames.scan("T_MCOaaB").filter(
        pl.col("GRG_GHM").str.starts_with("90").fill_null(False)).select(STAY_KEYS)
    billed = frames.scan("T_MCOaaB").select(STAY_KEYS)
    return (frames.scan("T_MCOaaC")
            .filter(linked & pl.col("EXE_SOI_DTD").is_between(start, end))
            .join(billed, on=list(STAY_KEYS), how="semi")
            .join(error_stays, on=list(STAY_KEYS), how="anti"))


def _persons(lf: pl.LazyFrame, column: str = PERSON) -> pl.LazyFrame:
    return lf.select(pl.col(column).alias(PERSON)).unique()


# ---- criteria (steps) -------------------------------------------------------------------------
def _claims_of_lines(frames: LakeFrames, lines: pl.DataFrame, start: date, end: date) -> pl.LazyFrame:
    """Persons of the care lines (ER_PRS_F, information lines dropped, care in [start, end]) that
    own one of ``lines`` (detail rows reduced to the 9 DCIR keys).

    Speed: detail lines of a few codes are few, so they are collected first; their claim numbers
    then filter ER_PRS_F inside the Parquet scan, and only the claims that pass are joined on the 9
    keys. The number filter is a necessary condition of the join, so the result is the same as the
    plain 9-key semi-join."""
    numbers = lines.get_column("DCT_ORD_NUM").drop_nulls().unique()
    return _persons(claims(frames, start, end)
                    .filter(pl.col("DCT_ORD_NUM").is_in(numbers.implode()))
                    .join(lines.lazy(), on=list(DCIR_KEYS), how="semi"))


def drug_users(frames: LakeFrames, atc: tuple[str, ...], start: date, end: date) -> pl.LazyFrame:
    """Persons with a dispensation of a drug whose ATC code starts with one of ``atc``.
    Partitioned: joins ER_PRS_F and ER_PHA_F on the 9 DCIR keys only."""
    codes = frames.scan("IR_PHA_R").filter(_starts_with_any("PHA_ATC_C07", atc)).select(
        pl.col("PHA_CIP_C13").alias("PHA_PRS_C13"))
    lines = (frames.scan("ER_PHA_F").join(codes, on="PHA_PRS_C13", how="semi")
             .select(DCIR_KEYS).unique().collect())
    return _claims_of_lines(frames, lines, start, end)


def lab_tested(frames: LakeFrames, nabm: tuple[str, ...], start: date, end: date) -> pl.LazyFrame:
    """Persons with a laboratory test (ER_BIO_F) of one of the NABM codes ``nabm``, reimbursed on a
    care line of [start, end]. Partitioned: joins ER_PRS_F and ER_BIO_F on the 9 DCIR keys only."""
    wanted = [int(code) for code in nabm]
    lines = (frames.scan("ER_BIO_F").filter(pl.col("BIO_PRS_IDE").is_in(wanted))
             .select(DCIR_KEYS).unique().collect())
    return _claims_of_lines(frames, lines, start, end)


def _detail_lines(frames: LakeFrames, table: str, matches: pl.Expr) -> pl.DataFrame:
    """The 9 DCIR keys of the lines of detail table ``table`` that ``matches`` (few: collected)."""
    return frames.scan(table).filter(matches).select(DCIR_KEYS).unique().collect()


def _valid_stays_with(frames: LakeFrames, table: str, matches: pl.Expr, start: date, end: date) -> pl.LazyFrame:
    """Persons of the valid stays starting in [start, end] that have a row of ``table`` (a detail
    table of the stays, on ETA_NUM and RSA_NUM) that ``matches``."""
    matched = frames.scan(table).filter(matches).select(STAY_KEYS).unique()
    return _persons(stays(frames, start, end).join(matched, on=list(STAY_KEYS), how="semi"), "NIR_ANO_17")


def _ucd_key(column: str) -> pl.Expr:
    """The UCD code of ``column`` in the form of :func:`~.spec.ucd_key` (six leading zeros of a
    13-digit code dropped)."""
    code = pl.col(column).str.strip_chars()
    return pl.when((code.str.len_chars() == 13) & code.str.starts_with("000000")).then(
        code.str.slice(6)).otherwise(code)


def procedures_in_claims(frames: LakeFrames, ccam: tuple[str, ...], start: date, end: date) -> pl.LazyFrame:
    """Persons with a CCAM act of ``ccam`` (ER_CAM_F) on a care line of [start, end]. Partitioned."""
    lines = _detail_lines(frames, "ER_CAM_F", pl.col("CAM_PRS_IDE").str.strip_chars().is_in(list(ccam)))
    return _claims_of_lines(frames, lines, start, end)


def procedures_in_stays(frames: LakeFrames, ccam: tuple[str, ...], start: date, end: date) -> pl.LazyFrame:
    """Persons with a CCAM act of ``ccam`` (T_MCOaaA) in a valid stay starting in [start, end]."""
    return _valid_stays_with(frames, "T_MCOaaA", pl.col("CDC_ACT").str.strip_chars().is_in(list(ccam)), start, end)


def hospital_drugs_in_claims(frames: LakeFrames, ucd: tuple[str, ...], start: date, end: date) -> pl.LazyFrame:
    """Persons with a drug of UCD code ``ucd`` (ER_UCD_F) on a care line of [start, end]. Partitioned."""
    return _claims_of_lines(frames, _detail_lines(frames, "ER_UCD_F", _ucd_key("UCD_UCD_COD").is_in(list(ucd))),
                            start, end)


def hospital_drugs_in_stays(frames: LakeFrames, ucd: tuple[str, ...], start: date, end: date) -> pl.LazyFrame:
    """Persons given a drug of UCD code ``ucd`` (T_MCOaaMED) in a valid stay starting in [start, end]."""
    return _valid_stays_with(frames, "T_MCOaaMED", _ucd_key("UCD_UCD_COD").is_in(list(ucd)), start, end)


def diagnosed(frames: LakeFrames, icd10: tuple[str, ...], where: tuple[str, ...],
              start: date, end: date) -> pl.LazyFrame:
    """Persons with a valid stay carrying one of the ICD-10 prefixes at one of the ``where`` places."""
    parts = []
    if "principal" in where:
        parts.append(frames.scan("T_MCOaaB").filter(_starts_with_any("DGN_PAL", icd10)).select(STAY_KEYS))
    if "related" in where:
        parts.append(frames.scan("T_MCOaaB").filter(_starts_with_any("DGN_REL", icd10)).select(STAY_KEYS))
    if "secondary" in where:
        parts.append(frames.scan("T_MCOaaD").filter(_starts_with_any("ASS_DGN", icd10)).select(STAY_KEYS))
    matched = pl.concat(parts).unique()
    return _persons(stays(frames, start, end).join(matched, on=list(STAY_KEYS), how="semi"), "NIR_ANO_17")


def long_term_illness(frames: LakeFrames, icd10: tuple[str, ...], start: date, end: date) -> pl.LazyFrame:
    """Persons with a long-term illness (ALD) of one of the ICD-10 prefixes, open during [start, end]."""
    from ..snds.tables import MISSING_DATE

    open_ald = (pl.col("IMB_ALD_DTD") <= end) & (
        pl.col("IMB_ALD_DTF").is_null() | (pl.col("IMB_ALD_DTF") == MISSING_DATE) | (pl.col("IMB_ALD_DTF") >= start))
    return _persons(frames.scan("IR_IMB_R").filter(_starts_with_any("MED_MTF_COD", icd10) & open_ald))


def age_between(frames: LakeFrames, low: int, high: int, at: date) -> pl.LazyFrame:
    """Persons aged ``low`` to ``high`` (inclusive) at ``at``. Age from birth year and month (a
    birthday in the month of ``at`` counts as passed; an unknown month too)."""
    age = (pl.lit(at.year) - pl.col("BEN_NAI_ANN").cast(pl.Int32)
           - (pl.col("BEN_NAI_MOI").cast(pl.Int32).fill_null(1) > at.month).cast(pl.Int32))
    return _persons(frames.scan("IR_BEN_R").filter(pl.col("BEN_NAI_ANN").is_not_null() & age.is_between(low, high)))


def of_sex(frames: LakeFrames, sexes: tuple[int, ...]) -> pl.LazyFrame:
    return _persons(frames.scan("IR_BEN_R").filter(pl.col("BEN_SEX_COD").is_in(list(sexes))))


def with_claims(frames: LakeFrames, start: date, end: date) -> pl.LazyFrame:
    """Persons with a DCIR care line in [start, end] (partitioned)."""
    return _persons(claims(frames, start, end))


def with_stays(frames: LakeFrames, start: date, end: date) -> pl.LazyFrame:
    """Persons with a valid hospital stay starting in [start, end]."""
    return _persons(stays(frames, start, end), "NIR_ANO_17")


# ---- combination ------------------------------------------------------------------------------
def _unique(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(pl.col(PERSON).cast(pl.String)).unique().sort(PERSON)


def criterion_persons(backend: Backend, criterion: Criterion, spec: ExtractSpec) -> pl.DataFrame:
    """The distinct persons satisfying one criterion inside the spec's period."""
    start, end = spec.start, spec.end
    kind = criterion.kind
    if kind == "drug":
        df = backend.run(drug_users, criterion.codes, start, end, partitioned=True)
    elif kind == "biology":
        df = backend.run(lab_tested, criterion.codes, start, end, partitioned=True)
    elif kind == "procedures":  # acts billed in town (DCIR) or done during a stay (PMSI)
        df = pl.concat([backend.run(procedures_in_claims, criterion.codes, start, end, partitioned=True),
                        backend.run(procedures_in_stays, criterion.codes, start, end)])
    elif kind == "hospital_drugs":  # retroceded or billed in town (DCIR), or given during a stay (PMSI)
        df = pl.concat([backend.run(hospital_drugs_in_claims, criterion.codes, start, end, partitioned=True),
                        backend.run(hospital_drugs_in_stays, criterion.codes, start, end)])
    elif kind == "diagnosis":
        df = backend.run(diagnosed, criterion.codes, criterion.where, start, end)
    elif kind == "long_term_illness":
        df = backend.run(long_term_illness, criterion.codes, start, end)
    elif kind == "age":
        df = backend.run(age_between, criterion.min_age, criterion.max_age, criterion.at or start)
    elif kind == "sex":
        df = backend.run(of_sex, criterion.sexes)
    elif kind == "care":
        df = pl.concat([backend.run(with_claims, criterion.start, criterion.end, partitioned=True),
                        backend.run(with_stays, criterion.start, criterion.end)])
    else:  # pragma: no cover - the spec parser knows every kind
        raise ValueError(kind)
    return _unique(df)


def select_persons(backend: Backend, spec: ExtractSpec, linked: pl.DataFrame | None = None,
                   on_step=None) -> pl.DataFrame:
    """The cohort: ``BEN_NIR_PSA`` of every person included by all criteria (and in the linkage
    file, when there is one) and excluded by none; sorted."""
    cohort: pl.DataFrame | None = None if linked is None else _unique(linked)
    for criterion in spec.include:
        persons = criterion_persons(backend, criterion, spec)
        cohort = persons if cohort is None else cohort.join(persons, on=PERSON, how="semi")
        if on_step:
            on_step(f"include {criterion.kind}")
    assert cohort is not None  # the spec parser requires a criterion or a linkage file
    for criterion in spec.exclude:
        cohort = cohort.join(criterion_persons(backend, criterion, spec), on=PERSON, how="anti")
        if on_step:
            on_step(f"exclude {criterion.kind}")
    return cohort.sort(PERSON)
