"""What each column of a table is: the researcher's declaration, and what the gate may infer alone.

A declaration (``request_export(..., context={"tables": {name: {...}}})``, written by
:mod:`pds_kernel.sdc` when it saves a table) says::

    {"labels": ["year", "BEN_SEX_COD"],           # categories: one row per combination
     "counts": ["persons"],                       # counts of distinct persons
     "unit": "persons",                           # or "rows" (events, claims: not persons)
     "magnitudes": {"amount": "sum"},             # sum | mean | median | percent | estimate ...
     "totals": {"rows": ["Total"], "columns": ["All"]},
     "contributions": {"amount": [[n, total, [top1, top2]], ...]},  # one per data row, sdc writes them
     "rounding": 5, "dof": 120, "sha256": "..."}

Label columns are recognised from the declaration and from the extract's own column metadata (a
column named like an SNDS code column, ``BEN_SEX_COD``, is a category), never from whether its
values look like small integers. Everything the gate cannot establish (are these counts of distinct
persons? are these magnitudes?) stays ``unknown`` and sends the table to review.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ...snds.tables import TABLES
from ...validate import is_digits

#: Aggregations of a magnitude column that are derived from the table's own counts (no contributor
#: can dominate them): they need no contributions when the table declares its counts.
DERIVED = frozenset({"percent", "proportion", "rate", "survival"})
#: Aggregations of model outputs: judged by the residual degrees of freedom.
ESTIMATES = frozenset({"estimate", "coefficient", "statistic"})

_CODE_NAME = re.compile(r"(?:^|_)(?:COD|CODE|CD|CAT|TYP|TYPE|CLA|CLASSE?|GRP|GROUPE?|DPT|DEP|REG|ANN|MOI)$",
                        re.IGNORECASE)
_LABEL_NAMES = frozenset({
    "year", "annee", "année", "an", "month", "mois", "period", "periode", "période", "quarter",
    "trimestre", "week", "semaine", "day", "jour", "date", "time", "temps", "t", "age", "âge",
    "age_group", "agegroup", "age_class", "classe_age", "tranche_age", "sex", "sexe", "gender",
    "region", "région", "department", "departement", "département", "dep", "code", "category",
    "categorie", "catégorie", "group", "groupe", "strata", "stratum", "level", "niveau", "variable",
    "term", "label", "libelle", "libellé", "name", "nom", "index", "cim10", "icd10", "atc",
})


@lru_cache(maxsize=1)
def snds_label_columns() -> frozenset[str]:
    """SNDS columns that hold categories: every profile column that is not an amount (float), a
    day-level date or a person key."""
    out = set()
    for table in TABLES.values():
        for column in table.columns:
            if column.name in table.person_keys or column.type in {"float", "date"}:
                continue
            out.add(column.name.upper())
    return frozenset(out)


def is_label_name(name: str) -> bool:
    """A header that names a category: an SNDS code column, ``*_COD``-like, or a usual label name."""
    clean = name.strip()
    return (clean.upper() in snds_label_columns() or bool(_CODE_NAME.search(clean))
            or clean.lower() in _LABEL_NAMES)


@dataclass
class Declaration:
    labels: list[str] | int | None = None  #: names, or the number of leading label columns (legacy)
    counts: list[str] | None = None  #: count columns (None = not declared)
    unit: str = "persons"  #: what the counts count: persons, or rows (events, claims)
    magnitudes: dict[str, str] = field(default_factory=dict)  #: column -> aggregation
    total_rows: list[str] = field(default_factory=list)  #: label values of total rows
    total_cols: list[str] = field(default_factory=list)  #: names of total columns
    contributions: dict[str, Any] = field(default_factory=dict)  #: column -> per-row [n, total, top]
    rounding: int | None = None  #: counts are rounded to this base
    dof: int | None = None  #: residual degrees of freedom of a model output
    declared: bool = False  #: the researcher (or sdc) said what the columns are
    problems: list[str] = field(default_factory=list)  #: what of the declaration was unusable

    @property
    def all_counts(self) -> bool:
        """Legacy ``measure: "count"``: every value column is a count."""
        return self.counts == ["*"]


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []


def _whole_number(value: Any) -> int | None:
    """``value`` as a whole number when it is one as written: an integer, a float without a
    fraction (5.0), or digits 0-9; else None (``int()`` would take 5.7 as 5, True as 1, "٥" as 5)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and is_digits(value, 18):
        return int(value)
    return None


