"""Read the public SNDS Table Schema files shipped in ``schemas/`` (see ``schemas/ATTRIBUTION.md``).

These are the full tables as the SNDS documents them (all columns, types, lengths, nomenclatures,
keys). What we deliver and load is a subset, declared in :mod:`pds_kernel.snds.tables`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str  # Table Schema type: string, integer, number, date, year, boolean
    length: str | None
    format: str
    nomenclature: str | None
    constraints: dict


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: dict[str, SourceColumn]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[dict, ...]
    missing_values: tuple[str, ...]


@cache
def source_table(name: str) -> SourceTable:
    """The published schema of SNDS table ``name`` (e.g. ``"ER_PRS_F"``)."""
    path = resources.files("pds_kernel.snds") / "schemas" / f"{name}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    columns = {
        f["name"]: SourceColumn(
            name=f["name"], type=f["type"], length=f.get("length"), format=f.get("format", "default"),
            nomenclature=f.get("nomenclature"), constraints=dict(f.get("constraints", {})),
        )
        for f in data["fields"]
    }
    pk = data.get("primaryKey") or ()
    return SourceTable(
        name=data["table"], columns=columns,
        primary_key=tuple([pk] if isinstance(pk, str) else pk),
        foreign_keys=tuple(data.get("foreignKeys", ())),
        missing_values=tuple(data.get("missingValues", ("",))),
    )
