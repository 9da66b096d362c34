"""Statistical disclosure control in the workspace: a thin wrapper of ACRO that keeps its evidence.

Researchers build tables and models through :class:`Session` (ACRO's ``crosstab``,
``pivot_table``, ``ols``, ``logit``, ``probit``, and :meth:`Session.persons_table` for counts of
distinct persons and sums with their contributions) and save them with :meth:`Session.save` (CSV
or XLSX). Two things travel with the file, both bound to the SHA-256 of the bytes ``save`` wrote
(the gate ignores them when the file changed since): the table's *declaration* (which columns are
labels, counts of distinct persons or of rows, magnitudes, totals, and per cell the contributions
the gate needs for dominance and p-ratio: :func:`declarations_for`) and, for ACRO outputs, the
record ACRO made (:func:`evidence_for`). :func:`pds_kernel.workspace.request_export` attaches both.
Thresholds are the project's and are passed explicitly, never read from ACRO's YAML.

    from pds_kernel import sdc
    s = sdc.Session()                       # or sdc.Session(Thresholds(min_cell=5, ...))
    t = s.persons_table(claims, by=["month"], sums={"amount": "PRS_PAI_MNT"}, events="claims")
    s.save(t, "out/claims_per_month.csv")   # declared: passes the gate when it is safe
    t = s.crosstab(df.year, df.region, values=df.cost, aggfunc="mean")
    s.save(t, "out/cost_by_region.csv")
    request_export(["out/claims_per_month.csv", "out/cost_by_region.csv"], "Table 2")
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .airlock.checks.result import Thresholds
from .errors import InvalidInput

log = logging.getLogger(__name__)

#: Formats :meth:`Session.save` writes (the gate reads both as tables).
SAVE_FORMATS = (".csv", ".xlsx")
#: Every live session of this process, so an export request finds the records of its files.
_SESSIONS: weakref.WeakSet[Session] = weakref.WeakSet()
_SAVES = itertools.count(1)  #: order of saves across sessions: the latest record of a path wins


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _acro_class():
    """Import ACRO lazily: its import configures logging, which only an entry point should do."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from acro import ACRO
    from acro.sdcchecks import SDCChecks

    root.handlers[:], root.level = handlers, level  # undo ACRO's logging.basicConfig
    logging.getLogger("acro").setLevel(logging.WARNING)
    return ACRO, SDCChecks


