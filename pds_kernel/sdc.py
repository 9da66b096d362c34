"""Statistical disclosure control in the workspace: a thin wrapper of ACRO that keeps its evidence.

Researchers build tables and models through :class:`Session` (ACRO's ``crosstab``,
``pivot_table``, ``ols``, ``logit``, ``probit``) and save them with :meth:`Session.save` (CSV or
XLSX). The record ACRO made travels with the file: :func:`pds_kernel.workspace.request_export`
attaches the records of the files it sends (:func:`evidence_for`), and the gate judges dominance,
p-ratio and degrees of freedom from them instead of asking a human to guess. Each record carries
the SHA-256 of the bytes ``save`` wrote: the gate ignores a record whose file changed since.
Thresholds are the project's and are passed explicitly, never read from ACRO's YAML.

    from pds_kernel import sdc
    s = sdc.Session()                       # or sdc.Session(Thresholds(min_cell=5, ...))
    t = s.crosstab(df.year, df.region, values=df.cost, aggfunc="mean")
    s.save(t, "out/cost_by_region.csv")
    request_export(["out/cost_by_region.csv"], "Table 2")   # the ACRO record goes with it
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
        return self._track(self._acro.crosstab(*args, **kwargs))

    def pivot_table(self, *args, **kwargs) -> pd.DataFrame:
        return self._track(self._acro.pivot_table(*args, **kwargs))

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
        if uid is None:
            raise InvalidInput("this output was not produced by this sdc.Session: build it with the session")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in SAVE_FORMATS:
            raise InvalidInput(f"save {path.name} as {' or '.join(SAVE_FORMATS)}")
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
        self._saved[str(path.resolve())] = {
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

    def records(self) -> dict[str, dict]:
        """``{resolved path: ACRO record}`` of every output this session saved."""
        return _plain(self._saved)

    def evidence(self) -> dict[str, dict]:
        """``{file name: ACRO record}`` of every saved output, for an explicit ``context={"acro": ...}``
        (the latest save wins when two paths share a name)."""
        ordered = sorted(self._saved.values(), key=lambda r: r["saved"])
        return _plain({record["file"]: record for record in ordered})


def _plain(value: Any) -> Any:
    """A JSON-safe deep copy (ACRO's records hold numpy numbers)."""
    return json.loads(json.dumps(value, default=str))


def evidence_for(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """``{file name: ACRO record}`` for the files at ``paths`` saved by any live session.

    When several saves wrote one path, the latest whose SHA-256 is the file's current one wins,
    else the latest (the gate will then say the record does not match the file). Paths no session
    saved are left out.
    """
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
    return _plain(out)
