"""Turn a staged file into something a checker can look at: a table with its failing cells marked,
an inline image, or text. Pure data for the template (which escapes everything).

Only for output checkers of the project (the page asks the service, which checks it again).
Anyone else gets :func:`redacted_file`: the file's metadata and its redacted findings, no bytes."""

from __future__ import annotations

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
    mode: str  #: table | image | pdf | text | none | redacted
    header: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, str, str]]] = field(default_factory=list)  #: (value, css class, tooltip)
    text: str = ""
    note: str = ""
    general: list[dict] = field(default_factory=list)  #: findings without a cell


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
    if file.kind == "text":
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)
        note = f"showing the first {MAX_TEXT} bytes" if len(data) > MAX_TEXT else ""
        return Rendered(file, "text", text=data[:MAX_TEXT].decode("utf-8", "replace"), note=note,
                        general=[f for f in general])
    return Rendered(file, "none", note="no preview for this type: download it to inspect", general=general)


def redacted_file(file) -> Rendered:
    """What a viewer who may not read the contents gets: no bytes, the redacted findings only
    (rule, status, location, the rule's fixed explanation: :func:`..views.build_redacted_check`)."""
    findings = [f for f in (file.check or {}).get("findings", []) if isinstance(f, dict)]
    return Rendered(file, "redacted", general=findings,
                    note="the contents are shown to the project's output checkers only; "
                         "once released, download the file from this page")