class Session:
    """One ACRO session with explicit thresholds and a memory of which output became which file."""

    def __init__(self, thresholds: Thresholds | None = None, *, suppress: bool = False):
        acro_cls, checks_cls = _acro_class()
        self.thresholds = thresholds or Thresholds()
        self._acro = acro_cls(suppress=suppress)
        self._acro.config.update({
            "safe_threshold": self.thresholds.min_cell,
            "safe_dof_threshold": self.thresholds.min_dof,
            "safe_nk_n": self.thresholds.dominance_n,
            "safe_nk_k": self.thresholds.dominance_k / 100.0,
            "safe_pratio_p": self.thresholds.p_ratio / 100.0,
        })
        self._acro.sdc_checks = checks_cls(self._acro.config)
        self._uid_of: dict[int, str] = {}
        self._objects: dict[int, Any] = {}  # keeps outputs alive so their id() stays theirs
        self._saved: dict[str, dict] = {}  # resolved path -> record of what was saved there
        self._declared: dict[int, dict] = {}  # id(output) -> declaration of a persons_table
        self._contributions: dict[int, dict] = {}  # id(output) -> per-cell contributions (crosstab)
        self._aggregations: dict[int, str] = {}  # id(output) -> aggfunc of a table of magnitudes
        _SESSIONS.add(self)

    @property
    def acro(self):
        """The underlying ACRO object, for what this wrapper does not expose."""
        return self._acro

    def _track(self, result: Any) -> Any:
        uid = list(self._acro.results.results)[-1]
        self._uid_of[id(result)] = uid
        self._objects[id(result)] = result
        return result

    def crosstab(self, *args, **kwargs) -> pd.DataFrame:
        table = self._track(self._acro.crosstab(*args, **kwargs))
        values, aggfunc = kwargs.get("values"), kwargs.get("aggfunc")
        if values is not None:
            self._aggregations[id(table)] = aggfunc if isinstance(aggfunc, str) else "other"
        if values is not None and len(args) >= 2 and aggfunc in {"sum", "mean"}:
            self._contributions[id(table)] = contributions_by_cell(args[0], args[1], values, self.thresholds)
        return table

    def persons_table(self, frame, by: list[str] | str, *, person: str = "PERSON_ID",
                      persons: str = "persons", events: str | None = None,
                      sums: dict[str, str] | None = None, drop_small: bool = True) -> pd.DataFrame:
        """A table of distinct persons per combination of ``by`` (pandas, polars or Dask rows),
        with optional ``events`` (rows per cell) and ``sums`` (``{output column: input column}``),
        declared for the gate with each magnitude's contributions (per person: their number, the
        cell total and the largest ones). Cells of fewer than ``min_cell`` persons are dropped
        unless ``drop_small=False``."""
        by = [by] if isinstance(by, str) else list(by)
        sums = dict(sums or {})
        per_person = _per_person(frame, by, person, sums)
        table, contributions = _cells(per_person, by, persons, events, sums, self.thresholds)
        if drop_small:
            keep = table[persons] >= self.thresholds.min_cell
            table = table[keep]
            contributions = {c: [v for v, k in zip(values, keep) if k] for c, values in contributions.items()}
        self._declared[id(table)] = {
            "labels": by, "counts": [persons], "unit": "persons",
            "magnitudes": {name: "sum" for name in ([events] if events else []) + list(sums)},
            "contributions": contributions,
        }
        self._objects[id(table)] = table
        return table

    def pivot_table(self, *args, **kwargs) -> pd.DataFrame:
        table = self._track(self._acro.pivot_table(*args, **kwargs))
        aggfunc = kwargs.get("aggfunc", "mean")
        self._aggregations[id(table)] = aggfunc if isinstance(aggfunc, str) else "other"
        return table

    def ols(self, *args, **kwargs):
        return self._track(self._acro.ols(*args, **kwargs))

    def logit(self, *args, **kwargs):
        return self._track(self._acro.logit(*args, **kwargs))

    def probit(self, *args, **kwargs):
        return self._track(self._acro.probit(*args, **kwargs))

    def save(self, output: Any, path: str | Path) -> Path:
        """Write ``output`` (a table or model from this session) as CSV or XLSX, and remember its
        ACRO record together with the SHA-256 of the bytes written."""
        uid = self._uid_of.get(id(output))
        if uid is None and id(output) not in self._declared:
            raise InvalidInput("this output was not produced by this sdc.Session: build it with the session")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in SAVE_FORMATS:
            raise InvalidInput(f"save {path.name} as {' or '.join(SAVE_FORMATS)}")
        if uid is None:
            return self._save_declared(output, path)
        record = self._acro.results.results[uid]
        if isinstance(output, pd.DataFrame):
            frame = output.copy()
        else:  # a model: its coefficient table
            tables = [t for t in record.output if isinstance(t, pd.DataFrame)]
            frame = next((t for t in tables if any("coef" in str(c).lower() for c in t.columns)),
                         tables[0] if tables else pd.DataFrame())
            frame = frame.copy()
        if isinstance(frame.columns, pd.MultiIndex):
            frame.columns = [" / ".join(str(x) for x in col) for col in frame.columns]
        levels = frame.index.nlevels
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".xlsx":
            frame.to_excel(path, merge_cells=False, engine="openpyxl")  # one sheet, one cell per label
        else:
            frame.to_csv(path)
        declaration = _acro_declaration(output, frame, levels, record, self._aggregations.get(id(output)),
                                        self._contributions.get(id(output)))
        self._saved[str(path.resolve())] = {
            "declaration": {**declaration, "sha256": _sha256(path)},
            "source": "acro",
            "file": path.name,
            "sha256": _sha256(path),
            "saved": next(_SAVES),
            "uid": uid,
            "status": record.status,
            "type": record.output_type,
            "properties": dict(record.properties or {}),
            "sdc": record.sdc if isinstance(output, pd.DataFrame) else {},
            "summary": record.summary,
            "command": record.command,
            "label_columns": levels,
            "thresholds": vars(self.thresholds) if hasattr(self.thresholds, "__dict__") else {},
        }
        return path

    def _save_declared(self, output: pd.DataFrame, path: Path) -> Path:
        frame = output.set_index(self._declared[id(output)]["labels"])
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".xlsx":
            frame.to_excel(path, merge_cells=False, engine="openpyxl")
        else:
            frame.to_csv(path)
        sha = _sha256(path)
        self._saved[str(path.resolve())] = {"source": "sdc", "file": path.name, "sha256": sha,
                                            "saved": next(_SAVES),
                                            "declaration": {**self._declared[id(output)], "sha256": sha}}
        return path

    def records(self) -> dict[str, dict]:
        """``{resolved path: ACRO record}`` of every output this session saved."""
        return _plain(self._saved)

    def evidence(self) -> dict[str, dict]:
        """``{file name: ACRO record}`` of every saved output, for an explicit ``context={"acro": ...}``
        (the latest save wins when two paths share a name)."""
        ordered = sorted((r for r in self._saved.values() if r["source"] == "acro"), key=lambda r: r["saved"])
        return _plain({record["file"]: record for record in ordered})

    def declarations(self) -> dict[str, dict]:
        """``{file name: declaration}`` of every saved output, for ``context={"tables": ...}``."""
        ordered = sorted(self._saved.values(), key=lambda r: r["saved"])
        return _plain({record["file"]: record["declaration"] for record in ordered})


def _plain(value: Any) -> Any:
    """A JSON-safe deep copy (ACRO's records hold numpy numbers)."""
    return json.loads(json.dumps(value, default=str))


