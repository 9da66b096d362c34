"""The rows and columns of each extract table: selection, re-keying and generalisation.

One step per output table (run by a backend, see :mod:`.frames`). Each keeps the cohort's rows
inside the project's period (with the standard SNDS filters), puts ``PERSON_ID`` in place of every
person identifier, generalises what the spec says to generalise, keeps only the allowed columns and keys the record
numbers (claim and stay numbers) by the project (:mod:`.record_keys`).
Raw identifiers never leave this module: the last ``select`` only names allowed columns.
"""

from __future__ import annotations

import polars as pl

from ..snds.tables import DCIR_KEYS, MISSING_DATE
from .cohort import PERSON, STAY_KEYS, claims, stays
from .frames import LakeFrames
from .record_keys import key_record_numbers
from .spec import COMMUNE_COLUMNS, OPEN_SPELLS, PERSON_ID, UNTIL_PERIOD_END_TABLES, ExtractSpec


def _generalise(lf: pl.LazyFrame, table: str, spec: ExtractSpec) -> pl.LazyFrame:
    schema = lf.collect_schema()
    changes = []
    if spec.generalise.care_month:
        changes += [pl.col(name).dt.month_start() for name, dtype in schema.items() if dtype == pl.Date]
    if spec.generalise.departement:
        for (t, commune), departement in COMMUNE_COLUMNS.items():
            if t == table and commune in schema:
                changes.append(pl.col(departement).alias(commune))
    return lf.with_columns(changes) if changes else lf


def _until_period_end(lf: pl.LazyFrame, spec: ExtractSpec) -> pl.LazyFrame:
    """``lf`` (a table of :data:`~.spec.UNTIL_PERIOD_END_TABLES`) with every date after the
    period's end made null: a death, the last care processed or an update of the record after the
    period would tell the project what happened after the years it may see (KI_CCI_R keeps the
    deaths of the period only). Dates before the period (a registration, a death) are its history."""
    dates = [name for name, dtype in lf.collect_schema().items() if dtype == pl.Date]
    return lf.with_columns(pl.when(pl.col(c) <= spec.end).then(pl.col(c)).alias(c) for c in dates)


def _open_in_period(lf: pl.LazyFrame, table: str, spec: ExtractSpec) -> pl.LazyFrame:
    """The rows of ``lf`` (a table of :data:`~.spec.OPEN_SPELLS`) whose spell overlaps the period,
    an end after the period's end written as "no end" (``MISSING_DATE``, as the SNDS writes it)."""
    start, end = OPEN_SPELLS[table]
    no_end = pl.col(end).is_null() | (pl.col(end) == MISSING_DATE)
    overlaps = (pl.col(start) <= spec.end) & (no_end | (pl.col(end) >= spec.start))
    return lf.filter(overlaps).with_columns(
        pl.when(pl.col(end) > spec.end).then(pl.lit(MISSING_DATE)).otherwise(pl.col(end)).alias(end))


def _persons(persons_map: pl.DataFrame, column: str = PERSON) -> pl.LazyFrame:
    return persons_map.lazy().rename({PERSON: column}) if column != PERSON else persons_map.lazy()


def _cohort_claims(frames: LakeFrames, spec: ExtractSpec, persons_map: pl.DataFrame) -> pl.LazyFrame:
    return claims(frames, spec.start, spec.end).join(_persons(persons_map), on=PERSON)


def _cohort_stays(frames: LakeFrames, spec: ExtractSpec, persons_map: pl.DataFrame) -> pl.LazyFrame:
    return stays(frames, spec.start, spec.end).join(_persons(persons_map, "NIR_ANO_17"), on="NIR_ANO_17")


def table_rows(frames: LakeFrames, table: str, spec: ExtractSpec, persons_map: pl.DataFrame,
               death_maps: dict[str, pl.DataFrame], record_key: bytes | None = None) -> pl.LazyFrame:
    """The extract rows of ``table`` (a step; partitioned for the DCIR tables). Its record numbers
    are keyed by ``record_key`` (:mod:`.record_keys`: they would link persons across projects)."""
    if table == "IR_BEN_R":
        lf = frames.scan(table).join(_persons(persons_map), on=PERSON)
    elif table == "ER_PRS_F":
        lf = _cohort_claims(frames, spec, persons_map)
    elif table in ("ER_PHA_F", "ER_BIO_F", "ER_CAM_F", "ER_UCD_F"):
        lines = _cohort_claims(frames, spec, persons_map).select(*DCIR_KEYS, PERSON_ID)
        lf = frames.scan(table).join(lines, on=list(DCIR_KEYS))
    elif table == "IR_PHA_R":
        lf = frames.scan(table)
    elif table == "IR_IMB_R":
        lf = _open_in_period(frames.scan(table), table, spec).join(_persons(persons_map), on=PERSON)
    elif table == "T_MCOaaC":
        lf = _cohort_stays(frames, spec, persons_map)
    elif table in ("T_MCOaaB", "T_MCOaaD", "T_MCOaaA", "T_MCOaaMED"):
        keys = _cohort_stays(frames, spec, persons_map).select(*STAY_KEYS, PERSON_ID)
        lf = frames.scan(table).join(keys, on=list(STAY_KEYS))
    elif table == "KI_CCI_R":
        by_idt = death_maps["BEN_IDT_ANO"].lazy().rename({PERSON_ID: "_BY_IDT"})
        by_nir = death_maps["BEN_NIR_ANO"].lazy().rename({PERSON_ID: "_BY_NIR"})
        # a BEN_IDT_ANO the referential knows decides alone (the death of a person outside the cohort
        # stays out, even when its BEN_NIR_ANO is a cohort member's); BEN_NIR_ANO only for the others
        known = frames.scan("IR_BEN_R").select("BEN_IDT_ANO").drop_nulls().unique().with_columns(
            pl.lit(True).alias("_IDT_KNOWN"))
        lf = (frames.scan(table).filter(pl.col("BEN_DCD_DTE").is_between(spec.start, spec.end))
              .join(by_idt, on="BEN_IDT_ANO", how="left")
              .join(by_nir, on="BEN_NIR_ANO", how="left")
              .join(known, on="BEN_IDT_ANO", how="left")
              .with_columns(pl.when(pl.col("_IDT_KNOWN").fill_null(False)).then(pl.col("_BY_IDT"))
                            .otherwise(pl.col("_BY_NIR")).alias(PERSON_ID))
              .filter(pl.col(PERSON_ID).is_not_null()))
    else:  # pragma: no cover - the spec parser only lets the extract's tables through
        raise ValueError(table)
    if table in UNTIL_PERIOD_END_TABLES:
        lf = _until_period_end(lf, spec)
    return key_record_numbers(_generalise(lf, table, spec).select(spec.output_columns(table)), record_key)
