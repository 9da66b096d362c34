"""What a table file carries beyond its cells: the ``embedded-data`` rule for Parquet files and XLSX
workbooks (figures: :mod:`.figures`).

A reviewer sees a table's cells. The same file can carry more, which leaves with it unseen: a
Parquet file's key-value metadata or footer fields no reader knows, extra parts of a workbook
(custom XML, comments, embedded objects, macros, relationship parts, a part name written twice),
shared strings no cell shows, XML comments. Each fails (a checker can approve it with a comment);
the gate never trusts a container's extra room. :func:`fail` and :func:`text_findings` serve the
figures' checks too.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from collections import Counter
from pathlib import Path

from . import content
from .result import Finding, Status

#: bytes of text a container may carry beyond its cells (titles, creator, software...)
MAX_EXTRA_BYTES = 4096
#: per column, bytes of Parquet schema metadata (pandas' and Arrow's descriptions of a column)
PARQUET_BYTES_PER_COLUMN = 1024
PARQUET_KEYS = frozenset({b"pandas", b"ARROW:schema"})

#: the parts of a workbook written by Excel, LibreOffice, openpyxl or pandas, and their size bound
#: (no printer settings: 16 KiB of binary no checker can read; no calculation chain: it lists the
#: cells holding formulas, which are refused; names are matched
#: whole, in ASCII: ``\d`` and ``\w`` also match other scripts' digits and letters,
#: and ``_rels/<any name>.rels`` let a workbook carry any number of 16 KiB parts nobody reads)
_XLSX_PARTS = [
    (re.compile(r"^\[Content_Types\]\.xml$"), 64 * 1024),
    (re.compile(r"^_rels/\.rels$"), 16 * 1024),
    (re.compile(r"^xl/_rels/workbook\.xml\.rels$"), 16 * 1024),
    (re.compile(r"^xl/worksheets/_rels/sheet[0-9]+\.xml\.rels$"), 4 * 1024),
    (re.compile(r"^docProps/(?:app|core)\.xml$"), MAX_EXTRA_BYTES),
    (re.compile(r"^xl/workbook\.xml$"), 16 * 1024),
    (re.compile(r"^xl/styles\.xml$"), 64 * 1024),
    (re.compile(r"^xl/theme/theme1\.xml$"), 64 * 1024),
    (re.compile(r"^xl/worksheets/sheet[0-9]+\.xml$"), None),
    (re.compile(r"^xl/sharedStrings\.xml$"), None),
]
_SI = re.compile(rb"<(?:\w+:)?si[\s>]")
_SHEET_PART = re.compile(r"^xl/worksheets/sheet[0-9]+\.xml$")
_SHEET_RELS_PART = re.compile(r"^xl/worksheets/_rels/sheet[0-9]+\.xml\.rels$")
_FONT = {"rPr", "b", "i", "u", "strike", "sz", "color", "rFont", "family", "scheme", "vertAlign", "charset",
         "outline", "shadow", "condense", "extend"}
#: the elements a sheet and its shared strings may hold: cells and how they look. Anything else
#: (formulas, validation lists, headers and footers, phonetic runs, extensions) carries text or
#: values a reader of the cells does not see.
_SHEET_ELEMENTS = frozenset({
    "worksheet", "sheetPr", "tabColor", "outlinePr", "pageSetUpPr", "dimension", "sheetViews", "sheetView",
    "pane", "selection", "sheetFormatPr", "cols", "col", "sheetData", "row", "c", "v", "is", "t", "r",
    "printOptions", "pageMargins", "pageSetup", "phoneticPr", "mergeCells", "mergeCell", "ignoredErrors",
    "ignoredError", "sst", "si"} | _FONT)

def fail(message: str) -> Finding:
    """A failure of the ``embedded-data`` rule."""
    return Finding("embedded-data", Status.FAIL, message)


def check_parquet(path: Path, columns: int) -> list[Finding]:
    """Key-value metadata of a Parquet file: only pandas' and Arrow's own keys, bounded, without
    identifiers."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path).metadata or {}
        schema = pq.read_schema(path)
    except Exception as exc:  # the table reader reports unreadable files
        return [fail(f"the Parquet metadata cannot be read ({type(exc).__name__})")]
    out = []
    others = sorted(k.decode("utf-8", "replace") for k in metadata if k not in PARQUET_KEYS)
    if others:
        out.append(fail(f"the Parquet file carries metadata a checker does not see ({', '.join(others[:5])}): "
                         "write the table without custom metadata"))
    fields = [f for f in schema if f.metadata]
    if fields:
        out.append(fail(f"column {fields[0].name!r} carries metadata a checker does not see"))
    size = sum(len(v) for v in metadata.values())
    bound = MAX_EXTRA_BYTES + PARQUET_BYTES_PER_COLUMN * max(columns, 1)
    if size > bound:
        out.append(fail(f"{size} bytes of Parquet metadata for {columns} columns (at most {bound}): data "
                         "hidden from the checker's view"))
    pandas_meta = metadata.get(b"pandas")
    if pandas_meta:
        try:
            attributes = json.loads(pandas_meta).get("attributes")
        except ValueError:
            attributes = None
        if attributes:
            out.append(fail("the Parquet file carries DataFrame.attrs, which a checker does not see: clear them"))
        if content.NIR.search(pandas_meta.decode("utf-8", "replace")):
            out.append(fail("the Parquet metadata holds a NIR-like number"))
        out += _pandas_metadata(pandas_meta, {f.name for f in schema})
    return out + _parquet_layout(path)