def _latest_records(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    out = {}
    for item in paths:
        path = Path(item).resolve()
        candidates = [r for session in list(_SESSIONS) for p, r in session._saved.items() if p == str(path)]
        if not candidates or not path.is_file():
            continue
        candidates.sort(key=lambda r: r["saved"])
        current = _sha256(path)
        matching = [r for r in candidates if r["sha256"] == current]
        out[path.name] = (matching or candidates)[-1]
    return out


def evidence_for(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """``{file name: ACRO record}`` for the files at ``paths`` saved by any live session.

    When several saves wrote one path, the latest whose SHA-256 is the file's current one wins,
    else the latest (the gate will then say the record does not match the file). Paths no session
    saved (or saved without ACRO, like a persons table) are left out.
    """
    return _plain({name: r for name, r in _latest_records(paths).items() if r["source"] == "acro"})


def records_for(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """``{file name: record}`` of every sdc save of ``paths``, ACRO's or sdc's own (each carries
    its declaration and SHA-256): what a resubmission sends with the new versions."""
    return _plain(_latest_records(paths))


def declarations_for(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """``{file name: declaration}`` (with the SHA-256 of the bytes saved) for the files at ``paths``."""
    return _plain({name: r["declaration"] for name, r in _latest_records(paths).items()})


def _acro_declaration(output: Any, frame: pd.DataFrame, levels: int, record, agg: str | None,
                      contributions: dict | None) -> dict:
    """What the columns of an ACRO output are: counts of rows for a frequency table, magnitudes
    (with their contributions when sdc computed them) for ``values=``/``aggfunc=``, estimates for
    a model (with its residual degrees of freedom)."""
    columns = [str(c) for c in frame.columns]
    totals = {"rows": ["All"], "columns": ["All"]}
    if not isinstance(output, pd.DataFrame):
        dof = (record.properties or {}).get("dof")
        return {"labels": 1, "magnitudes": {c: "estimate" for c in columns},
                **({"dof": int(dof)} if dof is not None else {})}
    if agg is not None:
        out = {"labels": levels, "magnitudes": {c: agg for c in columns}, "totals": totals}
        if contributions:
            out["contributions"] = {c: [contributions.get((str(i), c)) for i in frame.index] for c in columns}
        return out
    return {"labels": levels, "counts": columns, "unit": "rows", "totals": totals}


def contributions_by_cell(index, columns, values, thresholds: Thresholds) -> dict[tuple[str, str], list]:
    """``{(row label, column label): [n, total, top]}`` of a crosstab of one index and one column
    series (rows are the contributors, as in ACRO)."""
    keep = max(2, thresholds.dominance_n)
    frame = pd.DataFrame({"r": pd.Series(index).astype(str).to_numpy(),
                          "c": pd.Series(columns).astype(str).to_numpy(),
                          "v": pd.to_numeric(pd.Series(values), errors="coerce").to_numpy()}).dropna()
    out = {}
    for (r, c), group in frame.groupby(["r", "c"], sort=False):
        v = group["v"].abs()
        out[(r, c)] = [int(len(v)), float(group["v"].sum()), [float(x) for x in v.nlargest(keep)]]
    return out


def _per_person(frame, by: list[str], person: str, sums: dict[str, str]) -> pd.DataFrame:
    """One row per (cell, person): ``_rows`` and the person's sum of each ``sums`` input column,
    computed where the rows are (pandas, polars, or on the Dask cluster)."""
    inputs = sorted(set(sums.values()))
    if type(frame).__module__.startswith("polars"):
        import polars as pl

        lazy = frame.lazy() if hasattr(frame, "lazy") else frame
        result = lazy.group_by(by + [person]).agg(pl.len().alias("_rows"), *[pl.col(c).sum() for c in inputs])
        return result.collect().to_pandas()
    grouped = frame.groupby(by + [person])
    result = grouped.agg({**{c: "sum" for c in inputs}}) if inputs else None
    size = grouped.size()
    if hasattr(size, "compute"):  # Dask: one pass on the cluster
        import dask

        size, result = dask.compute(size, result) if result is not None else (size.compute(), None)
    out = size.rename("_rows").to_frame()
    if result is not None:
        out = out.join(result)
    return out.reset_index()


def _cells(per_person: pd.DataFrame, by: list[str], persons: str, events: str | None,
           sums: dict[str, str], thresholds: Thresholds) -> tuple[pd.DataFrame, dict[str, list]]:
    keep = max(2, thresholds.dominance_n)
    measures = ([(events, "_rows")] if events else []) + list(sums.items())
    rows, contributions = [], {name: [] for name, _ in measures}
    for key, group in per_person.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row[persons] = int(len(group))
        for name, column in measures:
            values = group[column]
            total = float(values.sum())
            row[name] = int(total) if column == "_rows" else total
            contributions[name].append([int(len(values)), total, [float(x) for x in values.abs().nlargest(keep)]])
        rows.append(row)
    return pd.DataFrame(rows, columns=by + [persons] + [n for n, _ in measures]), contributions
