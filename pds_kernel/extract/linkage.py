"""Linking sources to one person, and the project's external cohort file.

Every source identifier is resolved to the beneficiary (``BEN_NIR_PSA``) before re-keying, so a
person gets one pseudonym, ``PERSON_ID``, in every table: DCIR's ``BEN_NIR_PSA`` directly, PMSI's
``NIR_ANO_17`` (the same value), causes of death's ``BEN_IDT_ANO`` (or ``BEN_NIR_ANO``) through the
beneficiary referential IR_BEN_R.

The external linkage file (a CSV of source identifiers and the project's own subject numbers) is
joined *before* re-keying: the extract's COHORT table holds ``PERSON_ID`` and the subject number,
never the source identifier, so the correspondence does not reach the project.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..errors import InvalidInput
from ..pseudo import pseudonym_table
from .frames import Backend, LakeFrames
from .spec import PERSON_ID, Linkage

PERSON = "BEN_NIR_PSA"
#: The largest linkage file read (a study's cohort: ~40 bytes a person, so some 25 million persons).
MAX_LINKAGE_BYTES = 1 << 30
#: A header quoted in an error must look like a column name (not a line of data, not binary bytes).
_COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


def person_map(key: bytes, persons: pl.DataFrame) -> pl.DataFrame:
    """``BEN_NIR_PSA -> PERSON_ID`` for the cohort (one HMAC per person)."""
    return pseudonym_table(key, persons[PERSON], source=PERSON, target=PERSON_ID)


def referential_ids(frames: LakeFrames, column: str) -> pl.LazyFrame:
    """``column -> BEN_NIR_PSA`` pairs of the beneficiary referential (a step)."""
    return (frames.scan("IR_BEN_R").select(pl.col(column), pl.col(PERSON))
            .filter(pl.col(column).is_not_null()).unique())


def death_maps(backend: Backend, persons: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """``{BEN_IDT_ANO: ..., BEN_NIR_ANO: ...}``: each identifier -> PERSON_ID for cohort persons.

    An identifier shared by two beneficiaries resolves to the smallest pseudonym (deterministic)."""
    maps = {}
    for column in ("BEN_IDT_ANO", "BEN_NIR_ANO"):
        pairs = backend.run(referential_ids, column)
        maps[column] = (pairs.join(persons, on=PERSON).select(column, PERSON_ID)
                        .sort([column, PERSON_ID]).unique(subset=[column], keep="first").sort(column))
    return maps


def read_linkage_file(linkage: Linkage, backend: Backend) -> pl.DataFrame:
    """The external file as ``BEN_NIR_PSA, <subject_id>`` (source identifiers resolved first).

    Identifiers that the lake does not know are left out (their number is returned in the build
    report); a source identifier or a subject number listed twice is an error."""
    path = Path(linkage.file)
    if not path.is_file():
        raise InvalidInput(f"linkage file {path} does not exist")
    if path.is_symlink():
        raise InvalidInput(f"linkage file {path.name} is a symbolic link: give the file itself, next to the spec")
    if path.stat().st_size > MAX_LINKAGE_BYTES:
        raise InvalidInput(f"linkage file {path.name} holds more than {MAX_LINKAGE_BYTES >> 20} MiB: a study's "
                           "cohort is a list of identifiers and subject numbers; give only those two columns")
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
        # never polars' message: it quotes the offending line, that is, identifiers
        raise InvalidInput(f"linkage file {path.name} is not a readable CSV file (UTF-8, a header line, the same "
                           "number of fields on every line, quotes closed): fix the file") from None
    for column in (linkage.source_id, linkage.subject_id):
        if column not in raw.columns:
            shown = [c if _COLUMN_NAME.fullmatch(c) else "(not a column name)" for c in raw.columns[:20]]
            raise InvalidInput(f"linkage file {path.name}: no column {column!r} (columns: {', '.join(shown)})")
    raw = raw.select(pl.col(linkage.source_id).str.strip_chars(), pl.col(linkage.subject_id).str.strip_chars())
    raw = raw.filter(pl.col(linkage.source_id).is_not_null() & (pl.col(linkage.source_id) != ""))
    for column in (linkage.source_id, linkage.subject_id):
        if raw[column].is_duplicated().any():
            raise InvalidInput(f"linkage file {path.name}: column {column} lists a value twice")
    if linkage.source_id == PERSON:
        return raw
    pairs = backend.run(referential_ids, linkage.source_id)
    return raw.join(pairs, on=linkage.source_id).select(PERSON, linkage.subject_id)


def cohort_table(persons_map: pl.DataFrame, linked: pl.DataFrame | None, linkage: Linkage | None) -> pl.DataFrame:
    """The COHORT table of the extract: PERSON_ID (and the project's subject number)."""
    if linked is None or linkage is None:
        return persons_map.select(PERSON_ID)
    return (persons_map.join(linked, on=PERSON, how="left")
            .select(PERSON_ID, pl.col(linkage.subject_id).cast(pl.String)))