#: the keys pandas and pyarrow write in the ``pandas`` metadata (any other key is read by nobody)
_PANDAS_KEYS = frozenset({"index_columns", "column_indexes", "columns", "creator", "pandas_version", "attributes",
                          "name", "field_name", "pandas_type", "numpy_type", "metadata", "library", "version",
                          "encoding", "precision", "scale", "timezone", "unit", "ordered", "num_categories",
                          "kind", "start", "stop", "step"})
#: a string of the ``pandas`` metadata that is not a column's name (a type, a version, a time zone)
MAX_PANDAS_STRING = 40


def _pandas_metadata(raw: bytes, names: set[str]) -> list[Finding]:
    """pandas' description of the columns holds pandas' keys only, each column once, and short
    strings (names excepted, which the checker sees): 700 bytes of rows under a key of its own, or in
    a column's ``metadata``, passed within the size bound and were read by nobody."""
    try:
        meta = json.loads(raw)
    except ValueError:
        return [fail("the Parquet file's pandas metadata is not JSON")]
    if not isinstance(meta, dict) or len(meta.get("columns") or []) > len(names) or len(
            meta.get("column_indexes") or []) > 8:
        return [fail("the Parquet file's pandas metadata describes more than the file's columns")]
    stack = [meta]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            extra = sorted(set(item) - _PANDAS_KEYS)
            if extra:
                return [fail(f"the Parquet file's pandas metadata holds a key pandas does not write ({extra[0][:40]!r}): "
                              "data hidden from the checker's view")]
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and len(item) > MAX_PANDAS_STRING and item not in names:
            return [fail(f"the Parquet file's pandas metadata holds a {len(item)}-character string that is no "
                          "column's name: data hidden from the checker's view")]
    return []


def _parquet_layout(path: Path) -> list[Finding]:
    """The footer is what the reader parsed: a field no reader knows (every Thrift reader skips it)
    carried rows. Bytes between the column chunks and the footer are not checked here: polars
    writes its page index and DuckDB its Bloom filters there, whose offsets pyarrow does not expose
    (rewriting the file at release would close that room; see docs/output-checking.md)."""
    import io

    import pyarrow.parquet as pq

    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(size - 8, 0))
        tail = fh.read(8)
    if len(tail) < 8 or tail[4:] != b"PAR1":
        return [fail("the Parquet file does not end with its footer")]
    footer = struct.unpack("<I", tail[:4])[0]
    reserialised = io.BytesIO()
    pq.read_metadata(path).write_metadata_file(reserialised)
    if len(reserialised.getvalue()) != footer + 12:
        return [fail("the Parquet file's footer holds fields no reader knows: data hidden from the "
                     "checker's view (write it with pandas, polars or DuckDB)")]
    return []


