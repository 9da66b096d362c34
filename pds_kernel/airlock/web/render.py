"""Turn a staged file into something a checker can look at: a table with its failing cells marked,
an inline image, or text. Pure data for the template (which escapes everything).

Only for output checkers of the project (the page asks the service, which checks it again).
Anyone else gets :func:`redacted_file`: the file's metadata and its redacted findings, no bytes."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InvalidInput
from ..checks.tables import read_table

MAX_ROWS = 500
MAX_COLS = 60
MAX_TEXT = 200_000


@dataclass
class Rendered:
    file: object  #: the service's FileView
    mode: str  #: table (an archive's members too) | image | pdf | text | code | model | none | redacted
    header: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, str, str]]] = field(default_factory=list)  #: (value, css class, tooltip)
    text: str = ""
    note: str = ""
    general: list[dict] = field(default_factory=list)  #: findings without a cell
    html: str = ""  #: code highlighted by pygments (it escapes the source: safe to insert as is)
    model: dict = field(default_factory=dict)  #: the platform's model check report (mode ``model``)


_LEXERS = {".py": "python", ".r": "r", ".rmd": "markdown", ".qmd": "markdown", ".sql": "sql", ".sh": "bash"}


def notebook_source(text: str) -> tuple[str, str]:
    """(the cells of a notebook as one script with cell markers, its language): what a checker reads,
    outputs written as comments under their cell."""
    import json

    try:
        notebook = json.loads(text)
        cells = notebook["cells"]
        language = str(((notebook.get("metadata") or {}).get("kernelspec") or {}).get("language") or "python")
    except (ValueError, KeyError, TypeError, AttributeError):
        return text, "json"
    parts = []
    for number, cell in enumerate(cells if isinstance(cells, list) else [], start=1):
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        kind = cell.get("cell_type", "code")
        if kind == "code":
            parts.append(f"# ---- cell {number} (code)\n{source}")
        else:
            parts.append(f"# ---- cell {number} ({kind})\n" + "\n".join("# " + line for line in source.splitlines()))
        for output in cell.get("outputs") or []:
            if not isinstance(output, dict):
                continue
            shown = output.get("text") or (output.get("data") or {}).get("text/plain") or ""
            shown = "".join(shown) if isinstance(shown, list) else str(shown)
            kinds = ", ".join(sorted(k for k in (output.get("data") or {}) if k != "text/plain"))
            parts.append(f"# output ({output.get('output_type', '?')}{': ' + kinds if kinds else ''}):\n"
                         + "\n".join("#   " + line for line in shown.splitlines()))
    return "\n\n".join(parts) + "\n", language


def highlight_code(name: str, text: str) -> str:
    """The source as HTML with syntax highlighting and line numbers (pygments escapes it)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    ext = Path(name).suffix.lower()
    language = _LEXERS.get(ext, "text")
    if ext == ".ipynb":
        text, language = notebook_source(text)
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:  # an unknown kernel language reads as plain text
        lexer = TextLexer()
    return highlight(text, lexer, HtmlFormatter(noclasses=True, linenos="inline", cssclass="code"))


def _cell_marks(check: dict) -> dict[tuple[int, int], tuple[str, str]]:
    marks: dict[tuple[int, int], tuple[str, str]] = {}
    for f in check.get("findings", []):
        if "row" in f and "col" in f:
            key = (f["row"], f["col"])
            status, message = f["status"], f["message"]
            if key in marks and marks[key][0] == "fail":
                status = "fail"
            marks[key] = (status, (marks[key][1] + " · " if key in marks else "") + message)
    return marks


def render_file(file, path: Path) -> Rendered:
    check = file.check or {}
    general = [f for f in check.get("findings", []) if "row" not in f]
    ext = Path(file.name).suffix.lower()
    if file.kind == "table" and check.get("rules", {}).get("file-type") != "fail":
        try:
            frame = read_table(path, file.name)
        except InvalidInput as exc:
            return Rendered(file, "none", note=str(exc), general=general)
        marks = _cell_marks(check)
        header = [str(c) for c in frame.columns[:MAX_COLS]]
        rows = []
        for r, values in enumerate(frame.iloc[:MAX_ROWS, :MAX_COLS].itertuples(index=False)):
            row = []
            for c, value in enumerate(values):
                status, message = marks.get((r, c), ("", ""))
                row.append(("" if value != value else str(value), status, message))  # NaN -> empty
            rows.append(row)
        note = ""
        if frame.shape[0] > MAX_ROWS or frame.shape[1] > MAX_COLS:
            note = f"showing {min(frame.shape[0], MAX_ROWS)} of {frame.shape[0]} rows, " \
                   f"{min(frame.shape[1], MAX_COLS)} of {frame.shape[1]} columns: download to see all"
        return Rendered(file, "table", header=header, rows=rows, note=note, general=general)
    if ext in {".png", ".jpg", ".jpeg"} and check.get("rules", {}).get("file-type") != "fail":
        return Rendered(file, "image", general=general)
    if ext == ".pdf" and check.get("rules", {}).get("file-type") != "fail":
        return Rendered(file, "pdf", general=general)
    if file.kind == "code" and check.get("rules", {}).get("file-type") != "fail":
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)
        note = f"showing the first {MAX_TEXT} bytes" if len(data) > MAX_TEXT else ""
        return Rendered(file, "code", html=highlight_code(file.name, data[:MAX_TEXT].decode("utf-8", "replace")),
                        note=note, general=general)
    if file.kind == "text":
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)
        note = f"showing the first {MAX_TEXT} bytes" if len(data) > MAX_TEXT else ""
        return Rendered(file, "text", text=data[:MAX_TEXT].decode("utf-8", "replace"), note=note,
                        general=[f for f in general])
    if file.kind == "archive" and isinstance(check.get("members"), list):
        return archive_listing(file, check["members"], general)
    if file.kind == "model" and isinstance(check.get("model_check"), dict):
        return Rendered(file, "model", general=general, model=check["model_check"],
                        note="" if model_plot(check) else "no ROC plot: no membership-inference attack ran")
    return Rendered(file, "none", note="no preview for this type: download it to inspect", general=general)


def archive_listing(file, members: list, general: list[dict]) -> Rendered:
    """An imported archive's members as the scan listed them (the checker reads them here, without
    downloading the archive: the page showed "no preview" before). Names are text (escaped by the
    template); the gate refused names that hide characters or repeat in another case or form."""
    rows = [[(str(m.get("name", "")), "", ""), (str(m.get("size", "")), "", ""), (str(m.get("type", "")), "", "")]
            for m in members[:MAX_ROWS] if isinstance(m, dict)]
    note = f"showing {MAX_ROWS} of {len(members)} members" if len(members) > MAX_ROWS else ""
    return Rendered(file, "table", header=["member", "bytes", "type"], rows=rows, note=note, general=general)


def model_plot(check: dict) -> bytes | None:
    """The PNG bytes of a model check's ROC plot (stored base64 in the check result), else None."""
    report = check.get("model_check") if isinstance(check, dict) else None
    encoded = report.get("plot_png") if isinstance(report, dict) else None
    if not isinstance(encoded, str):
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError:
        return None
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") else None


def redacted_file(file) -> Rendered:
    """What a viewer who may not read the contents gets: no bytes, the redacted findings only
    (rule, status, location, the rule's fixed explanation: :func:`..views.build_redacted_check`)."""
    findings = [f for f in (file.check or {}).get("findings", []) if isinstance(f, dict)]
    return Rendered(file, "redacted", general=findings,
                    note="the contents are shown to the project's output checkers only; "
                         "once released, download the file from this page")
