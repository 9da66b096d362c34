"""A project's earlier exports, judged with a new request's models, text and code files.

A column of the extract cut into pieces, each under the model rules' limits and exported in its
own request, passed every file (red team 16B), and pieces sent by two authors of the project, or
written in text and code files, still did after that (red team 18B): the project's data is the
same whoever sends it, in whatever file. At submission the gate reads the model, text and code
files of the project's recent requests that may leave or have left (submitted, under review,
changes requested, approved, released, revoked after a release), the author's own first, then
every other author's, and :mod:`.checks.model_split` judges each new such file with them as one
file. Another author's file is named to the checker by its request id only, never by its name:
what the author sees of a finding is its rule's fixed explanation.

The work is bounded, and what the bounds leave out is said to the checker: the author's
:data:`MAX_REQUESTS` most recent such requests and the project's :data:`MAX_REQUESTS` most recent
ones, of their files the :data:`MAX_FILES` most recent (the author's own before the others') and
at most :data:`MAX_BYTES` of them (a larger earlier file is not read; a text or code file counts
for the first :data:`.checks.text_columns.MAX_TEXT_BYTES` it reads). Each file is read once per
submission, so the cost grows with the files read, never with their pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select

from ..db import transaction
from .checks import FileCheck, Finding, Status
from .checks.model_reference import Reference
from .checks.model_split import MIN_ADDED, Piece, evidence_of, split_findings
from .checks.model_tensors import RULE
from .checks.text_columns import MAX_TEXT_BYTES, readable_text
from .checks.text_columns import RULE as TEXT_RULE
from .checks.text_columns import evidence as text_evidence
from .models import ExportRequest
from .staging import request_dir
from .states import State

log = logging.getLogger(__name__)

#: the most recent requests of the project whose files are read, at most: the author's own
#: and, as many again, the project's (every author's)
MAX_REQUESTS = 50
#: earlier files read, at most (the most recent first, the author's own before the others')
MAX_FILES = 20
#: bytes of earlier files read, at most
MAX_BYTES = 64 * 1024 * 1024
#: the kinds of file judged together: models, and text and code files (:mod:`.checks.text_columns`)
KINDS = ("model", "text", "code")
#: the states of a request whose files may leave, or have left
STATES = (State.SUBMITTED, State.UNDER_REVIEW, State.CHANGES_REQUESTED, State.APPROVED, State.RELEASED,
          State.REVOKED)


class Earlier(NamedTuple):
    """One earlier model, text or code file of the project."""

    request_id: str
    name: str
    path: Path
    mine: bool  #: sent by the author of the request being checked
    kind: str = "model"


def _recent(s, project: str, author: str | None, exclude: str | None) -> list[ExportRequest]:
    """The :data:`MAX_REQUESTS` most recent requests of ``project`` that may leave or have left
    (of ``author`` only, unless None), without ``exclude``."""
    query = select(ExportRequest).where(ExportRequest.project_id == project, ExportRequest.direction == "export",
                                        ExportRequest.state.in_([st.value for st in STATES]))
    if author is not None:
        query = query.where(ExportRequest.author == author)
    query = query.order_by(ExportRequest.created_at.desc()).limit(MAX_REQUESTS + 1)
    return [req for req in s.scalars(query) if req.id != exclude][:MAX_REQUESTS]


def earlier_models(sessions, staging: Path, project: str, author: str,
                   exclude: str | None) -> tuple[list[Earlier], int]:
    """(the model, text and code files of the recent exports of ``project``, ``author``'s first
    then the other authors', each most recent first, within the bounds; how many more the bounds
    left out)."""
    with transaction(sessions) as s:
        own = _recent(s, project, author, exclude)
        others = [req for req in _recent(s, project, None, exclude) if req.author != author]
        rows = [(req.id, f.name, f.stored_name, f.size, req.author == author, f.kind) for req in own + others
                for f in sorted(req.files, key=lambda f: f.index) if f.kind in KINDS]
    out, left_out, budget = [], 0, MAX_BYTES
    for request_id, name, stored, size, mine, kind in rows:
        read = size if kind == "model" else min(size, MAX_TEXT_BYTES)  # a text file: its first MiB
        if len(out) >= MAX_FILES or read > budget:
            left_out += 1
            continue
        budget -= read
        out.append(Earlier(request_id, name, request_dir(staging, project, request_id) / stored, mine, kind))
    return out, left_out


def _evidence(path: Path, name: str, kind: str, ref: Reference):
    """What the file holds of the extract's columns (:data:`.checks.model_split.Evidence`)."""
    if kind == "model":
        return evidence_of(path, name, ref)
    return text_evidence(readable_text(path, name), ref)


def split_check(earlier: Callable[[], tuple[list[Earlier], int]],
                reference: Callable[[], Reference | None] | None,
                files: Mapping[int, tuple[str, Path, str]], results: Mapping[int, FileCheck]) -> None:
    """Add to ``results`` what each of this request's model, text and code ``files`` (index ->
    name, staged path, kind) holds of the extract together with the request's other such files and
    the project's earlier ones. A text or code file's holdings are its own check's
    (``FileCheck.evidence``); a model's are read here (its own check measures other things)."""
    files = {i: f for i, f in files.items() if f[2] in KINDS}
    if not files or reference is None:
        return
    before, left_out = earlier()
    if not before and not left_out and len(files) < 2:
        return
    ref = reference()
    if ref is None:
        return  # no extract: each model's own check says nothing was compared
    own = {i: (results[i].evidence if results[i].evidence is not None else _evidence(path, name, kind, ref)) or {}
           for i, (name, path, kind) in files.items()}  # a text or code file's: its own check's
    pieces = []
    for request_id, name, path, mine, kind in before:
        try:
            evidence = _evidence(path, name, kind, ref)
        except (OSError, ValueError) as exc:
            log.warning("earlier file %s of %s unreadable for the split rule: %s", name, request_id, exc)
            continue
        if evidence and mine:
            pieces.append(Piece(f"request {request_id[:8]}", name, evidence))
        elif evidence:  # another author's: its request id only, never its name
            pieces.append(Piece(f"request {request_id[:8]} of another author", f"a {kind} file", evidence,
                                mine=False))
    for i, evidence in own.items():
        if not evidence:
            continue
        rule = RULE if files[i][2] == "model" else TEXT_RULE
        siblings = [Piece("this request", files[j][0], e) for j, e in own.items() if j != i and e]
        results[i].extend(split_findings(evidence, siblings + pieces, rule))
        if left_out and any(len(found) - chance >= MIN_ADDED for found, chance, _ in evidence.values()):
            results[i].add(Finding(rule, Status.REVIEW, (
                f"{left_out} file(s) of the project's earlier requests (yours or other authors') were not compared "
                f"with this one (the gate reads the {MAX_FILES} most recent model, text and code files, yours first, "
                f"{MAX_BYTES >> 20} MiB at most): a checker must confirm the files do not carry an extract column "
                "between them")))


__all__ = ["Earlier", "earlier_models", "split_check", "KINDS", "MAX_REQUESTS", "MAX_FILES", "MAX_BYTES"]
