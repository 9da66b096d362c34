"""An author's earlier model exports of a project, judged with a new request's models.

A column of the extract cut into pieces, each under the model rules' limits and exported in its
own request, passed every file (red team 16B). At submission the gate reads the model files of the
author's recent requests of the same project that may leave or have left (submitted, under review,
changes requested, approved, released, revoked after a release), and :mod:`.checks.model_split`
judges each new model with them as one file.

The work is bounded, and what the bounds leave out is said to the checker: the author's
:data:`MAX_REQUESTS` most recent such requests, of them the :data:`MAX_FILES` most recent model
files and at most :data:`MAX_BYTES` of them (a larger earlier file is not read). Each file is read
once per submission, so the cost grows with the files read, never with their pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import select

from ..db import transaction
from .checks import FileCheck, Finding, Status
from .checks.model_reference import Reference
from .checks.model_split import MIN_ADDED, Piece, evidence_of, split_findings
from .checks.model_tensors import RULE
from .models import ExportRequest
from .staging import request_dir
from .states import State

log = logging.getLogger(__name__)

#: the author's most recent requests of the project whose model files are read, at most
MAX_REQUESTS = 50
#: earlier model files read, at most (the most recent first)
MAX_FILES = 20
#: bytes of earlier model files read, at most
MAX_BYTES = 64 * 1024 * 1024
#: the states of a request whose files may leave, or have left
STATES = (State.SUBMITTED, State.UNDER_REVIEW, State.CHANGES_REQUESTED, State.APPROVED, State.RELEASED,
          State.REVOKED)


def earlier_models(sessions, staging: Path, project: str, author: str,
                   exclude: str | None) -> tuple[list[tuple[str, str, Path]], int]:
    """(the model files of ``author``'s recent exports of ``project`` as (request id, name, staged
    path), most recent first, within the bounds; how many more the bounds left out)."""
    with transaction(sessions) as s:
        query = (select(ExportRequest).where(ExportRequest.project_id == project, ExportRequest.author == author,
                                             ExportRequest.direction == "export",
                                             ExportRequest.state.in_([st.value for st in STATES]))
                 .order_by(ExportRequest.created_at.desc()).limit(MAX_REQUESTS + 1))
        requests = [req for req in s.scalars(query) if req.id != exclude][:MAX_REQUESTS]
        rows = [(req.id, f.name, f.stored_name, f.size) for req in requests
                for f in sorted(req.files, key=lambda f: f.index) if f.kind == "model"]
    out, left_out, budget = [], 0, MAX_BYTES
    for request_id, name, stored, size in rows:
        if len(out) >= MAX_FILES or size > budget:
            left_out += 1
            continue
        budget -= size
        out.append((request_id, name, request_dir(staging, project, request_id) / stored))
    return out, left_out


def split_check(earlier: Callable[[], tuple[list[tuple[str, str, Path]], int]],
                reference: Callable[[], Reference | None] | None,
                models: Mapping[int, tuple[str, Path]], results: Mapping[int, FileCheck]) -> None:
    """Add to ``results`` what each of this request's ``models`` (index -> name, staged path) holds
    of the extract together with the request's other models and the author's earlier ones."""
    if not models or reference is None:
        return
    before, left_out = earlier()
    if not before and not left_out and len(models) < 2:
        return
    ref = reference()
    if ref is None:
        return  # no extract: each model's own check says nothing was compared
    own = {i: evidence_of(path, name, ref) or {} for i, (name, path) in models.items()}
    pieces = []
    for request_id, name, path in before:
        try:
            evidence = evidence_of(path, name, ref)
        except (OSError, ValueError) as exc:
            log.warning("earlier model %s of %s unreadable for the split rule: %s", name, request_id, exc)
            continue
        if evidence:
            pieces.append(Piece(f"request {request_id[:8]}", name, evidence))
    for i, evidence in own.items():
        if not evidence:
            continue
        siblings = [Piece("this request", models[j][0], e) for j, e in own.items() if j != i and e]
        results[i].extend(split_findings(evidence, siblings + pieces))
        if left_out and any(len(found) - chance >= MIN_ADDED for found, chance, _ in evidence.values()):
            results[i].add(Finding(RULE, Status.REVIEW, (
                f"{left_out} model file(s) of your earlier requests of this project were not compared with this "
                f"one (the gate reads the {MAX_FILES} most recent, {MAX_BYTES >> 20} MiB at most): a checker must "
                "confirm the models do not carry an extract column between them")))


__all__ = ["earlier_models", "split_check", "MAX_REQUESTS", "MAX_FILES", "MAX_BYTES"]