def check_xlsx(path: Path, text_cells: int, shown: frozenset[str] = frozenset()) -> list[Finding]:
    """The parts of a workbook: the standard ones of one sheet, each once, within their size, and
    no shared string that is not one of the texts the checker is shown (``shown``: the sheet's text
    cells and headers), nor more of them than ``text_cells``."""
    out = []
    try:
        with zipfile.ZipFile(path) as archive:
            repeated = sorted(name for name, n in Counter(archive.namelist()).items() if n > 1)
            if repeated:  # a reader opens the last copy of a name: the others are read by nobody
                out.append(fail(f"the workbook holds {len(repeated)} part name(s) twice ({repeated[0][:80]}): "
                                 "data hidden from the checker's view"))
            if sum(1 for n in archive.namelist() if _SHEET_RELS_PART.fullmatch(n)) > 1:
                out.append(fail("the workbook holds the relationships of more than one sheet: one table, one sheet"))
            for member in archive.infolist():
                # fullmatch: "$" also matches before a final line feed, and a part named
                # "xl/sharedStrings.xml\n", which no reader opens, passed as the shared strings
                bound = bound_of(member.filename)
                if bound is False:
                    out.append(fail(f"the workbook holds a part a checker does not see ({member.filename}): "
                                     "save the table alone (pandas to_excel or sdc)"))
                elif bound is not None and member.file_size > bound:
                    out.append(fail(f"{member.filename} holds {member.file_size} bytes (at most {bound}): "
                                     "data hidden from the checker's view"))
            sheets = [n for n in archive.namelist() if _SHEET_PART.fullmatch(n)]
            if len(sheets) != 1:
                out.append(fail(f"the workbook holds {len(sheets)} worksheet parts: one table, one sheet (a sheet "
                                 "the workbook does not list is read by nobody)"))
            for part in archive.namelist():
                if bound_of(part) is not False and part.endswith((".xml", ".rels")):
                    out += _comments(archive, part)
                if part.endswith(".rels") and bound_of(part) is not False:
                    out += _relationships(archive, part)
            for part in sheets[:1] + ["xl/sharedStrings.xml"]:
                if part in archive.namelist():
                    out += _xml_elements(archive, part)
            if "docProps/core.xml" in archive.namelist():
                out += text_findings(" ".join(_xml_text(archive, "docProps/core.xml")))
            if "xl/styles.xml" in archive.namelist():
                out += _number_formats(archive)
            if "xl/sharedStrings.xml" in archive.namelist():
                strings = len(_SI.findall(archive.read("xl/sharedStrings.xml")))
                if strings > text_cells:
                    out.append(fail(f"the workbook stores {strings} strings but shows {text_cells} text cells: "
                                     "strings a checker does not see"))
                out += _unshown_strings(archive, shown)
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        out.append(fail(f"the workbook cannot be inspected ({type(exc).__name__})"))
    return out[:5]


def bound_of(part: str) -> int | None | bool:
    """The size bound of a standard workbook part (None: unbounded, checked otherwise), or False
    for a part that is not one. fullmatch: "$" also matches before a final line feed, and a part
    named "xl/sharedStrings.xml\n", which no reader opens, passed as the shared strings."""
    return next((b for pattern, b in _XLSX_PARTS if pattern.fullmatch(part)), False)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _comments(archive: zipfile.ZipFile, part: str) -> list[Finding]:
    """XML comments and processing instructions in a standard part: no reader shows them (the XML
    declaration is not one)."""
    import xml.etree.ElementTree as ET

    parser = ET.XMLPullParser(events=("comment", "pi"))
    with archive.open(part) as fh:
        while chunk := fh.read(1 << 16):
            try:
                parser.feed(chunk)
            except ET.ParseError as exc:
                return [fail(f"{part} is not well-formed XML ({exc})")]
            for _event, _item in parser.read_events():
                return [fail(f"{part} holds an XML comment or processing instruction, which a checker "
                              "does not see: save the table alone (pandas to_excel, sdc)")]
    return []


_RELATIONSHIP_ATTRIBUTES = frozenset({"Id", "Type", "Target", "TargetMode"})
_RELATIONSHIP_ID = re.compile(r"rId[0-9]{1,6}")
_RELATIONSHIP_TYPES = ("http://schemas.openxmlformats.org/", "http://schemas.microsoft.com/")


def _relationships(archive: zipfile.ZipFile, part: str) -> list[Finding]:
    """A relationships part holds relationships only, each to a part of the workbook: text, other
    elements or attributes, or targets outside the workbook would carry what no reader shows."""
    import posixpath
    import xml.etree.ElementTree as ET

    hidden = fail(f"{part} holds more than the workbook's relationships: data hidden from the checker's view")
    try:
        root = ET.fromstring(archive.read(part))
    except ET.ParseError as exc:
        return [fail(f"{part} is not well-formed XML ({exc})")]
    if _local(root.tag) != "Relationships" or (root.text or "").strip() or root.attrib:
        return [hidden]
    source = posixpath.dirname(posixpath.dirname(part))  # "xl/_rels/workbook.xml.rels" -> "xl"
    names = set(archive.namelist())
    for rel in root:
        target = rel.get("Target", "")
        resolved = posixpath.normpath(target[1:] if target.startswith("/") else posixpath.join(source, target))
        if (_local(rel.tag) != "Relationship" or len(rel) or (rel.text or "").strip() or (rel.tail or "").strip()
                or set(rel.attrib) - _RELATIONSHIP_ATTRIBUTES
                or not _RELATIONSHIP_ID.fullmatch(rel.get("Id", ""))
                or not rel.get("Type", "").startswith(_RELATIONSHIP_TYPES) or len(rel.get("Type", "")) > 200):
            return [hidden]
        if rel.get("TargetMode") == "External" or resolved not in names:
            return [fail(f"{part} points outside the workbook's parts ({target[:80]}): a link a checker "
                          "does not follow")]
    return []