def parse(raw: Mapping[str, Any] | None, evidence: Mapping[str, Any] | None = None) -> Declaration:
    """The declaration of one file from the request context (``raw``) and the sdc record of exactly
    these bytes (``evidence``, whose own ``declaration`` fills what ``raw`` leaves out)."""
    merged: dict[str, Any] = {}
    recorded = (evidence or {}).get("declaration")
    if isinstance(recorded, Mapping):
        merged.update(recorded)
    if isinstance(raw, Mapping):
        merged.update({k: v for k, v in raw.items() if v is not None})
    out = Declaration()
    labels = merged.get("labels", merged.get("label_columns", (evidence or {}).get("label_columns")))
    if isinstance(labels, int) and not isinstance(labels, bool):
        out.labels = labels
    elif labels is not None:
        out.labels = _names(labels)
    if merged.get("measure") == "count":
        out.counts = ["*"]
    if "counts" in merged:
        out.counts = _names(merged["counts"])
    unit = str(merged.get("unit", "persons")).lower()
    out.unit = unit if unit in {"persons", "rows"} else "rows"
    magnitudes = merged.get("magnitudes") or {}
    if isinstance(magnitudes, Mapping):
        out.magnitudes = {str(k): str(v).lower() for k, v in magnitudes.items()}
    else:
        out.magnitudes = {name: "sum" for name in _names(magnitudes)}
    totals = merged.get("totals") or {}
    if isinstance(totals, Mapping):
        out.total_rows = _names(totals.get("rows"))
        out.total_cols = _names(totals.get("columns"))
    contributions = merged.get("contributions")
    if isinstance(contributions, Mapping):
        out.contributions = dict(contributions)
    for key in ("rounding", "dof"):
        value = merged.get(key)
        if value is not None:
            number = _whole_number(value)
            if number is None:
                out.problems.append(f"{key} {value!r} is not a whole number")
            else:
                setattr(out, key, number)
    if out.dof is None and isinstance((evidence or {}).get("properties"), Mapping):
        dof = evidence["properties"].get("dof")
        out.dof = int(dof) if isinstance(dof, (int, float)) else None
    out.declared = out.counts is not None or bool(out.magnitudes)
    return out


@dataclass
class Roles:
    """Positions of the columns of a frame by role."""

    labels: list[int]
    counts: list[int]
    magnitudes: dict[int, str]  #: position -> aggregation
    unknown: list[int]  #: value columns the gate cannot classify (undeclared)
    problems: list[str] = field(default_factory=list)


def _key_like(values: np.ndarray) -> bool:
    """Unique, increasing whole numbers (years, ages, times) that are not a bare row number."""
    finite = values[~np.isnan(values)]
    if len(finite) != len(values) or len(values) < 2:
        return False
    if not (np.all(np.diff(values) > 0) and np.all(finite == np.round(finite))):
        return False
    return not (values[0] in (0, 1) and np.all(np.diff(values) == 1) and len(values) > 20)


def assign(frame: pd.DataFrame, numeric: dict[int, np.ndarray], declaration: Declaration) -> Roles:
    """Split the columns of ``frame``: ``numeric`` maps the positions of number-like columns to
    their values. Declared roles win; otherwise text columns and label-named columns are labels."""
    names = [str(c) for c in frame.columns]
    where = {name: pos for pos, name in enumerate(names)}
    problems = []
    labels: set[int] = set()
    if isinstance(declaration.labels, int):
        labels = set(range(min(declaration.labels, len(names))))
    elif declaration.labels is not None:
        for name in declaration.labels:
            if name in where:
                labels.add(where[name])
            else:
                problems.append(f"declared label column {name!r} is not in the table")
    counts: set[int] = set()
    magnitudes: dict[int, str] = {}
    if declaration.counts is not None and not declaration.all_counts:
        for name in declaration.counts:
            if name in where:
                counts.add(where[name])
            else:
                problems.append(f"declared count column {name!r} is not in the table")
    for name, agg in declaration.magnitudes.items():
        if name in where:
            magnitudes[where[name]] = agg
        else:
            problems.append(f"declared magnitude column {name!r} is not in the table")
    unknown = []
    for pos, name in enumerate(names):
        if pos in labels or pos in counts or pos in magnitudes:
            continue
        if pos not in numeric:
            labels.add(pos)  # text: a category (its cells are scanned as text)
            if declaration.labels is not None:
                problems.append(f"column {name!r} holds text but is not a declared label column: a checker "
                                "must confirm what it is (a count written as text is not checked)")
        elif declaration.labels is None and (is_label_name(name) or name == "" or name.startswith("Unnamed")
                                             or (pos == 0 and _key_like(numeric[pos]))):
            labels.add(pos)
        elif declaration.all_counts:
            counts.add(pos)
        else:
            unknown.append(pos)
    for pos in counts | set(magnitudes):
        if pos not in numeric:
            problems.append(f"declared value column {names[pos]!r} holds text, not numbers")
    counts = {p for p in counts if p in numeric}
    magnitudes = {p: a for p, a in magnitudes.items() if p in numeric}
    return Roles(sorted(labels), sorted(counts), magnitudes, unknown, problems)
