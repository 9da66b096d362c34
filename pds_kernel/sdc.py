"""Statistical disclosure control in the workspace: a thin wrapper of ACRO that keeps its evidence.

Researchers build tables and models through :class:`Session` (ACRO's ``crosstab``,
``pivot_table``, ``ols``, ``logit``, ``probit``), save them with :meth:`Session.save`, and pass
:meth:`Session.evidence` as ``context={"acro": ...}`` of their export request: the gate then
judges dominance, p-ratio and degrees of freedom from ACRO's record instead of asking a human to
guess them. Thresholds are the project's and are passed explicitly, never read from ACRO's YAML.

    from pds_kernel import sdc
    s = sdc.Session()                       # or sdc.Session(Thresholds(min_cell=5, ...))
    t = s.crosstab(df.year, df.region, values=df.cost, aggfunc="mean")
    s.save(t, "out/cost_by_region.csv")
    request_export(["out/cost_by_region.csv"], "Table 2", context={"acro": s.evidence()})
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from .airlock.checks.result import Thresholds
from .errors import InvalidInput

log = logging.getLogger(__name__)


def _acro_class():
    """Import ACRO lazily: its import configures logging, which only an entry point should do."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from acro import ACRO  # noqa: PLC0415
    from acro.sdcchecks import SDCChecks  # noqa: PLC0415

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
        self._saved: dict[str, dict] = {}

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
        """Write ``output`` (a table or model from this session) to CSV and remember its record."""
        uid = self._uid_of.get(id(output))
        if uid is None:
            raise InvalidInput("this output was not produced by this sdc.Session: build it with the session")
        path = Path(path)
        if path.suffix.lower() != ".csv":
            raise InvalidInput(f"save {path.name} as .csv")
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
        frame.to_csv(path)
        self._saved[path.name] = {
            "source": "acro",
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

    def evidence(self) -> dict[str, dict]:
        """``{file name: ACRO record}`` of every saved output, for ``context={"acro": ...}``."""
        import json

        return json.loads(json.dumps(self._saved, default=str))