#: texts pandas reads as a missing value (its default ``na_values``): shown as empty cells
_READ_AS_MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def _unshown_strings(archive: zipfile.ZipFile, shown: frozenset[str]) -> list[Finding]:
    """Shared strings that are none of the texts the checker is shown: as few strings as the sheet
    has text cells could still hold a whole file each, referenced by no cell."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(archive.read("xl/sharedStrings.xml"))
    except ET.ParseError as exc:
        return [fail(f"xl/sharedStrings.xml is not well-formed XML ({exc})")]
    unshown = []
    for item in root:
        if _local(item.tag) != "si":
            continue
        text = "".join(t.text or "" for t in item.iter() if _local(t.tag) == "t")  # as openpyxl reads it
        if text and text not in shown and text not in _READ_AS_MISSING:
            unshown.append(len(text))
    if not unshown:
        return []
    return [fail(f"the workbook stores {len(unshown)} string(s) that no cell or header shows (the first: "
                  f"{unshown[0]:,} characters): data hidden from the checker's view")]


def _xml_elements(archive: zipfile.ZipFile, part: str) -> list[Finding]:
    """Elements of a workbook part outside :data:`_SHEET_ELEMENTS` (a formula among them)."""
    import xml.etree.ElementTree as ET

    try:
        with archive.open(part) as fh:
            for _, element in ET.iterparse(fh, events=("start",)):
                name = _local(element.tag)
                if name == "f":
                    return [fail("cells hold formulas: a spreadsheet shows their results, which the gate does not "
                                  "read; save the values (pandas to_excel, sdc)")]
                if name not in _SHEET_ELEMENTS:
                    return [fail(f"{part} holds <{name}>, which a checker reading the cells does not see: save "
                                  "the table alone (pandas to_excel, sdc)")]
    except ET.ParseError as exc:
        return [fail(f"{part} is not well-formed XML ({exc})")]
    return []


#: custom number formats a workbook may define (a format can display any literal text)
MAX_NUMBER_FORMATS = 64
_FORMAT_LITERAL = re.compile(r'"([^"]*)"')
_FORMAT_ESCAPE = re.compile(r"\\(.)")


def _number_formats(archive: zipfile.ZipFile) -> list[Finding]:
    """Custom number formats: a format such as ``"185127512345678"`` shows its text in every cell
    it styles, whatever the value the gate reads."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(archive.read("xl/styles.xml"))
    except ET.ParseError as exc:
        return [fail(f"xl/styles.xml is not well-formed XML ({exc})")]
    codes = [e.get("formatCode", "") for e in root.iter() if _local(e.tag) == "numFmt"]
    if len(codes) > MAX_NUMBER_FORMATS:
        return [fail(f"the workbook defines {len(codes)} number formats (at most {MAX_NUMBER_FORMATS})")]
    literals = [text for code in codes for text in _FORMAT_LITERAL.findall(code) + _FORMAT_ESCAPE.findall(code)]
    if any(ch.isdigit() for text in literals for ch in text):
        return [fail("a number format displays literal digits instead of the cell's value: a spreadsheet "
                      "shows them, the gate reads the value")]
    return text_findings("\n".join(literals))


def _xml_text(archive: zipfile.ZipFile, part: str) -> list[str]:
    import xml.etree.ElementTree as ET

    try:
        return [t for t in ET.fromstring(archive.read(part)).itertext() if t.strip()]
    except ET.ParseError:
        return []


def text_findings(text: str) -> list[Finding]:
    """Literal tables, blobs and identifiers in the text an image carries."""
    from .code import embedded_data, identifiers

    found = embedded_data(text, "text inside the image") + identifiers(text, "text inside the image")
    return [Finding(rule, Status.FAIL if rule == "embedded-data" else status, message)
            for rule, status, message, _ in found][:3]
