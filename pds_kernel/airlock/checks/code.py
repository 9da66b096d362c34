"""Code export: ``.py .R .sql .sh .ipynb .qmd .Rmd`` leave as kind ``code``, read by a checker.

Publishing code is expected of researchers; what must not leave with it is data. The rules:

- ``max-size``: code files are small (:data:`MAX_CODE_BYTES`); a bigger one carries data;
- ``embedded-data``: a base64 (or hex) payload over :data:`MAX_BLOB_BYTES`, or a long literal
  table (:data:`MAX_LITERAL_ROWS` lines of numbers in a row, or one line of many numbers) fails;
- ``identifier``: NIR-like numbers, pseudonyms, SNDS person keys in the source fail;
- ``notebook-output``: a notebook should leave with its outputs stripped (``jupyter nbconvert
  --clear-output``); each output that remains is checked like the file it shows: text for
  identifiers (fail) and read by a checker (review), figures and tables go to review, and
  attachments or widget state count as embedded data;
- ``hidden-text``: characters a reader cannot see (:func:`.content.hidden_rules`), look-alike
  letters, blanks ending a line, in the source, the outputs or the metadata, and line endings of
  two kinds in the file; spaces written two ways (a space and a no-break space) or accents both
  composed and not in the file (a notebook: its sources and outputs together; red team 18): fail;
  and the prose of a program (its comments and strings, a notebook's markdown: :mod:`.program_text`)
  or a notebook's outputs writing apostrophes, quotes or dashes two ways in one context, or a
  typographic one in its code (red team 19), or a character both as itself and in a broken
  encoding (``é`` and ``Ã©``; red team 20C; in its strings since red team 21): fail;
- ``code``: every code file is read by a checker (review): the gate cannot tell what a program does.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from . import content, program_text, typography
from .result import MAX_FINDINGS_PER_RULE, Finding, Status

MAX_CODE_BYTES = 1024 * 1024
MAX_BLOB_BYTES = 4096
MAX_LITERAL_ROWS = 20
MAX_LITERAL_NUMBERS = 200

_BASE64 = re.compile(rf"[A-Za-z0-9+/]{{{MAX_BLOB_BYTES},}}={{0,2}}")
_HEXBLOB = re.compile(rf"[0-9A-Fa-f]{{{2 * MAX_BLOB_BYTES},}}")
_NUMBER = re.compile(r"(?<![A-Za-z_])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
#: one field of a literal row: a number, a quoted string or a bare word (NA, TRUE, None, F)
_FIELD = r"(?:-?\d[\d.eE+-]*|\"[^\"\n]{0,40}\"|'[^'\n]{0,40}'|[A-Za-z_][\w.]{0,20}|)"
#: a line of literal data: three fields or more separated by , ; tab or |, at least one a number
_DATA_ROW = re.compile(rf"^\s*[\[(c]?\(?\s*{_FIELD}(?:\s*[,;\t|]\s*{_FIELD}){{2,}}\s*[\])]?\s*[,;]?\s*$")
#: a line of base64 (or hex) text alone, as ``base64`` writes it (76 characters) in a here-document
_BLOB_LINE = re.compile(r"^\s*[\"']?([A-Za-z0-9+/]{16,}={0,2})[\"']?\s*[,+\\]?\s*$")
#: a line holding one or two bare numbers (a vector written one value a line)
_NUMBER_LINE = re.compile(r"^\s*[\[(]?\s*-?\d[\d.eE+-]*\s*(?:[,;]\s*-?\d[\d.eE+-]*\s*)?[\])]?\s*[,;]?\s*$")
#: lines of bare numbers in a row that make a literal vector
MAX_NUMBER_LINES = 50


_STRING = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'")


def _shape(line: str) -> str | None:
    """A line with its numbers and strings blanked out, when it holds two numbers or more: records
    written as dicts, named lists or calls (``{"age": 34, "cost": 4500},``) repeat one shape."""
    blanked = _STRING.sub("s", line.strip())
    if len(blanked) > 300 or len(_NUMBER.findall(blanked)) < 2:
        return None
    return _NUMBER.sub("0", blanked)


def embedded_data(text: str, where: str, blanks: bool = True) -> list[tuple[str, Status, str, int | None]]:
    """``blanks``: spaces ending a line fail too (not in outputs: R's ``summary`` prints them; the
    page writes them ``<U+0020>``)."""
    out = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        # the first line holding characters no one sees, look-alike letters or blanks at its end
        hidden = content.hidden_rules(line) + content.lookalike_rules(line)
        hidden += content.trailing_blank_rules(line) if blanks else []
        if hidden:
            out += [(rule, status, f"{where}: {message}", number) for rule, status, message in hidden]
            break
    compact = re.sub(r"\\\n|\"\s*\n\s*\"|'\s*\n\s*'", "", text)  # literals continued over lines
    for match in _BASE64.finditer(compact):
        size = len(match.group(0)) * 3 // 4
        out.append(("embedded-data", Status.FAIL, f"{where}: a base64 block of about {size} bytes: data or "
                                                   "files must leave as reviewed outputs, not inside code", None))
        break
    if _HEXBLOB.search(compact):
        out.append(("embedded-data", Status.FAIL, f"{where}: a hexadecimal block over {MAX_BLOB_BYTES} bytes", None))
    run = blob = bare = same = 0
    last = None
    for number, line in enumerate(text.splitlines(), start=1):
        if len(_NUMBER.findall(line)) > MAX_LITERAL_NUMBERS:
            out.append(("embedded-data", Status.FAIL, f"{where}: a line of more than {MAX_LITERAL_NUMBERS} numbers "
                                                       "(a literal table)", number))
            break
        match = _BLOB_LINE.match(line)
        blob = blob + len(match.group(1)) if match else 0
        if blob * 3 // 4 > MAX_BLOB_BYTES:
            out.append(("embedded-data", Status.FAIL, f"{where}: lines of base64 text over {MAX_BLOB_BYTES} bytes "
                                                       "(a file written into the code)", number))
            break
        bare = bare + 1 if _NUMBER_LINE.match(line) else 0
        if bare == MAX_NUMBER_LINES:
            out.append(("embedded-data", Status.FAIL, f"{where}: {MAX_NUMBER_LINES} lines of bare numbers in a row "
                                                       "(a vector of data written into the code)", number))
            break
        shape = _shape(line)
        same = same + 1 if shape is not None and shape == last else 0
        last = shape
        run = run + 1 if (_DATA_ROW.match(line) and _NUMBER.search(line)) or same else 0
        if run == MAX_LITERAL_ROWS:
            out.append(("embedded-data", Status.FAIL, f"{where}: {MAX_LITERAL_ROWS} lines of literal data in a row "
                                                       "(a table written into the code)", number))
            break
    return out


def identifiers(text: str, where: str, first_line: int = 1) -> list[tuple[str, Status, str, int | None]]:
    out = []
    for number, line in enumerate(text.splitlines(), start=first_line):
        for rule, status, message in content.identifier_rules(line):
            out.append((rule, status, f"{where}: {message}", number))
    return out


#: metadata a reviewer does not see on the page: at most this much text in all
MAX_METADATA_BYTES = 16 * 1024


def _strings(value, depth: int = 0):
    """Every string inside a JSON value (keys included)."""
    if depth > 20:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)


def _metadata(metadata, where: str) -> list[tuple[str, Status, str, int | None]]:
    """Data hidden in notebook or cell metadata, which the review page does not show: checked like
    source (identifiers, base64 blocks, literal tables), and bounded in size: its JSON, numbers
    included (a list of 3,000 numbers holds no string; red team 18B)."""
    if not metadata:
        return []
    text = "\n".join(_strings(metadata))
    found = embedded_data(text, where) + [(r, s, m, None) for r, s, m, _ in identifiers(text, where)]
    size = len(json.dumps(metadata, ensure_ascii=False).encode())  # numbers too, not only its strings
    if size > MAX_METADATA_BYTES:
        found.append(("embedded-data", Status.FAIL, f"{where}: {size} bytes of metadata (at most "
                                                     f"{MAX_METADATA_BYTES}): data hidden from the reviewer's view", None))
    return found


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _output_text(output: dict) -> tuple[str, list[str]]:
    """(the text an output shows, the rich kinds it carries: figure, table, data)."""
    kinds = []
    texts = []
    if output.get("output_type") == "stream":
        texts.append(content.ANSI_COLOUR.sub("", _source({"source": output.get("text", "")})))
    if output.get("output_type") == "error":
        texts.append(content.ANSI_COLOUR.sub("", "\n".join(str(x) for x in output.get("traceback", []))))
        texts.append(f"{output.get('ename', '')}: {output.get('evalue', '')}")
    data = output.get("data") or {}
    if isinstance(data, dict):
        for mime, value in data.items():
            value = "".join(value) if isinstance(value, list) else str(value)
            if mime == "image/svg+xml":
                kinds.append("figure")
                texts.append(value)  # SVG is text: it can carry the plotted data, checked as text
            elif mime.startswith("image/"):
                kinds.append("figure")
            elif mime == "text/html" and "<table" in value.lower():
                kinds.append("table")
                texts.append(value)
            elif mime.startswith("text/"):
                texts.append(value)
            else:
                kinds.append("data")
                texts.append(value)
    return "\n".join(texts), kinds


def _output_images(output: dict, where: str) -> list[tuple[str, Status, str, int | None]]:
    """A PNG or JPEG shown by an output is checked like a figure file: bytes outside its pixels."""
    from .figures import image_findings

    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    out = []
    for mime in ("image/png", "image/jpeg"):
        value = data.get(mime)
        if not value:
            continue
        value = "".join(value) if isinstance(value, list) else str(value)
        try:
            raw = base64.b64decode(value, validate=False)
        except ValueError:
            out.append(("embedded-data", Status.FAIL, f"{where}: an {mime} output that is not base64", None))
            continue
        out += [(f.rule, f.status, f"{where}: {f.message}", None) for f in image_findings(raw, mime.split("/")[1])]
    return out


def _language(metadata) -> str:
    """A notebook's language, lower case, from its kernel's metadata ("" when it says none)."""
    metadata = metadata if isinstance(metadata, dict) else {}
    for key, field in (("language_info", "name"), ("kernelspec", "language")):
        value = metadata.get(key)
        if isinstance(value, dict) and isinstance(value.get(field), str):
            return value[field].lower()
    return ""


def check_notebook(text: str) -> list[Finding]:
    try:
        notebook = json.loads(text)
    except ValueError as exc:
        return [Finding("file-type", Status.FAIL, f"this .ipynb is not a notebook (invalid JSON: {exc.msg})")]
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return [Finding("file-type", Status.FAIL, "this .ipynb is not a notebook (no list of cells)")]
    out: list[Finding] = []
    outputs = 0
    shown_texts = []  # the sources and outputs, judged together for look-alike signs
    output_texts = []  # the outputs' text, judged on every class of signs (the page shows it as a text)
    parts = program_text.Parts()  # the cells' comments (and markdown), strings and code
    language = _language(notebook.get("metadata"))
    for index, cell in enumerate(notebook["cells"], start=1):
        if not isinstance(cell, dict):
            continue
        where = f"cell {index}"
        source = _source(cell)
        shown_texts.append(source)
        parts += program_text.cell_parts(str(cell.get("cell_type", "")), source, language)
        found = embedded_data(source, where) + identifiers(source, where)
        if cell.get("attachments"):
            found.append(("embedded-data", Status.FAIL, f"{where}: attachments (files inside the notebook)", None))
        found += _metadata(cell.get("metadata"), f"{where} metadata")
        for n, output in enumerate(cell.get("outputs") or [], start=1):
            if not isinstance(output, dict):
                continue
            outputs += 1
            shown, kinds = _output_text(output)
            shown_texts.append(shown)
            output_texts.append(shown)
            label = f"{where}, output {n}"
            found += identifiers(shown, label) + embedded_data(shown, label, blanks=False) + _output_images(output, label)
            if content.DAY_DATE.search(shown):
                found.append(("day-date", Status.REVIEW, f"{label}: day-level date", None))
            for kind in kinds:
                found.append(("notebook-output", Status.REVIEW, f"{label}: a {kind} in the output: a checker "
                                                                 "must check it like the file it shows", None))
            if shown.strip() and not kinds:
                found.append(("notebook-output", Status.REVIEW, f"{label}: text output, read by a checker", None))
        for rule, status, message, line in found:
            out.append(Finding(rule, status, message, line=line))
    shown = "\n".join(shown_texts)
    out += [Finding(rule, status, f"cells and outputs: {message}")
            for rule, status, message in typography.sign_rules(shown, typography.IN_CODE)
            + content.normal_form_rules(shown)]
    out += [Finding(rule, status, f"cells: {message}") for rule, status, message in program_text.prose_rules(parts)]
    out += [Finding(rule, status, f"outputs: {message}")
            for rule, status, message in typography.sign_rules("\n".join(output_texts))]
    widgets = (notebook.get("metadata") or {}).get("widgets") if isinstance(notebook.get("metadata"), dict) else None
    if widgets:
        out.append(Finding("embedded-data", Status.FAIL, "notebook metadata holds widget state (data): clear it"))
    for rule, status, message, line in _metadata(notebook.get("metadata"), "notebook metadata"):
        out.append(Finding(rule, status, message, line=line))
    if outputs:
        out.append(Finding("notebook-output", Status.REVIEW, f"{outputs} output(s) left in the notebook: strip them "
                                                             "(jupyter nbconvert --clear-output) or a checker "
                                                             "reads each one"))
    return out


def check_code(path: Path, name: str, size: int) -> list[Finding]:
    """Every finding of a code file."""
    if size > MAX_CODE_BYTES:
        return [Finding("max-size", Status.FAIL, f"{size} bytes: a code file holds at most {MAX_CODE_BYTES} bytes "
                                                 "(strip notebook outputs; data leaves as reviewed tables)")]
    data = path.read_bytes()
    text = data.decode("utf-8", "replace")
    if Path(name).suffix.lower() == ".ipynb":
        findings = check_notebook(text)
    else:
        findings = [Finding(rule, status, message, line=line)
                    for rule, status, message, line in embedded_data(text, "source") + identifiers(text, "source")]
        parts = program_text.program_parts(text, name)
        findings += [Finding(rule, status, message) for rule, status, message in
                     typography.sign_rules(text, typography.IN_CODE) + content.normal_form_rules(text)
                     + (program_text.prose_rules(parts) if parts else [])]
    findings += [Finding(rule, status, message) for rule, status, message in
                 content.undecodable_rules(data) + content.line_ending_rules(text)]
    kept: dict[str, int] = {}
    out = []
    for finding in findings:
        kept[finding.rule] = kept.get(finding.rule, 0) + 1
        if kept[finding.rule] <= MAX_FINDINGS_PER_RULE:
            out.append(finding)
    out.append(Finding("code", Status.REVIEW, "code is read by a checker: the gate cannot tell what a program does"))
    return out
