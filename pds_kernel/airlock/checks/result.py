"""What a check says about a file: pass / review / fail, with the reasons and where.

Findings name the rule, the status it implies, a sentence for humans, and a location (a table cell
as row/column positions of the rendered table, or a line number of a text file). Long lists are
capped so a million-cell table cannot produce a million-row report: the cap keeps the first
findings and the count of the rest.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ...settings import Thresholds

__all__ = ["Finding", "FileCheck", "Status", "Thresholds", "worst", "MAX_FINDINGS_PER_RULE", "REFUSAL_RULES"]


class Status(str, enum.Enum):
    PASS = "pass"
    REVIEW = "review"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return {"pass": 0, "review": 1, "fail": 2}[self.value]


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of ``statuses`` (pass when empty)."""
    result = Status.PASS
    for status in statuses:
        if Status(status).rank > result.rank:
            result = Status(status)
    return result


@dataclass(frozen=True)
class Finding:
    rule: str  #: e.g. "small-cell", "identifier", "day-date"
    status: Status
    message: str
    row: int | None = None  #: 0-based data row of a table (header excluded)
    col: int | None = None  #: 0-based column of a table
    line: int | None = None  #: 1-based line of a text file
    cell: str | None = None  #: the cell by its labels ("year=2020, sex=2 / persons"), for humans

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return {k: v for k, v in data.items() if v is not None}


#: Rules whose failure means the gate refuses the file at submission (pre-gates and types): such a
#: file is never staged as part of a request and never reaches a reviewer.
REFUSAL_RULES = frozenset({"file-type", "rebuild", "pickle", "max-rows", "max-size", "person-identifier",
                           "exact-date", "microdata"})

#: Findings kept per rule; the rest are counted, not listed.
MAX_FINDINGS_PER_RULE = 500


@dataclass
class FileCheck:
    """The result of checking one file."""

    kind: str
    findings: list[Finding] = field(default_factory=list)
    omitted: dict[str, int] = field(default_factory=dict)  #: rule -> findings beyond the cap
    rule_status: dict[str, Status] = field(default_factory=dict)  #: rule -> worst status seen
    _kept: dict[str, int] = field(default_factory=dict, repr=False)
    _seen: set = field(default_factory=set, repr=False)
    #: what a text or code file holds of the extract's columns, as its ``embedded-data`` check
    #: found it (:func:`.text_columns.evidence`); the rule judging several files together reads it
    #: instead of reading the file again. Never in :meth:`to_dict`.
    evidence: dict | None = field(default=None, repr=False)

    def add(self, finding: Finding) -> None:
        self.rule_status[finding.rule] = worst([self.rule_status.get(finding.rule, Status.PASS),
                                                finding.status])
        located = finding.row is not None or finding.line is not None
        key = ((finding.rule, finding.row, finding.col, finding.line) if located
               else (finding.rule, finding.col, finding.message))
        if key in self._seen:
            return
        self._seen.add(key)
        kept = self._kept.get(finding.rule, 0)
        if kept >= MAX_FINDINGS_PER_RULE:
            self.omitted[finding.rule] = self.omitted.get(finding.rule, 0) + 1
            return
        self._kept[finding.rule] = kept + 1
        self.findings.append(finding)

    def add_omitted(self, rule: str, status: Status, count: int) -> None:
        """Count ``count`` more findings of ``rule`` without listing them (large tables)."""
        if count > 0:
            self.rule_status[rule] = worst([self.rule_status.get(rule, Status.PASS), status])
            self.omitted[rule] = self.omitted.get(rule, 0) + count

    def extend(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.add(finding)

    @property
    def status(self) -> Status:
        return worst(self.rule_status.values())

    @property
    def refusals(self) -> list[str]:
        """The reasons the gate refuses this file outright (empty when it may be submitted)."""
        return [f.message for f in self.findings if f.rule in REFUSAL_RULES and f.status == Status.FAIL]

    @property
    def verdict(self) -> str:
        """``refused`` (never staged), else the status: ``pass``, ``review`` or ``fail``."""
        return "refused" if self.refusals else self.status.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status.value,
            "verdict": self.verdict,
            "rules": {rule: status.value for rule, status in sorted(self.rule_status.items())},
            "findings": [f.to_dict() for f in self.findings],
            "omitted": dict(self.omitted),
        }
