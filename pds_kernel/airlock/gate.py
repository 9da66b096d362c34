"""What the gate knows about a project when it checks files: its thresholds, its PERSON_IDs, and
the tables it already released; and the one function that checks the files of a request.

Used by :class:`.service.AirlockService` at submission and resubmission (a file refused by a
pre-gate or by its type raises :class:`.staging.RefusedFiles`: it never becomes part of a request)
and by ``pds airlock check`` (the same checks, without submitting).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..db import transaction
from ..errors import InvalidInput
from ..extract.mount_check import CheckedMount
from ..hashing import sha256_file
from .checks import (
    FileCheck,
    Finding,
    Released,
    Status,
    Thresholds,
    check_file,
    declaration,
    filetypes,
    submitted_findings,
    tables,
)
from .checks.model_reference import Reference
from .export_history import earlier_models, split_check
from .extract_reads import extract_numbers, gate_extract, person_id_prefixes
from .models import ExportRequest
from .rebuild import rebuild_all, submitted_path, to_rebuild
from .staging import RefusedFiles, request_dir

log = logging.getLogger(__name__)

#: the project's released tables compared with a new one (the most recent first)
MAX_RELEASED_TABLES = 100


@dataclass(frozen=True)
class ProjectGate:
    """Everything :func:`check_files` needs about one project."""

    thresholds: Thresholds
    max_bytes: int
    allowed: frozenset[str] | None = None
    known_ids: frozenset[str] | None = None  #: 12-character prefixes of the project's PERSON_IDs
    released: tuple[Released, ...] = ()
    #: runs the platform's attack of a model file: (index, name, staged path, declaration or None)
    #: -> (findings, report); None where nothing is submitted (``pds airlock check``)
    model_checker: Callable | None = None
    #: the project's extract as numbers (read when a model, text or code file is checked), for rules
    #: model-tensors and embedded-data (:mod:`.checks.text_columns`)
    reference: Callable[[], Reference | None] | None = None
    #: the project's earlier model, text and code exports (:func:`.export_history.earlier_models`),
    #: judged with a new request's models; None where nothing is submitted
    earlier: Callable | None = None


def _declaration_of(context_json: str, name: str) -> Any:
    try:
        context = json.loads(context_json or "{}")
    except ValueError:
        return None
    return ((context.get("tables") or {}) if isinstance(context, dict) else {}).get(name)


def released_tables(sessions, staging: Path, project: str, exclude: str | None = None) -> tuple[Released, ...]:
    """The tables the project already released, as the gate read them (at most the latest
    :data:`MAX_RELEASED_TABLES`)."""
    with transaction(sessions) as s:
        query = (select(ExportRequest).where(ExportRequest.project_id == project,
                                             ExportRequest.state == "released")
                 .order_by(ExportRequest.released_at.desc()))
        rows = []
        for req in s.scalars(query):
            if req.id == exclude:
                continue
            for f in req.files:
                if f.kind == "table":
                    rows.append((req.id, f.name, f.stored_name, req.context))
            if len(rows) >= MAX_RELEASED_TABLES:
                break
    out = []
    for request_id, name, stored, context in rows[:MAX_RELEASED_TABLES]:
        path = request_dir(staging, project, request_id) / stored
        try:
            frame = tables.read_table(path, name)
        except (InvalidInput, OSError) as exc:
            log.warning("released table %s of %s unreadable for differencing: %s", name, request_id, exc)
            continue
        out.append(Released(request_id, name, tables.analyse(frame, declaration.parse(_declaration_of(context, name)))))
    return tuple(out)


def check_files(gate: ProjectGate, files: list[tuple[int, str, Path, str | None]],
                context: Mapping[str, Any], request_id: str | None = None) -> dict[int, FileCheck]:
    """index -> check of each file given as (index, name, path, sha256 or None).

    ``context["acro"]`` maps file names to the ACRO records :mod:`pds_kernel.sdc` made and
    ``context["tables"]`` to the tables' declarations; each counts only for the bytes it was made for.
    """
    acro = context.get("acro") if isinstance(context.get("acro"), Mapping) else {}
    names = [name for _, name, _, _ in files]
    siblings = request_tables(files, context, gate.max_bytes, request_id)
    results = {}
    for index, name, path, sha256 in files:
        record = acro.get(name)
        if isinstance(record, Mapping):  # an ACRO record, or sdc's own (a declaration without ACRO)
            record = {**record, "source": "sdc" if record.get("source") == "sdc" else "acro"}
        else:
            record = None
        results[index] = check_file(path, name, gate.thresholds, evidence=record,
                                    other_files=[n for n in names if n != name], context=context,
                                    allowed_extensions=gate.allowed, sha256=sha256, max_bytes=gate.max_bytes,
                                    known_ids=gate.known_ids, request_id=request_id, reference=gate.reference,
                                    released=gate.released + tuple(t for t in siblings if t.name != name))
    return results


def request_tables(files: list[tuple[int, str, Path, str | None]], context: Mapping[str, Any], max_bytes: int,
                   request_id: str | None) -> tuple[Released, ...]:
    """The tables of one request, each compared with the others like a released table: a request
    holding "all adults" and "adults over 19" isolates the persons in between."""
    declared = context.get("tables") if isinstance(context.get("tables"), Mapping) else {}
    tables_of = [(n, p) for _, n, p, _ in files if filetypes.kind_of(n) == "table"]
    out = []
    for name, path in tables_of if len(tables_of) > 1 else ():
        try:
            if path.stat().st_size > max_bytes:
                continue
            frame = tables.read_table(path, name)
        except (InvalidInput, OSError):
            continue  # its own check says why
        out.append(Released(request_id or "this request", name,
                            tables.analyse(frame, declaration.parse(declared.get(name))), released=False))
    return tuple(out)


def check_refusals(results: Mapping[int, FileCheck], names: Mapping[int, str]) -> None:
    """Raise :class:`RefusedFiles` when a file failed a pre-gate or its type (one reason per file)."""
    reasons = {names[i]: "; ".join(r.refusals) for i, r in results.items() if r.refusals}
    if reasons:
        raise RefusedFiles(reasons)


def project_gate(settings, sessions, limits, project: str, thresholds: Thresholds,
                 request_id: str | None = None, model_checker: Callable | None = None, *, audit,
                 extract: CheckedMount | None = None, author: str | None = None) -> ProjectGate:
    """The gate's knowledge of ``project`` (reads the database: call it outside a transaction).
    What it reads of the project's extract (the cohort's pseudonyms, the numbers a model is compared
    with) must be the extract the audit trail says was published, checked as a workspace's is
    (:func:`.extract_reads.gate_extract`), and is read as it was checked
    (:mod:`pds_kernel.extract.checked_read`): a cohort rewritten after its publication, or between
    the check and the read, would hide pseudonyms from the table checks. ``extract`` is the check
    :func:`.submission.request_gate` made once for the whole submission (its model checks mount
    it); without it the extract is checked here. A project with no extract has nothing to check;
    one whose extract fails is refused (:class:`ExtractRefused`). With ``author``, a request's
    models, text and code files are judged with the project's earlier ones too (that author's first)."""
    if extract is None:
        extract = gate_extract(settings, audit, project)
    projects = settings.paths.projects
    return ProjectGate(thresholds, limits.max_file_bytes, limits.allowed_extensions,
                       person_id_prefixes(projects, extract),
                       released_tables(sessions, settings.paths.staging, project, exclude=request_id),
                       model_checker, lambda: extract_numbers(projects, extract),
                       None if author is None else lambda: earlier_models(sessions, settings.paths.staging, project,
                                                                         author, request_id))


def run_gate(gate: ProjectGate, directory: Path, files: list[tuple[int, str, str, str]],
             context: Mapping[str, Any]) -> dict[int, dict]:
    """The checks of a request's staged files (``directory`` is ``staging/<project>/<request>``),
    given as (index, name, stored name, sha256): index -> check result; raises
    :class:`RefusedFiles` first when a file is refused. A rebuilt file is checked as rebuilt, and
    what its submitted bytes carried besides cells or pixels is added (``embedded-data``)."""
    submitted = {i: submitted_path(directory, stored) for i, _, stored, _ in files}
    submitted = {i: (path, sha256_file(path)) for i, path in submitted.items() if path.is_file()}
    # ACRO records and declarations name the bytes the researcher submitted (rebuilt copies: the same cells)
    results = check_files(gate, [(i, n, directory / stored, submitted[i][1] if i in submitted else sha)
                                 for i, n, stored, sha in files], context, directory.name)
    for i, name, _, _ in files:
        if i in submitted:
            results[i].extend(submitted_findings(submitted[i][0], name, gate.max_bytes))
    check_refusals(results, {i: n for i, n, _, _ in files})
    if gate.earlier is not None:  # a column cut into pieces across this request's files and earlier ones
        split_check(gate.earlier, gate.reference,
                    {i: (n, directory / stored, results[i].kind) for i, n, stored, _ in files}, results)
    reports = {}
    if gate.model_checker is not None:
        declared = context.get("models") if isinstance(context.get("models"), Mapping) else {}
        for i, name, stored, _ in files:
            if results[i].kind == "model" and results[i].status != Status.FAIL:
                found, reports[i] = gate.model_checker(i, name, directory / stored, declared.get(name))
                results[i].extend(found)
    out = {i: r.to_dict() for i, r in results.items()}
    for i, (path, sha) in submitted.items():  # what the researcher sent, kept for the record
        out[i]["submitted"] = {"sha256": sha, "size": path.stat().st_size}
    for i, report in reports.items():
        if report is not None:
            out[i]["model_check"] = report
    return out


def check_paths(gate: ProjectGate, paths: list[Path], context: Mapping[str, Any]) -> dict[str, Any]:
    """``{"files": [{"name", "verdict", "kind", "findings", "omitted", "rebuilt"}]}`` for local files,
    as the gate would judge them on submission (``pds airlock check``, ``workspace.check``): a file
    the gate rebuilds is checked as rebuilt (``rebuilt``: it would leave as the gate's copy), or
    refused when it cannot be."""
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        raise InvalidInput("two files share a name: the gate matches declarations by file name")
    with tempfile.TemporaryDirectory(prefix="pds-check-") as scratch:
        copies = {i: Path(scratch) / f"{i}-{name}" for i, name in enumerate(names) if to_rebuild(Path(paths[i]), name)}
        reasons = rebuild_all([(Path(paths[i]), copy, names[i]) for i, copy in copies.items()])
        refused = {i: reasons[names[i]] for i in copies if reasons.get(names[i])}
        results = check_files(gate, [(i, names[i], copies.get(i, Path(p)), sha256_file(Path(p)) if i in copies else None)
                                     for i, p in enumerate(paths) if i not in refused], context)
        for i in copies.keys() - refused.keys():
            results[i].extend(submitted_findings(Path(paths[i]), names[i], gate.max_bytes))
        split_check(lambda: ([], 0), gate.reference,  # the models given together (earlier exports: the gate's)
                    {i: (names[i], Path(paths[i]), r.kind) for i, r in results.items()}, results)
    for i, why in refused.items():
        results[i] = FileCheck(kind=filetypes.kind_of(names[i]))
        results[i].add(Finding("rebuild", Status.FAIL, why))
    files = []
    for i, name in enumerate(names):
        data = results[i].to_dict()
        files.append({"name": name, "verdict": data["verdict"], "kind": data["kind"],
                      "findings": data["findings"], "omitted": data["omitted"],
                      "rebuilt": i in copies and i not in refused})
    return {"files": files}
