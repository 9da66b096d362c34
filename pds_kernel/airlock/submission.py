"""Submitting files to the airlock: staging them all or none, the request's context, the gate a
request's files are checked by, and the rows a new request starts with (exports and imports)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from ..errors import InvalidInput
from ..modelcheck.checker import ModelChecker
from .checks import Thresholds
from .gate import ProjectGate, project_gate
from .inputs import check_context_shape
from .limits import AirlockLimits
from .models import ExportRequest, RequestFile
from .rebuild import submitted_path
from .staging import StagedFile, stage_file
from .states import State

MAX_CONTEXT_BYTES = 1_000_000


def add_request_rows(s: Session, request_id: str, project: str, author: str, direction: str,
                     justification: str, context: dict, reviews_required: int, min_cell: int,
                     staged, results: dict) -> ExportRequest:
    """Add a new request (draft, round 1) and its checked files to session ``s``, flushed: the rows
    an export and an import start with (``results``: each staged file's check, by index)."""
    now = datetime.now(UTC)
    req = ExportRequest(id=request_id, project_id=project, author=author, state=State.DRAFT.value,
                        direction=direction, justification=justification, context=json.dumps(context),
                        reviews_required=reviews_required, min_cell=min_cell, round=1,
                        created_at=now, updated_at=now)
    s.add(req)
    for sf in staged:
        result = results[sf.index]
        s.add(RequestFile(request_id=request_id, index=sf.index, name=sf.name, stored_name=sf.stored_name,
                          sha256=sf.sha256, size=sf.size, kind=result["kind"],
                          check_status=result["status"], check_result=json.dumps(result)))
    s.flush()
    return req


def discard(directory: Path, staged: Iterable[StagedFile]) -> None:
    """Remove staged copies that no request row refers to (a refused or failed submission), and
    the submitted bytes of those the gate rebuilt."""
    for sf in staged:
        (directory / sf.stored_name).unlink(missing_ok=True)
        submitted_path(directory, sf.stored_name).unlink(missing_ok=True)


def stage_all(directory: Path, round_: int, items: list[tuple[int, str, BinaryIO]],
              limits: AirlockLimits) -> list[StagedFile]:
    """Stage every item, or none: a refusal removes the copies this call already made, so the
    same round can be tried again."""
    staged: list[StagedFile] = []
    budget = limits.max_total_bytes
    try:
        for index, name, stream in items:
            sf = stage_file(directory, index, round_, name, stream, limits, budget)
            budget -= sf.size
            staged.append(sf)
    except BaseException:
        discard(directory, staged)
        raise
    return staged


def checked_context(context: Mapping[str, Any] | None) -> dict:
    """The request's context as plain JSON, bounded in depth and size."""
    context = dict(context or {})
    check_context_shape(context)  # before encoding: a deep value would exhaust the stack
    try:
        encoded = json.dumps(context, default=str)
    except (TypeError, ValueError):
        raise InvalidInput("the request context must be JSON") from None
    if len(encoded) > MAX_CONTEXT_BYTES:
        raise InvalidInput(f"the request context is larger than {MAX_CONTEXT_BYTES} bytes")
    return json.loads(encoded)


def request_gate(settings, sessions, registry, limits: AirlockLimits, project: str, thresholds: Thresholds,
                 request_id: str, author: str) -> ProjectGate:
    """The project's PERSON_IDs and released tables, and the model checker of ``author``'s
    request (reads the database: outside a transaction)."""
    checker = ModelChecker(settings, registry.get_project(project), settings.paths.homes / project / author,
                           settings.paths.state / "model-checks" / project / request_id,
                           author=author, request_id=request_id)
    return project_gate(settings, sessions, limits, project, thresholds, request_id, checker)


def submitted_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit trail keeps of a rebuilt file's submitted bytes: their SHA-256 and size."""
    submitted = result.get("submitted")
    return {"submitted": dict(submitted)} if isinstance(submitted, Mapping) else {}


def model_check_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit trail keeps of a model's check: its outcome and wall time, no figure."""
    report = result.get("model_check")
    if not isinstance(report, Mapping):
        return {}
    return {"model_check": {"status": report.get("status"), "seconds": report.get("wall_seconds")}}


def resubmission_plan(current: Mapping[str, int], files: Iterable[tuple[str, BinaryIO]],
                      first_new: int) -> list[tuple[int, str, BinaryIO]]:
    """Where each of a resubmission's ``files`` goes: (index, name, stream). A file named as one of
    the request's ``current`` files (name: index) replaces it at its index; a new name takes the
    next index from ``first_new``, which the caller puts past every index the request's files and
    verdicts ever had: a verdict counts while the file at its index keeps its bytes, so a reused
    index would carry a removed file's approvals to a new name nobody reviewed."""
    plan, next_index = [], first_new
    for name, stream in files:
        if name in current:
            plan.append((current[name], name, stream))
        else:
            plan.append((next_index, name, stream))
            next_index += 1
    return plan
