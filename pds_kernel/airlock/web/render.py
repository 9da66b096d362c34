"""Turn a staged file into something a checker can look at: a table with its failing cells marked,
an inline image, or text. Pure data for the template (which escapes everything).

Only for output checkers of the project (the page asks the service, which checks it again).
Anyone else gets :func:`redacted_file`: the file's metadata and its redacted findings, no bytes."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InvalidInput
from ..checks.content import (
    ANSI_COLOUR,
    PREVIEW_BYTES,
    PREVIEW_COLS,
    PREVIEW_ROWS,
    table_script,
    visible_cell,
    visible_text,
)
from ..checks.tables import read_table

MAX_ROWS = PREVIEW_ROWS  #: a larger table fails the ``preview`` rule
MAX_COLS = PREVIEW_COLS
MAX_TEXT = PREVIEW_BYTES  #: longer text and code fail the ``preview`` rule: the page shows this much
#: The figures a notebook's outputs may show on the page (served by the gate as images).
FIGURE_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


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
    truncated: bool = False  #: the page shows only the first :data:`MAX_TEXT` bytes (said above the preview)
    figures: list[tuple[int, int, str]] = field(default_factory=list)  #: a notebook's (cell, output, type)


_LEXERS = {".py": "python", ".r": "r", ".rmd": "markdown", ".qmd": "markdown", ".sql": "sql", ".sh": "bash"}


def _joined(value) -> str:
    return "".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _commented(label: str, text: str, mark: str = "#   ") -> str:
    return label + "\n" + "\n".join(mark + line for line in text.splitlines())


def _output_parts(output: dict, number: int) -> list[str]:
    """Everything an output holds, as text: its stream, its error (name, value, traceback), and
    each of its representations (HTML, Markdown, JSON... as their source, never rendered); a
    figure is named here and shown under the code (:func:`notebook_figures`)."""
    kind = output.get("output_type", "?")
    parts = []
    if "text" in output:
        parts.append(_commented(f"# output {number} ({kind}):", ANSI_COLOUR.sub("", _joined(output["text"]))))
    if kind == "error":
        trace = ANSI_COLOUR.sub("", "\n".join(str(x) for x in output.get("traceback") or []))
        parts.append(_commented(f"# output {number} (error {output.get('ename', '')}: {output.get('evalue', '')}):",
                                trace))
    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    for mime in sorted(data, key=lambda m: (m != "text/plain", m)):
        if mime in FIGURE_TYPES:
            parts.append(f"# output {number} ({kind}, {mime}): a figure, shown below the code")
            continue
        value = data[mime] if isinstance(data[mime], (str, list)) else json.dumps(data[mime], indent=1)
        parts.append(_commented(f"# output {number} ({kind}, {mime}):", _joined(value)))
    if isinstance(output.get("metadata"), dict) and output["metadata"]:
        parts.append(f"# output {number} metadata: {json.dumps(output['metadata'])}")
    return parts


def notebook_source(text: str) -> tuple[str, str]:
    """(the cells of a notebook as one script with cell markers, its language): what a checker reads.
    Every part of a notebook that leaves with it is here, as text: the notebook's and each cell's
    metadata, markdown cells as comments, and under each cell every output whole (each of its
    representations, not only the ``text/plain`` a notebook may write as a decoy)."""
    try:
        notebook = json.loads(text)
        cells = notebook["cells"]
        language = str(((notebook.get("metadata") or {}).get("kernelspec") or {}).get("language") or "python")
    except (ValueError, KeyError, TypeError, AttributeError):
        return text, "json"
    parts = []
    if isinstance(notebook.get("metadata"), dict) and notebook["metadata"]:
        parts.append(f"# notebook metadata: {json.dumps(notebook['metadata'])}")
    for number, cell in enumerate(cells if isinstance(cells, list) else [], start=1):
        if not isinstance(cell, dict):
            continue
        source = _joined(cell.get("source", ""))
        kind = cell.get("cell_type", "code")
        if kind == "code":
            parts.append(f"# ---- cell {number} (code)\n{source}")
        else:
            parts.append(_commented(f"# ---- cell {number} ({kind})", source, "# "))
        if isinstance(cell.get("metadata"), dict) and cell["metadata"]:
            parts.append(f"# cell {number} metadata: {json.dumps(cell['metadata'])}")
        for index, output in enumerate(cell.get("outputs") or [], start=1):
            if isinstance(output, dict):
                parts += _output_parts(output, index)
    return "\n\n".join(parts) + "\n", language


def _outputs(text: str):
    """(cell number, output number, output) of every output of a notebook's text."""
    try:
        cells = json.loads(text)["cells"]
    except (ValueError, KeyError, TypeError):
        return
    for number, cell in enumerate(cells if isinstance(cells, list) else [], start=1):
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for index, output in enumerate(outputs if isinstance(outputs, list) else [], start=1):
            if isinstance(output, dict) and isinstance(output.get("data"), dict):
                yield number, index, output


