"""Writing: internal frames (day numbers, lookup indices) become profile text here, and only here."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from .. import nomenclatures as nom
from ..catalogue import ingestible_table
from ..file_names import example_name
from ..tables import TABLES
from .calendar import _DateText
from .population import _Population


class _Writer:
    """Renders internal frames into profile columns and writes each file atomically."""

    def __init__(self, out: Path, pop: _Population, dates: _DateText):
        self.out = out
        self.pop = pop
        self.dates = dates
        self.files: dict[str, int] = {}
        pools = []
        for kind in range(len(nom.ACT_KINDS)):
            for dept, _ in nom.DEPARTMENTS:
                prefix = nom.department_prefix(dept)
                for i in range(nom.PRACTITIONERS_PER_DEPARTMENT):
                    pools.append(f"{prefix}{kind + 1}{i:05d}{(i * 7 + kind) % 10}")
        self.practitioners = pl.Series(pools, dtype=pl.String)
        self.hospitals = pl.Series([None, *nom.hospitals()], dtype=pl.String)  # index 0 = null

    def _strings(self) -> dict[str, tuple[str, pl.Series]]:
        """Profile columns computed from an internal index column: ``column -> (index, lookup)``."""
        p = self.pop
        return {
            "BEN_NIR_PSA": ("_row", p.nir),
            "NIR_ANO_17": ("_row", p.nir),
            "ORG_CLE_NUM": ("_row", p.org),
            "ORG_AFF_BEN": ("_row", p.org),
            "BEN_RES_DPT": ("_dept", p.dept_text),
            "DCD_DPT_COD": ("_dept", p.dept_text),
            "PFS_EXE_NUM": ("_pfs", self.practitioners),
            "ETB_PRE_FIN": ("_etb", self.hospitals),
            "ETA_NUM": ("_eta", self.hospitals),
        }

    def render(self, table: str, frame: pl.DataFrame) -> pl.DataFrame:
        strings = self._strings()
        columns = []
        for col in ingestible_table(table).columns:
            if col.name in frame.columns:
                s = frame[col.name]
                if col.fmt != "plain":
                    s = self.dates.render(s, col.fmt)
            elif col.name in strings:
                index, lookup = strings[col.name]
                s = lookup.gather(frame[index].to_numpy())
            elif table not in TABLES:  # a catalogue table: the columns the demo does not use are empty
                s = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
            else:
                raise KeyError(f"{table}.{col.name}")  # a bug in this module
            columns.append(s.alias(col.name))
        return pl.DataFrame(columns)

    def write(self, table: str, frame: pl.DataFrame, month: int | None = None) -> None:
        """Write ``frame`` as the file of ``table`` for ``month`` (its year for a yearly table)."""
        name = example_name(table, "" if month is None else f"{month // 12}{month % 12 + 1:02d}")
        rendered = self.render(table, frame)
        path = self.out / name
        tmp = path.with_name(path.name + ".part")
        options = dict(separator=";", quote_style="never", line_terminator="\n", null_value="",
                       include_header=True)
        if table == "IR_PHA_R":  # the only table with accents: encode to Latin-1 ourselves
            tmp.write_bytes(rendered.write_csv(None, **options).encode("latin-1"))
        else:  # ASCII by construction, so polars' UTF-8 is also Latin-1
            rendered.write_csv(tmp, **options)
        os.replace(tmp, path)
        self.files[name] = rendered.height


# ---------------------------------------------------------------------------------------------
# Snapshot tables: the drug referential, the beneficiaries, the long-term illnesses (ALD).
