"""Automatic disclosure checks: one entry point, :func:`check_file`, and small rule modules.

Every file gets a :class:`FileCheck` (pass / review / fail with reasons per cell or line):

- :mod:`.filetypes`: allowed, blocked and disguised types; model files always need review;
- :mod:`.tables`: counts (small cells, zeros, recovery from margins), magnitudes (from ACRO
  evidence, else review);
- :mod:`.content`: identifiers, day-level dates, free text, for tables and text alike;
- figures pass only through review, and fail when the request does not carry their table.

Thresholds are an explicit argument, so two projects with different rules can be checked in one
process. ACRO evidence (``evidence``) is the record :mod:`pds_kernel.sdc` made when it saved this
file; it is used only when the SHA-256 it carries is the SHA-256 of the checked bytes, otherwise it
is ignored and the file needs review ("ACRO record does not match this file").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import InvalidInput
from ...hashing import sha256_file
from . import content, filetypes, tables
from .result import FileCheck, Finding, Status, Thresholds, worst

__all__ = ["check_file", "FileCheck", "Finding", "Status", "Thresholds", "worst", "figure_table"]

_TEXT_LIMIT = 2_000_000  #: bytes of a text file that are scanned line by line
ACRO_MISMATCH = "ACRO record does not match this file"


def matching_evidence(evidence: Mapping[str, Any] | None, sha256: str) -> tuple[Mapping[str, Any] | None, Finding | None]:
    """(the ACRO record if it was made for exactly these bytes, else None; the finding saying why not).

    A record is bound to the file :meth:`pds_kernel.sdc.Session.save` wrote through its SHA-256: a
    record for another version of the file (or a hand-made one without a hash) says nothing about
    these cells, so it is ignored and a checker is told.
    """
    if not evidence:
        return None, None
    recorded = evidence.get("sha256") if isinstance(evidence, Mapping) else None
    if isinstance(recorded, str) and recorded.lower() == sha256:
        return evidence, None
    why = ("it carries no SHA-256 (save the file with pds_kernel.sdc.Session.save)" if not recorded else
           "it was made for other bytes (the file changed after sdc saved it)")
    return None, Finding("acro", Status.REVIEW, f"{ACRO_MISMATCH}: {why}; the record is ignored")


def _scan(value: str, header: bool) -> list[tuple[str, Status, str]]:
    if header:
        return content.header_rules(value) + content.date_rules(value)
    return content.scan_value(value)


def figure_table(name: str, others: list[str], context: Mapping[str, Any] | None = None) -> str | None:
    """The table a figure is drawn from: ``context["figures"][name]`` or a table with the same stem."""
    declared = ((context or {}).get("figures") or {}).get(name)
    if declared in others:
        return declared
    stem = PurePosixPath(name).stem
    for other in others:
        if PurePosixPath(other).stem == stem and filetypes.kind_of(other) == "table":
            return other
    return None


def check_file(path: Path, name: str, thresholds: Thresholds, *,
               evidence: Mapping[str, Any] | None = None,
               other_files: list[str] | None = None,
               context: Mapping[str, Any] | None = None,
               allowed_extensions: frozenset[str] | None = None,
               sha256: str | None = None) -> FileCheck:
    """Check one staged file. ``other_files`` are the names of the rest of the request; ``sha256``
    is the file's (computed when not given, and only when evidence is attached)."""
    kind = filetypes.kind_of(name)
    result = FileCheck(kind=kind)
    with open(path, "rb") as fh:
        head = fh.read(filetypes.HEAD_BYTES)
    result.extend(filetypes.check_type(name, head, allowed_extensions))
    if result.status == Status.FAIL:
        return result
    if evidence:
        evidence, ignored = matching_evidence(evidence, sha256 or sha256_file(path))
        if ignored is not None:
            result.add(ignored)
    if kind == "table":
        _check_table(path, name, thresholds, evidence, context or {}, result)
    elif kind == "text":
        _check_text(path, result)
    elif kind == "figure":
        table = figure_table(name, other_files or [], context)
        if table is None:
            result.add(Finding("figure", Status.FAIL,
                               "a figure needs its underlying table in the same request (same name "
                               "with .csv, or declared in context['figures'])"))
        else:
            result.add(Finding("figure", Status.REVIEW,
                               f"a checker must compare this figure with its table {table}, checked separately"))
    return result


def _check_table(path: Path, name: str, thresholds: Thresholds, evidence: Mapping[str, Any] | None,
                 context: Mapping[str, Any], result: FileCheck) -> None:
    try:
        frame = tables.read_table(path, name)
    except InvalidInput as exc:
        result.add(Finding("table", Status.FAIL, str(exc)))
        return
    options = ((context.get("tables") or {}).get(name) or {})
    label_columns = options.get("label_columns", (evidence or {}).get("label_columns"))
    table = tables.analyse(frame, int(label_columns) if isinstance(label_columns, int) else None)
    result.extend(tables.check_text_cells(table, _scan))
    declared = options.get("measure")
    is_count = declared == "count" if declared else tables.is_count_table(table)
    has_evidence = False
    if evidence and evidence.get("source") == "acro":
        result.extend(tables.check_acro_record(table, evidence, thresholds))
        has_evidence = True
    if not table.numeric:
        result.add(Finding("table", Status.REVIEW, "no numeric column: a checker must read this table"))
    elif is_count:
        # our own count rules run even when evidence is attached: evidence adds, never replaces
        findings, omitted = tables.check_counts(table, thresholds)
        result.extend(findings)
        result.add_omitted("small-cell", Status.FAIL, omitted["small-cell"])
        result.add_omitted("zero", Status.REVIEW, omitted["zero"])
    elif not has_evidence:
        result.add(Finding("magnitude", Status.REVIEW,
                           "table of magnitudes without microdata evidence: dominance (n="
                           f"{thresholds.dominance_n}, k={thresholds.dominance_k:g} %) and p-ratio "
                           f"({thresholds.p_ratio:g} %) cannot be checked automatically; build it with "
                           "pds_kernel.sdc to attach the evidence"))
    result.extend(tables.check_margins(table))


def _check_text(path: Path, result: FileCheck) -> None:
    result.add(Finding("free-text", Status.REVIEW, "text files are read by a checker"))
    with open(path, "rb") as fh:
        data = fh.read(_TEXT_LIMIT + 1)
    if len(data) > _TEXT_LIMIT:
        result.add(Finding("free-text", Status.REVIEW, f"only the first {_TEXT_LIMIT} bytes were scanned"))
    text = data[:_TEXT_LIMIT].decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), start=1):
        for rule, status, message in content.identifier_rules(line) + content.date_rules(line):
            result.add(Finding(rule, status, message, line=number))