def notebook_figure(text: str, cell: int, output: int) -> tuple[str, bytes] | None:
    """(type, bytes) of the figure shown by output ``output`` of cell ``cell``, if it is a PNG or
    JPEG that is what it says (served to the checker as an image: :class:`.pages.NotebookFigurePage`)."""
    for number, index, found in _outputs(text):
        if (number, index) != (cell, output):
            continue
        for mime, magic in FIGURE_TYPES.items():
            value = found["data"].get(mime)
            if not isinstance(value, (str, list)):
                continue
            try:
                data = base64.b64decode(_joined(value).replace("\n", ""), validate=True)
            except ValueError:
                return None
            return (mime, data) if data.startswith(magic) else None
    return None


def notebook_figures(text: str) -> list[tuple[int, int, str]]:
    """(cell, output, type) of every figure a notebook's outputs show (one per output, the type
    :func:`notebook_figure` serves)."""
    found = []
    for number, index, output in _outputs(text):
        mime = next((m for m in FIGURE_TYPES if m in output["data"]), None)
        if mime is not None:
            found.append((number, index, mime))
    return found


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
    text = visible_text(text)
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
            frame = read_table(path, file.name, as_written=True)  # a CSV's cells as the bytes that leave write them
        except InvalidInput as exc:
            return Rendered(file, "none", note=str(exc), general=general)
        marks = _cell_marks(check)
        shown = frame.iloc[:MAX_ROWS, :MAX_COLS]
        around = table_script(itertools.chain((str(c) for c in frame.columns),
                                              (v for column in shown.columns for v in shown[column] if isinstance(v, str))))
        header = [visible_cell(str(c), around) for c in frame.columns[:MAX_COLS]]
        rows = []
        for r, values in enumerate(frame.iloc[:MAX_ROWS, :MAX_COLS].itertuples(index=False)):
            row = []
            for c, value in enumerate(values):
                status, message = marks.get((r, c), ("", ""))
                row.append(("" if value != value else visible_cell(str(value), around), status, message))  # NaN -> empty
            rows.append(row)
        note = ""
        cut = frame.shape[0] > MAX_ROWS or frame.shape[1] > MAX_COLS
        if cut:
            unseen = [f"rows {MAX_ROWS + 1} to {frame.shape[0]}"] if frame.shape[0] > MAX_ROWS else []
            unseen += [f"columns {MAX_COLS + 1} to {frame.shape[1]}"] if frame.shape[1] > MAX_COLS else []
            note = f"showing {min(frame.shape[0], MAX_ROWS)} of {frame.shape[0]} rows, " \
                   f"{min(frame.shape[1], MAX_COLS)} of {frame.shape[1]} columns; not shown here: " \
                   f"{' and '.join(unseen)}. The automatic checks read every cell, but cannot tell a code from " \
                   "a category, and what leaves is the whole table: read the rest in the raw file before approving"
        return Rendered(file, "table", header=header, rows=rows, note=note, general=general, truncated=cut)
    if ext in {".png", ".jpg", ".jpeg"} and check.get("rules", {}).get("file-type") != "fail":
        return Rendered(file, "image", general=general)
    if ext == ".pdf" and check.get("rules", {}).get("file-type") != "fail":
        return Rendered(file, "pdf", general=general)
    if file.kind == "code" and check.get("rules", {}).get("file-type") != "fail":
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)
        text = data[:MAX_TEXT].decode("utf-8", "replace")
        return Rendered(file, "code", html=highlight_code(file.name, text), note=_cut(data, path.stat().st_size),
                        general=general, truncated=len(data) > MAX_TEXT,
                        figures=notebook_figures(text) if ext == ".ipynb" else [])
    if file.kind == "text":
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)
        return Rendered(file, "text", text=visible_text(data[:MAX_TEXT].decode("utf-8", "replace")),
                        note=_cut(data, path.stat().st_size), general=[f for f in general], truncated=len(data) > MAX_TEXT)
    if file.kind == "archive" and isinstance(check.get("members"), list):
        return archive_listing(file, check["members"], general)
    if file.kind == "model" and isinstance(check.get("model_check"), dict):
        model = dict(check["model_check"], tpr_levels=tpr_levels(check["model_check"]))
        return Rendered(file, "model", general=general, model=model,
                        note="" if model_plot(check) else "no ROC plot: no membership-inference attack ran")
    return Rendered(file, "none", note="no preview for this type: download it to inspect", general=general)


def tpr_levels(report: dict) -> list[str]:
    """The FPR levels of the model table's TPR columns: every level either attack reports (each row
    shows its value under its own level, or none), in increasing order. One attack's levels for
    both rows put the other's values under levels they were not measured at, when the two differ."""
    levels: set[str] = set()
    for name in ("worst_case", "lira"):
        attack = report.get(name)
        if isinstance(attack, dict) and isinstance(attack.get("tpr_at_fpr"), dict):
            levels |= {str(level) for level in attack["tpr_at_fpr"]}

    def order(level: str) -> tuple[int, float, str]:
        try:
            return (0, float(level), level)
        except ValueError:
            return (1, 0.0, level)
    return sorted(levels, key=order)


def _cut(data: bytes, size: int) -> str:
    if len(data) <= MAX_TEXT:
        return ""
    return (f"only the first {MAX_TEXT} of its {size} bytes are shown here: the rest is in the raw file, "
            "which is what leaves; read it whole before approving")


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
