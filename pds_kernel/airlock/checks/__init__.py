"""Automatic disclosure checks: one entry point, :func:`check_file`, and small rule modules.

Every file gets a :class:`FileCheck`: its verdict is ``refused`` (a pre-gate or type failed: the
gate will not take it), else ``pass`` / ``review`` / ``fail`` with reasons per cell or line. A
``pass`` means every rule applied and the gate verified every cell it could; whatever it cannot
establish (are these distinct persons? magnitudes?) is ``review`` unless the table is declared.

- :mod:`.filetypes` and :mod:`.models`: allowed, blocked and disguised types, pickles by content;
  a model's strings (:mod:`.model_data`) and numbers against the project's extract (:mod:`.model_tensors`);
- :mod:`.pregates`: rows, size, person identifiers in any column, dates of birth/death, microdata;
- :mod:`.declaration`: what each column is (declared, or an SNDS code column by its name);
- :mod:`.tables`: counts (small cells, zeros, recovery from margins); :mod:`.magnitudes`:
  dominance and p-ratio from contributions; :mod:`.differencing`: totals against cells, and
  against the project's released tables;
- :mod:`.content`: identifiers, day-level dates, free text, for tables and text alike;
- :mod:`.code`: code and notebooks (outputs, embedded data, identifiers); :mod:`.program_text`:
  the prose of programs (comments, strings) judged for look-alike signs (:mod:`.typography`),
  found by :mod:`tokenize` or by the scanner of R, SQL and the shell (:mod:`.program_scan`);
- :mod:`.text_columns`: a column of the project's extract written out in a text or code file;
- figures pass only through review, and fail when the request does not carry their table.

Thresholds are an explicit argument, so two projects with different rules can be checked in one
process. ACRO evidence (``evidence``) is the record :mod:`pds_kernel.sdc` made when it saved this
file; it is used only when the SHA-256 it carries is the SHA-256 of the checked bytes, otherwise it
is ignored and the file needs review ("ACRO record does not match this file").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...errors import InvalidInput
from ...hashing import sha256_file
from . import (
    cell_spelling,
    code,
    containers,
    content,
    csv_form,
    declaration,
    differencing,
    figures,
    filetypes,
    magnitudes,
    models,
    pregates,
    tables,
    text_columns,
    typography,
)
from .differencing import Released
from .result import REFUSAL_RULES, FileCheck, Finding, Status, Thresholds, worst

__all__ = ["check_file", "submitted_findings", "FileCheck", "Finding", "Released", "REFUSAL_RULES", "Status", "Thresholds", "worst",
           "figure_table", "DEFAULT_MAX_BYTES"]

#: the largest table file the gate reads (pre-gate ``max-size``); the staging limit may be lower
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
UNDECLARED = ("undeclared table: the gate cannot establish that these counts are distinct persons "
              "(or which columns are magnitudes); declare it with pds_kernel.sdc or "
              "context={'tables': {name: {'labels': [...], 'counts': [...]}}}")

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


def _scan(value: str, header: bool, around: str = "LATIN") -> list[tuple[str, Status, str]]:
    """Every rule on a table's header or text cell; ``around``: the table's script (:func:`.content.table_script`)."""
    found = (content.hidden_rules(value) + content.lookalike_rules(value, around) + content.padding_rules(value)
             + content.formula_rules(value))
    if header:
        return content.header_rules(value) + content.date_rules(value) + found
    return content.scan_value(value) + found


def _preview(size: int) -> list[Finding]:
    """A text or code file longer than the review page shows (:data:`.content.PREVIEW_BYTES`):
    the rest would leave unseen unless the approving checker reads it from the raw file."""
    if size <= content.PREVIEW_BYTES:
        return []
    return [Finding("preview", Status.FAIL, f"{size} bytes: the review page shows the first {content.PREVIEW_BYTES}; "
                                            "a checker approving it reads the rest from the raw file and says so")]


def _table_preview(shape: tuple[int, int]) -> list[Finding]:
    """A table larger than the review page shows (:data:`.content.PREVIEW_ROWS` and ``PREVIEW_COLS``):
    the rules read every cell, but cannot tell a code from a category; the rest leaves unseen
    unless the approving checker reads it from the raw file."""
    rows, cols = shape
    if rows <= content.PREVIEW_ROWS and cols <= content.PREVIEW_COLS:
        return []
    return [Finding("preview", Status.FAIL, f"{rows} rows and {cols} columns: the review page shows the first "
                                            f"{content.PREVIEW_ROWS} rows and {content.PREVIEW_COLS} columns; a checker "
                                            "approving it reads the rest from the raw file and says so (or split the "
                                            "table)")]


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
               sha256: str | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES,
               known_ids: frozenset[str] | None = None,
               released: Iterable[Released] = (),
               request_id: str | None = None,
               reference: Callable[[], Any] | None = None) -> FileCheck:
    """Check one file. ``other_files`` are the names of the rest of the request; ``sha256`` is the
    file's (computed when not given and needed); ``known_ids`` the 12-character prefixes of the
    project's PERSON_IDs; ``released`` the project's released tables (differencing); ``reference``
    returns the project's extract as numbers, for models (:mod:`.model_tensors`) and the numbers
    of text and code files (:mod:`.text_columns`)."""
    kind = filetypes.kind_of(name)
    with open(path, "rb") as fh:
        head = fh.read(filetypes.HEAD_BYTES)
    if kind == "text" and models.sniff_model_text(filetypes.extension(name), head):
        kind = "model"
    result = FileCheck(kind=kind)
    result.extend(filetypes.check_type(name, head, allowed_extensions))
    if result.status == Status.FAIL:
        return result
    result.extend(models.check_pickles(path, head))
    if result.status == Status.FAIL:
        return result
    context = context or {}
    raw = ((context.get("tables") or {}) if isinstance(context.get("tables"), Mapping) else {}).get(name)
    if evidence or (isinstance(raw, Mapping) and raw.get("sha256")):
        sha256 = sha256 or sha256_file(path)
    if evidence:
        evidence, ignored = matching_evidence(evidence, sha256)
        if ignored is not None:
            result.add(ignored)
    if kind == "table":
        raw = _bound_declaration(raw, sha256, result, superseded=bool(evidence and evidence.get("declaration")))
        _check_table(path, name, thresholds, evidence, raw, result, max_bytes=max_bytes, known_ids=known_ids,
                     released=released, request_id=request_id)
    elif kind == "text":
        _check_text(path, result)
        result.extend(_preview(path.stat().st_size))
        found, result.evidence = text_columns.column_findings(path, name, reference() if reference else None)
        result.extend(found)
    elif kind == "code":
        result.extend(code.check_code(path, name, path.stat().st_size))
        result.extend(_preview(path.stat().st_size))
        if path.stat().st_size <= code.MAX_CODE_BYTES:
            found, result.evidence = text_columns.column_findings(path, name, reference() if reference else None)
            result.extend(found)
    elif kind == "model":
        declared = isinstance(context.get("models"), Mapping) and name in context["models"]
        result.extend(models.check_model(path, name, head, path.stat().st_size, reference, declared=declared))
    elif kind == "figure":
        result.extend(figures.check_figure(path, name, max_bytes))
        table = figure_table(name, other_files or [], context)
        if table is None:
            result.add(Finding("figure", Status.FAIL,
                               "a figure needs its underlying table in the same request (same name "
                               "with .csv, or declared in context['figures'])"))
        else:
            result.add(Finding("figure", Status.REVIEW,
                               f"a checker must compare this figure with its table {table}, checked separately"))
    return result


def submitted_findings(path: Path, name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Finding]:
    """The ``embedded-data`` findings of the bytes a researcher submitted, for a file the gate
    rebuilt (:mod:`pds_kernel.airlock.rebuild`): what they held besides their cells or pixels is
    not in the copy that is checked and would be released, but a checker is told it was there."""
    kind = filetypes.kind_of(name)
    if path.stat().st_size > max_bytes:
        return []  # the copy's own check judges the size
    if kind == "figure":
        found = figures.check_figure(path, name, max_bytes)
    elif kind == "table":
        try:
            found = _check_container(path, name, tables.read_table(path, name))
        except InvalidInput:
            return []  # the copy was rebuilt from the same columns: its own check says what they are
    else:
        return []
    return [Finding(f.rule, f.status, f"the submitted file: {f.message} (the gate left it out of the copy it "
                                      "checked and would release)") for f in found]


def _bound_declaration(raw: Any, sha256: str | None, result: FileCheck, superseded: bool) -> Mapping[str, Any] | None:
    """The declaration of a file, unless it names other bytes (an sdc declaration of an older
    version; ``superseded`` when the sdc record of these very bytes carries the new one)."""
    if not isinstance(raw, Mapping):
        return None
    recorded = raw.get("sha256")
    if isinstance(recorded, str) and recorded.lower() != sha256:
        if superseded:
            return None
        result.add(Finding("declaration", Status.REVIEW, "the declaration was made for other bytes (the file "
                                                         "changed after sdc saved it): it is ignored"))
        return None
    return raw


def _check_table(path: Path, name: str, thresholds: Thresholds, evidence: Mapping[str, Any] | None,
                 raw: Mapping[str, Any] | None, result: FileCheck, *, max_bytes: int,
                 known_ids: frozenset[str] | None, released: Iterable[Released], request_id: str | None) -> None:
    size = path.stat().st_size
    if size > max_bytes:
        result.extend(pregates.check_size(0, size, thresholds.max_table_rows, max_bytes))
        return
    try:
        frame = tables.read_table(path, name)
    except InvalidInput as exc:
        result.add(Finding("table", Status.FAIL, str(exc)))
        return
    result.extend(_check_container(path, name, frame))
    declared = declaration.parse(raw, evidence)
    table = tables.analyse(frame, declared)
    roles = table.roles
    whole_unknown = tables.whole_columns(table, table.value_index(roles.unknown))
    count_idx = table.value_index(roles.counts) + whole_unknown
    keys = table.labels if declared.labels is not None else sorted(
        table.labels + [table.numeric[j] for j in whole_unknown])
    result.extend(pregates.check_size(len(frame), size, thresholds.max_table_rows, max_bytes, frame.shape[1]))
    result.extend(pregates.check_identifiers(frame, table.numbers, known_ids))
    if not result.refusals:
        result.extend(pregates.check_split_identifiers(frame, table.numbers))
    result.extend(pregates.check_dates(frame))
    result.extend(pregates.check_microdata(frame, keys, [table.values[:, j] for j in count_idx],
                                           table.total_rows))
    result.extend(pregates.check_transposed(frame, table.numeric))
    if result.refusals:
        return  # pre-gates come before any rule: a refused file is not judged further
    result.extend(_table_preview(frame.shape))
    for problem in declared.problems + roles.problems:
        result.add(Finding("declaration", Status.REVIEW, f"declaration: {problem}"))
    result.extend(tables.check_text_cells(table, _scan))
    result.extend(cell_spelling.check_columns(frame))
    _check_values(table, thresholds, evidence, declared, whole_unknown, result)
    sums = [j for j, pos in enumerate(table.numeric) if roles.magnitudes.get(pos) == "sum"]
    result.extend(tables.check_margins(table))
    result.extend(differencing.check_totals(table, thresholds, count_idx, sums))
    result.extend(differencing.check_unnamed_totals(table, thresholds, count_idx))
    result.extend(differencing.check_history(table, thresholds, count_idx, released, request_id))


def _check_container(path: Path, name: str, frame) -> list[Finding]:
    """What a CSV, Parquet or XLSX file carries besides its cells (:mod:`.csv_form`, :mod:`.containers`)."""
    ext = filetypes.extension(name)
    if ext in {".csv", ".tsv"}:
        return csv_form.check_csv(path, tables.csv_separator(path, name))
    if ext == ".parquet":
        return containers.check_parquet(path, frame.shape[1])
    if ext == ".xlsx":
        texts = [x for c in frame.columns if frame[c].dtype == object for x in frame[c] if isinstance(x, str)]
        shown = frozenset(texts) | frozenset(str(c) for c in frame.columns)
        return containers.check_xlsx(path, len(texts) + frame.shape[1], shown)
    return []


def _check_values(table, thresholds: Thresholds, evidence, declared, whole_unknown: list[int],
                  result: FileCheck) -> None:
    roles = table.roles
    if not table.numeric:
        result.add(Finding("table", Status.REVIEW, "no value column: a checker must read this table"))
        return
    counted = table.value_index(roles.counts)
    unit = "persons" if declared.unit == "persons" else "rows"
    if counted:
        findings, omitted = tables.check_counts(table, thresholds, counted, unit=unit)
        result.extend(findings)
        result.add_omitted("small-cell", Status.FAIL, omitted["small-cell"])
        result.add_omitted("zero", Status.REVIEW, omitted["zero"])
        if declared.unit != "persons":
            result.add(Finding("unit", Status.REVIEW, "counts of rows (events, claims...), not of distinct persons: "
                                                      "a cell of 10 rows may hold fewer than 10 persons"))
        if declared.rounding and declared.rounding > 1:
            block = table.values[:, counted]
            with np.errstate(invalid="ignore"):
                off = np.nansum(np.mod(block, declared.rounding) != 0)
            if off:
                result.add(Finding("rounding", Status.REVIEW, f"{int(off)} count(s) are not multiples of the "
                                                              f"declared rounding base {declared.rounding}"))
    if whole_unknown:
        findings, omitted = tables.check_counts(table, thresholds, whole_unknown, unit="(undeclared counts)")
        result.extend(findings)
        result.add_omitted("small-cell", Status.FAIL, omitted["small-cell"])
        result.add_omitted("zero", Status.REVIEW, omitted["zero"])
    has_acro = bool(evidence and evidence.get("source") == "acro")
    if has_acro:
        result.extend(tables.check_acro_record(table, evidence, thresholds))
    result.extend(magnitudes.check_magnitudes(table, thresholds))
    result.extend(magnitudes.check_dof(declared.dof, thresholds))
    unknown = [j for j in table.value_index(roles.unknown) if j not in whole_unknown]
    if unknown and not has_acro:
        result.add(Finding("magnitude", Status.REVIEW,
                           f"{magnitudes.NOT_VERIFIABLE}: table of magnitudes without contributions: dominance (n="
                           f"{thresholds.dominance_n}, k={thresholds.dominance_k:g} %) and p-ratio "
                           f"({thresholds.p_ratio:g} %) cannot be checked; build it with pds_kernel.sdc",
                           col=table.numeric[unknown[0]]))
    if not has_acro and (roles.unknown or not declared.declared):
        result.add(Finding("undeclared", Status.REVIEW, UNDECLARED))
    elif has_acro and not declared.declared and whole_unknown:
        result.add(Finding("unit", Status.REVIEW, "ACRO counts rows: the gate cannot establish that these are "
                                                  "distinct persons"))
    labels = table.frame.iloc[:, table.labels] if table.labels else None
    if labels is not None and len(labels):
        body = labels.drop(index=labels.index[table.total_rows]) if table.total_rows else labels
        if body.astype("string").fillna("").duplicated().any():
            result.add(Finding("declaration", Status.REVIEW, "two rows share the same categories: a checker must "
                                                             "confirm what each row is"))


def _check_text(path: Path, result: FileCheck) -> None:
    result.add(Finding("free-text", Status.REVIEW, "text files are read by a checker"))
    with open(path, "rb") as fh:
        data = fh.read(_TEXT_LIMIT + 1)
    if len(data) > _TEXT_LIMIT:
        result.add(Finding("free-text", Status.REVIEW, f"only the first {_TEXT_LIMIT} bytes were scanned"))
    for rule, status, message in content.undecodable_rules(data[:_TEXT_LIMIT], cut=len(data) > _TEXT_LIMIT):
        result.add(Finding(rule, status, message))
    text = data[:_TEXT_LIMIT].decode("utf-8", "replace").removeprefix("\ufeff")
    whole = content.line_ending_rules(text) + typography.sign_rules(text) + content.normal_form_rules(text)
    for rule, status, message in whole:
        result.add(Finding(rule, status, message))
    for number, line in enumerate(text.splitlines(), start=1):
        found = (content.identifier_rules(line) + content.date_rules(line) + content.hidden_rules(line)
                 + content.lookalike_rules(line) + content.trailing_blank_rules(line))
        for rule, status, message in found:
            result.add(Finding(rule, status, message, line=number))
