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
from .extract_reads import gate_extract
from .gate import ProjectGate, project_gate
from .inputs import check_context_shape, quoted
from .limits import AirlockLimits
from .models import ExportRequest, RequestFile
from .rebuild import submitted_path
from .staging import StagedFile, check_names, check_types, stage_file
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
                 request_id: str, author: str, audit) -> ProjectGate:
    """The project's PERSON_IDs and released tables, and the model checker of ``author``'s
    request (reads the database: outside a transaction). The project's extract is checked once
    (:func:`.extract_reads.gate_extract`, a full re-hash up to ``hub.extract_hash_max_bytes``) for
    the whole submission: the gate reads it as checked, and the local model check mounts it as
    checked (its launcher refuses a tree whose fingerprint moved since)."""
    extract = gate_extract(settings, audit, project)
    checker = ModelChecker(settings, registry.get_project(project), settings.paths.homes / project / author,
                           settings.paths.state / "model-checks" / project / request_id,
                           author=author, request_id=request_id, audit=audit, extract=extract)
    return project_gate(settings, sessions, limits, project, thresholds, request_id, checker, audit=audit,
                        extract=extract, author=author)


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


def resubmission_plan(req: ExportRequest, files: list[tuple[str, BinaryIO]], remove: set[str],
                      records: Mapping[str, Any], limits: AirlockLimits) -> tuple[dict, dict, list]:
    """What a resubmission of ``req`` makes of it, checked: (its new context with the ``records``
    of ACRO merged in, the kept files ``{index: (name, stored name, sha256)}``, and where each of
    ``files`` goes: ``[(index, name, stream)]``). A file named as a current one replaces it at its
    index; a new name takes an index past every index the request's files and verdicts ever had: a
    verdict counts while the file at its index keeps its bytes, so a reused index would carry a
    removed file's approvals to a new name nobody reviewed."""
    current = {f.name: f.index for f in req.files}
    unknown = remove - set(current)
    if unknown:
        named = ", ".join(quoted(n) for n in sorted(unknown)[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise InvalidInput(f"cannot remove {named}{more}: not in the request")
    names = [n for n in current if n not in remove] + [n for n, _ in files if n not in current]
    check_names(names, limits)
    check_names([n for n, _ in files] or names, limits)
    check_types([n for n, _ in files], limits)
    context = json.loads(req.context)
    if records:
        before = context.get("acro") if isinstance(context.get("acro"), dict) else {}
        context = checked_context({**context, "acro": {**before, **records}})
    kept = {f.index: (f.name, f.stored_name, f.sha256) for f in req.files if f.name not in remove}
    plan, next_index = [], max([*current.values(), *(r.file_index for r in req.reviews)], default=-1) + 1
    for name, stream in files:
        if name in current:
            plan.append((current[name], name, stream))
        else:
            plan.append((next_index, name, stream))
            next_index += 1
    return context, kept, plan
