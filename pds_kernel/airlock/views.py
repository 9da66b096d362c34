"""Read models of export requests, and what each viewer may see of them. Pure: no I/O.

:func:`build_view` turns a request row into a :class:`RequestView` for one viewer. The quorum
rules it reports (:mod:`.reviews`) are the ones the service decides with. A viewer who may not read the contents (:func:`.permissions.can_read_contents`: the
author, an admin who is not a checker of the project) gets a *redacted* view: names, sizes,
statuses, verdicts and comments (SHA-256s once released: :func:`pds_kernel.permissions.can_see_digests`), but neither the justification nor the context the author
sent, and check findings reduced to rule, status and location (:func:`build_redacted_check`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .checks import Status, worst
from .models import ExportRequest, RequestFile
from .permissions import can_act, can_research, can_review_submitted, can_see_votes
from .reviews import complete_reviewers, quorum, valid_verdicts
from .states import REVIEWABLE_STATES, Action, Actor, State, actions_from, check_transition

#: Findings listed per rule in a redacted check; the rest are counted. Locations (row, column,
#: line) are what the author needs to fix a file, and also a channel the author controls (where
#: the small cells are): this cap bounds it (see docs/output-checking.md, residual risks).
REDACTED_FINDINGS_PER_RULE = 20

#: The explanation shown for each rule in a redacted check. Fixed text written here, never the
#: stored message (which may quote a cell value, a column name or a record the workspace sent).
#: A rule missing here shows as ``other`` with the generic text: add new rules of the checks.
RULE_EXPLANATIONS = {
    "small-cell": "count below the project's small-cell threshold of {min_cell}",
    "zero": "zero cell: a checker confirms it is structural",
    "margin-recovery": "the only suppressed cell of its row or column next to a total: recoverable",
    "dominance": "dominance: the largest contributors make most of this cell",
    "p-ratio": "p-ratio: the other contributors are too small to hide the largest",
    "all-same": "every contributor has the same value",
    "missing": "missing values in the contributors",
    "dof": "too few residual degrees of freedom",
    "acro": "the ACRO record asks for review, is malformed, or does not match this file (made for other "
            "bytes, or without SHA-256): ignored",
    "identifier": "looks like a person identifier (NIR, pseudonym, SNDS key or key column)",
    "day-date": "day-level date: publish months or years unless the day is needed",
    "free-text": "free text: a checker reads it",
    "hidden-text": "characters a reader cannot see (format, control, tag or private-use characters, variation "
                   "selectors, odd spaces): they can carry data or reorder the text; remove them",
    "formula": "a cell a spreadsheet would run as a formula when the file is opened",
    "preview": "longer than the review page shows: the approving checker reads the rest from the raw file",
    "table": "the table could not be checked automatically: a checker reads it",
    "magnitude": "table of magnitudes whose contributions the gate cannot verify (dominance not verifiable), "
                 "a share without its counts, or a minimum or maximum: a checker judges it",
    "figure": "a figure is compared with its table by a checker",
    "file-type": "the content of this file does not match its type",
    "rebuild": "the gate cannot rebuild this file from its cells or pixels (the copy it checks and "
               "releases): save it again, or export the table as CSV",
    "model": "model file: a checker reviews it",
    "model-attack": "the platform's attack of the model (membership inference, structural): see the verdict",
    "model-check": "the platform could not attack this model (no declaration, unsupported type, or the check "
                   "did not finish): a checker judges it",
    "record": "the stored check result is unreadable: ask an admin",
    "declaration": "the declaration does not match the file or is incomplete: a checker reads it",
    "undeclared": "undeclared table: declare its label, count and magnitude columns (pds_kernel.sdc) "
                  "or a checker judges what the numbers are",
    "unit": "counts that may not be of distinct persons: a checker judges them",
    "rounding": "counts not rounded to the project's base",
    "differencing": "a total differs from the sum of its visible cells, or a table differs from one of the "
                    "same layout (released earlier, or in this request), by less than the threshold of "
                    "{min_cell}: the difference is a small cell",
    "max-rows": "more rows (or columns) than a table file may hold in this project",
    "max-size": "larger than a file of this kind may be",
    "person-identifier": "a column holds person identifiers: identifiers never leave",
    "exact-date": "exact dates of birth or death: publish months or years",
    "microdata": "one row (or column) per person: records, not a table of aggregates",
    "pickle": "a pickle runs code when opened: export models in a safe format (skops, JSON, ONNX)",
    "code": "code file: a checker reads it",
    "notebook-output": "an output left in a notebook: strip outputs or a checker reads each one",
    "embedded-data": "data where a checker does not look: literals in code, notebook metadata or outputs, "
                     "file metadata, workbook parts or formulas, bytes outside a figure's image, or values of "
                     "the project's extract written in a text or code file (alone, or with other exports)",
    # imports (pds_kernel/airlock/imports_scan.py, cohort_intake.py)
    "malware": "the malware scan (ClamAV) found a signature or could not run: the file is refused",
    "import-type": "the content of this file is not a type that may be imported",
    "archive": "an archive: its members are listed for the checker (no links, no absolute or '..' "
               "paths, no archive inside, bounded size)",
    "cohort": "an external cohort list: NIRs were replaced by PERSON_IDs at intake; the match report "
              "gives counts only",
}
OTHER_RULE = "other"
_KINDS = {"table", "figure", "text", "model", "code", "archive", "cohort", "unknown"}
_STATUSES = {s.value for s in Status}


@dataclass(frozen=True)
class FileView:
    index: int
    name: str
    sha256: str
    size: int
    kind: str
    check_status: str
    check: dict


@dataclass(frozen=True)
class ReviewView:
    reviewer: str
    file_index: int
    file_sha256: str
    decision: str
    comment: str
    round: int
    created_at: str
    valid: bool  #: still bound to the current bytes of the file and counted


@dataclass(frozen=True)
class RequestView:
    id: str
    project: str
    author: str
    state: str
    justification: str  #: empty in a redacted view
    context: dict  #: empty in a redacted view
    reviews_required: int
    min_cell: int
    round: int
    created_at: str
    updated_at: str
    released_at: str | None
    files: list[FileView]
    check_status: str
    complete_reviews: int
    reviews: list[ReviewView]  #: every verdict the viewer may see
    reviews_hidden: bool  #: True when others' verdicts are hidden from this viewer
    reviewed_by_me: bool  #: the viewer holds a verdict on every current file
    actions: list[str] = field(default_factory=list)  #: what this viewer may do now
    contents_visible: bool = False  #: False: redacted (no contents, findings without values)
    direction: str = "export"  #: export (leaving a workspace) or import (coming in)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RequestSummary:
    id: str
    project: str
    author: str
    state: str
    check_status: str
    files: int
    created_at: str
    updated_at: str
    direction: str = "export"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def stored_check(f: RequestFile) -> dict:
    """The stored check result of ``f``; an unreadable one (a damaged row) shows as a failure."""
    try:
        result = json.loads(f.check_result or "")
    except ValueError:
        result = None
    if isinstance(result, dict):
        return result
    return {"kind": f.kind, "status": Status.FAIL.value, "rules": {"record": Status.FAIL.value}, "omitted": {},
            "findings": [{"rule": "record", "status": Status.FAIL.value,
                          "message": "the stored check result is unreadable: ask an admin"}]}


def _rule(name: Any) -> str:
    return name if isinstance(name, str) and name in RULE_EXPLANATIONS else OTHER_RULE


def _status(value: Any) -> str:
    return value if isinstance(value, str) and value in _STATUSES else Status.FAIL.value


def build_redacted_check(check: dict, min_cell: int) -> dict:
    """What a viewer who may not read the contents sees of a check result: the kind, the status, the
    status per rule, and per finding its rule, status and location (row, column or line numbers),
    with the rule's fixed explanation; at most :data:`REDACTED_FINDINGS_PER_RULE` per rule, the rest
    counted. Never the stored message (cell values, column names, ACRO summaries), never a rule
    name the catalogue does not know (an ACRO record names its own checks). The numbers an
    explanation gives are the project's thresholds (``min_cell``), never the data's."""
    rules: dict[str, str] = {}
    raw_rules = check.get("rules") if isinstance(check.get("rules"), dict) else {}
    for name, status in raw_rules.items():
        rule = _rule(name)
        rules[rule] = worst([Status(rules.get(rule, "pass")), Status(_status(status))]).value
    findings, omitted, kept = [], {}, {}
    raw_findings = check.get("findings") if isinstance(check.get("findings"), list) else []
    for raw in raw_findings:
        if not isinstance(raw, dict):
            continue
        rule = _rule(raw.get("rule"))
        if kept.get(rule, 0) >= REDACTED_FINDINGS_PER_RULE:
            omitted[rule] = omitted.get(rule, 0) + 1
            continue
        kept[rule] = kept.get(rule, 0) + 1
        explanation = RULE_EXPLANATIONS.get(rule, "see the rule catalogue in docs/output-checking.md")
        out = {"rule": rule, "status": _status(raw.get("status")),
               "message": explanation.format(min_cell=int(min_cell))}
        for key in ("row", "col", "line"):
            value = raw.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
                out[key] = value
        findings.append(out)
    raw_omitted = check.get("omitted") if isinstance(check.get("omitted"), dict) else {}
    for name, count in raw_omitted.items():
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            omitted[_rule(name)] = omitted.get(_rule(name), 0) + min(count, 10**9)
    kind = check.get("kind") if check.get("kind") in _KINDS else "unknown"
    return {"kind": kind, "status": _status(check.get("status")), "rules": rules, "findings": findings,
            "omitted": omitted, "redacted": True}


def build_view(req: ExportRequest, viewer: str, *, contents: bool,
               checkers: frozenset[str] | None = None, digests: bool = True) -> RequestView:
    """``req`` as ``viewer`` may see it; ``contents=False`` gives the redacted view. With
    ``checkers`` (the project's output checkers now), the verdicts of anyone else are shown as
    not counting, as the quorum counts them (:func:`.reviews.valid_verdicts`). Without ``digests``
    (:func:`pds_kernel.permissions.can_see_digests`) every SHA-256 is ``""``."""
    valid = valid_verdicts(req, checkers)
    complete = complete_reviewers(req, checkers)
    own_complete = viewer in complete
    visible = can_see_votes(viewer, req.author, State(req.state), own_complete)
    valid_ids = {r.id for v in valid.values() for r in v.values()}
    reviews = [
        ReviewView(r.reviewer, r.file_index, r.file_sha256 if digests else "", r.decision, r.comment, r.round,
                   iso(r.created_at), r.id in valid_ids)
        for r in req.reviews if visible or r.reviewer == viewer
    ]
    hidden = not visible and any(r.reviewer != viewer for r in req.reviews)
    files = []
    for f in req.files:
        check = stored_check(f)
        files.append(FileView(f.index, f.name, f.sha256 if digests else "", f.size, f.kind, f.check_status,
                              check if contents else build_redacted_check(check, req.min_cell)))
    return RequestView(
        id=req.id, project=req.project_id, author=req.author, state=req.state,
        justification=req.justification if contents else "",
        context=json.loads(req.context) if contents else {},
        reviews_required=quorum(req.reviews_required), min_cell=req.min_cell, round=req.round,
        created_at=iso(req.created_at), updated_at=iso(req.updated_at),
        released_at=iso(req.released_at), files=files,
        check_status=worst(Status(f.check_status) for f in req.files).value,
        complete_reviews=len(complete), reviews=reviews, reviews_hidden=hidden,
        reviewed_by_me=own_complete, contents_visible=contents, direction=req.direction or "export",
    )


#: states in which a request's files are reviewed (the values a view carries)
REVIEWABLE = frozenset(s.value for s in REVIEWABLE_STATES)


def offered_actions(registry, view: RequestView, viewer: str, submitters: frozenset[str]) -> list[str]:
    """What ``viewer`` may do now with the request of ``view`` (registry questions: call it outside
    any open transaction). Whoever submitted its files (``submitters``, :mod:`.submitters`) is not
    offered its review: :func:`pds_kernel.permissions.check_not_submitter` would refuse it."""
    out = []
    if (view.state in REVIEWABLE and not view.reviewed_by_me and can_review_submitted(viewer, submitters)
            and can_act(registry, Actor.CHECKER, viewer, view.project, view.author)):
        out.append("review")
    for action in actions_from(view.state):
        if action in {Action.START_REVIEW, Action.APPROVE, Action.REQUEST_CHANGES, Action.REJECT}:
            continue  # these follow from reviews, never pressed directly
        rule = check_transition(view.state, action)
        if can_act(registry, rule.actor, viewer, view.project, view.author):
            out.append(action.value)
    if view.state == State.RELEASED.value and viewer == view.author and view.direction == "export" and \
            can_research(registry, viewer, view.project):
        out.append("download")
    return out
