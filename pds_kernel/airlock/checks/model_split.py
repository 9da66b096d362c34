"""Several files judged as one: a column cut into pieces (rule ``model-tensors``; ``embedded-data``
for text and code files, whose numbers :mod:`.text_columns` compares with the extract).

:mod:`.model_tensors` judges one file: more than :data:`.model_tensors.MIN_VALUES` distinct values
of an extract column, or :data:`.model_tensors.MIN_WINDOWS` runs of its rows in row order, fail it.
A column cut into pieces under those numbers, each exported in its own file (of one request, or of
requests sent one after another), passed every file (red team 16B), and so did pieces sent by two
authors, or written in text and code files (red team 18B). Here a model, text or code file is
judged together with the other such files of its request and the project's earlier exports, the
author's and other authors' (:mod:`pds_kernel.airlock.export_history` picks them, within bounds):
per column, the union of the values they hold and the sum of their row-order runs are judged as
one file's.

A file is blamed only when it adds to the union: at least :data:`MIN_ADDED` values, beyond
chance, that the other files do not hold, or runs of rows of its own. A file that fails alone is
failed by :mod:`.model_tensors` (or :mod:`.text_columns`) already: it is left out of the union and not named twice. Values
fail when every file was silent alone (pieces cut under the review level) and go to review when
some file was already named to a checker: honest tree models of one column hold its values as
thresholds, up to 256 each, and two of them may hold more than 300 together. Other authors'
files count as the author's own, except when they alone are over the limits: their own
submission was blamed for it then, and a new file adding to them goes to review, so that one
author's cut column does not fail every later model of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .model_arrays import Unreadable, read_arrays
from .model_reference import Reference
from .model_tensors import MIN_VALUES, MIN_WINDOWS, REVIEW_VALUES, RULE, column_evidence
from .models import model_format
from .result import Finding, Status

#: values of a column, beyond chance, that a file must add to the others' to be judged with them
MIN_ADDED = 5
#: other files named in a finding, at most
MAX_NAMED = 3
#: why a file adding to other authors' pieces already over the limit goes to review, not fail
BLAMED = "other authors' requests hold as many without it (their submission was blamed)"

#: what one model holds of each extract column: label -> (distinct values, chance, row-order runs)
Evidence = dict[str, tuple[set[float], float, int]]


@dataclass(frozen=True)
class Piece:
    """One other model, text or code file, as a finding names it."""

    where: str  #: "this request", "request 1a2b3c4d", or "request 1a2b3c4d of another author"
    name: str  #: the file's name; "a model file" (or text, code) for another author's: its name is theirs
    evidence: Evidence = field(default_factory=dict)
    mine: bool = True  #: sent by the author of the file judged


def evidence_of(path: Path, name: str, reference: Reference) -> Evidence | None:
    """What the model at ``path`` holds of the extract's columns; None when the gate cannot read
    its numbers (its own check says so)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    fmt = model_format(path, Path(name).suffix.lower(), head, path.stat().st_size)
    if fmt is None:
        return None
    try:
        return column_evidence(read_arrays(path, fmt), reference)
    except Unreadable:
        return None


def _named(pieces: list[Piece]) -> str:
    shown = ", ".join(f"{p.name[:60]} ({p.where})" for p in pieces[:MAX_NAMED])
    rest = pieces[MAX_NAMED:]
    if not rest:
        return shown
    others = list(dict.fromkeys(p.where.removesuffix(" of another author") for p in rest if not p.mine))
    return shown + f" and {len(rest)} more" + (
        f" (of other authors: {', '.join(others[:MAX_NAMED])}{', ...' if len(others) > MAX_NAMED else ''})"
        if others else "")


def _alone(evidence: tuple[set[float], float, int]) -> float:
    found, chance, _ = evidence
    return len(found) - chance


def _values_of_others(pieces: list[Piece], label: str) -> float:
    """Distinct values of ``label`` beyond chance that other authors' pieces hold between them."""
    theirs = [p.evidence[label] for p in pieces if not p.mine]
    if not theirs:
        return 0.0
    return len(set().union(*(found for found, _, _ in theirs))) - sum(chance for _, chance, _ in theirs)


def split_findings(own: Evidence, others: list[Piece], rule: str = RULE) -> list[Finding]:
    """Findings (of ``rule``: a text or code file's are ``embedded-data``) of a file holding
    ``own`` of the extract, judged with the ``others``. A file that
    fails alone is left out of the union (its own check names it). When every file of the union
    was silent alone (under :data:`.model_tensors.REVIEW_VALUES` values each: pieces cut to pass),
    the union fails; when some were already named to a checker (trees' thresholds are data values,
    and two histogram boosters of the same column can hold 200 each), or when other authors' files
    alone are over the limit (their submission was blamed), it goes to review."""
    out = []
    for label, (found, chance, windows) in own.items():
        with_it = [p for p in others if label in p.evidence and _alone(p.evidence[label]) < MIN_VALUES]
        if not with_it:
            continue
        theirs = set().union(*(p.evidence[label][0] for p in with_it))
        union = found | theirs
        union_chance = chance + sum(p.evidence[label][1] for p in with_it)
        added = len(found - theirs) - chance
        if (len(found) - chance < MIN_VALUES and added >= MIN_ADDED and len(union) - union_chance >= MIN_VALUES):
            silent = all(_alone(e) < REVIEW_VALUES for e in [own[label]] + [p.evidence[label] for p in with_it])
            blamed = _values_of_others(with_it, label) >= MIN_VALUES
            together = (f"this file holds {len(found)} distinct values of the extract's column {label}; with "
                        f"{_named(with_it)}, the files hold {len(union)} (chance explains {union_chance:.0f}), over "
                        f"the {MIN_VALUES} one file may carry")
            if blamed:
                out.append(Finding(rule, Status.REVIEW, (
                    f"{together}: {BLAMED}; a checker must confirm this file does not add to a column cut into "
                    "pieces")))
            elif silent:
                out.append(Finding(rule, Status.FAIL, (
                    f"{together}: cut into pieces across files or exports, each too small to be named, they carry "
                    "the column's values. Export what a model learnt, and results as tables of aggregates, not the "
                    "values")))
            else:
                out.append(Finding(rule, Status.REVIEW, (
                    f"{together}: a checker must confirm they are thresholds of tree models fitted on the same "
                    "data (or results such as quantiles), not a column cut into pieces")))
        pieces = [p for p in with_it if 0 < p.evidence[label][2] < MIN_WINDOWS]
        runs = windows + sum(p.evidence[label][2] for p in pieces)
        if 0 < windows < MIN_WINDOWS and runs >= MIN_WINDOWS:
            together = (f"this file holds {windows} runs of consecutive rows of the extract's column {label} in the "
                        f"extract's row order; with {_named(pieces)} the files hold {runs}, over the {MIN_WINDOWS} "
                        "one file may hold")
            if sum(p.evidence[label][2] for p in pieces if not p.mine) >= MIN_WINDOWS:
                out.append(Finding(rule, Status.REVIEW, (
                    f"{together}: {BLAMED}; a checker must confirm this file does not add to a column cut into "
                    "pieces")))
            else:
                out.append(Finding(rule, Status.FAIL, f"{together}: cut into pieces, they carry the column's rows"))
    return out


__all__ = ["Evidence", "MIN_ADDED", "Piece", "evidence_of", "split_findings"]
