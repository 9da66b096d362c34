"""More files crafted to get disclosive data past the gate's disclosure checks (issue #12, the
acceptance audit): identifiers split or dressed up, dates in other formats, a transposed
person-level table, percentages that give back small counts, totals under another name, data
hidden where a reviewer does not look (notebook metadata and outputs, Parquet metadata, extra
parts of a workbook, bytes after a PNG's end) and literal tables in R Markdown or shell scripts.
Each is checked for real by the gate's ``check_file`` and must not ``pass`` (files a checker
cannot see in full must ``fail`` or be refused). Thresholds as in the issue: 10 persons.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pandas as pd
import pytest
from disclosure_support import PROJECT, build_service, check, files, pdf_of

RNG = np.random.default_rng(1212)

PERSONS = 300


def _nirs(n: int) -> list[str]:
    return [f"{RNG.integers(1, 3)}{RNG.integers(40, 99):02d}{RNG.integers(1, 13):02d}{RNG.integers(1, 96):02d}"
            f"{RNG.integers(0, 1000):03d}{RNG.integers(0, 1000):03d}{RNG.integers(1, 98):02d}" for _ in range(n)]


# ---- identifiers --------------------------------------------------------------------------------
def test_nir_split_across_two_numeric_columns_is_refused(tmp_path):
    nirs = _nirs(PERSONS)
    frame = pd.DataFrame({"grp": [f"g{i}" for i in range(PERSONS)], "a": [int(x[:7]) for x in nirs],
                          "b": [int(x[7:]) for x in nirs]})
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": {"labels": ["grp"], "counts": ["a", "b"]}}})
    assert r.verdict == "refused" and r.rule_status["person-identifier"].value == "fail"


@pytest.mark.parametrize("style", ["groups of three", "dots", "dashes", "prefixed"])
def test_nir_dressed_up_as_text_is_refused(tmp_path, style):
    nirs = _nirs(30)
    dressed = {"groups of three": lambda x: " ".join(x[i:i + 3] for i in range(0, 15, 3)),
               "dots": lambda x: ".".join(x[i:i + 3] for i in range(0, 15, 3)),
               "dashes": lambda x: f"{x[0]}-{x[1:3]}-{x[3:5]}-{x[5:7]}-{x[7:10]}-{x[10:13]}-{x[13:]}",
               "prefixed": lambda x: f"ID{x}"}[style]
    frame = pd.DataFrame({"ref": [dressed(x) for x in nirs], "n": RNG.integers(20, 90, 30)})
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": {"labels": ["ref"], "counts": ["n"]}}})
    assert r.verdict == "refused" and r.rule_status["person-identifier"].value == "fail"


# ---- dates of birth and death in other formats ----------------------------------------------
@pytest.mark.parametrize("style", ["yyyymmdd integer", "dotted", "slashed ISO", "day column"])
def test_dates_of_birth_in_other_formats_are_refused(tmp_path, style):
    days = pd.to_datetime("1950-01-01") + pd.to_timedelta(RNG.choice(20000, 30, replace=False), unit="D")
    frame = {"yyyymmdd integer": pd.DataFrame({"date_naissance": days.strftime("%Y%m%d").astype(int)}),
             "dotted": pd.DataFrame({"dob": days.strftime("%d.%m.%Y")}),
             "slashed ISO": pd.DataFrame({"birth": days.strftime("%Y/%m/%d")}),
             "day column": pd.DataFrame({"birth_year": days.year, "birth_month": days.month,
                                         "birth_day": days.day})}[style]
    frame["n"] = RNG.integers(20, 90, 30)
    labels = [c for c in frame.columns if c != "n"]
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": {"labels": labels, "counts": ["n"]}}})
    assert r.verdict == "refused" and r.rule_status["exact-date"].value == "fail"


# ---- a transposed person-level table -------------------------------------------------------
def test_transposed_person_level_table_does_not_pass(tmp_path):
    persons = pd.DataFrame({"age": RNG.integers(18, 90, 400), "sex": RNG.choice([10, 20], 400),
                            "visits": RNG.integers(10, 40, 400), "cost": RNG.integers(10, 5000, 400)})
    wide = persons.T  # one column per person, headers 0..399
    wide.index.name = "variable"
    path_frame = wide.reset_index()
    declared = {"labels": ["variable"], "counts": [str(c) for c in wide.columns]}
    r = check(tmp_path, "t.csv", path_frame, context={"tables": {"t.csv": declared}})
    assert r.verdict != "pass" and "microdata" in r.rule_status


def test_a_table_with_more_columns_than_the_row_limit_is_refused(tmp_path):
    wide = pd.DataFrame(RNG.integers(10, 90, size=(3, 6_000)), columns=[f"p{i}" for i in range(6_000)])
    wide.insert(0, "variable", ["age", "sex", "cost"])
    r = check(tmp_path, "t.csv", wide)
    assert r.verdict == "refused" and r.rule_status["max-rows"].value == "fail"


# ---- percentages and totals that give back small counts ----------------------------------------
def test_percentages_of_a_published_count_that_reveal_3_persons_fail(tmp_path):
    data = b"region,persons,pct_hiv\nN,250,1.2\nS,400,10.5\n"  # 1.2 % of 250 = 3 persons
    declared = {"labels": ["region"], "counts": ["persons"], "magnitudes": {"pct_hiv": "percent"}}
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": declared}})
    assert r.verdict == "fail" and [(f.row, f.col) for f in r.findings if f.rule == "small-cell"] == [(0, 2)]


def test_proportions_whose_complement_reveals_2_persons_fail(tmp_path):
    data = b"region,persons,share_treated\nN,250,0.992\nS,400,0.5\n"  # 2 of 250 untreated
    declared = {"labels": ["region"], "counts": ["persons"], "magnitudes": {"share_treated": "proportion"}}
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": declared}})
    assert r.verdict == "fail" and r.rule_status["small-cell"].value == "fail"


def test_a_total_row_under_another_name_exceeding_its_cells_does_not_pass(tmp_path):
    data = b"sex,persons\nM,50\nF,60\nTotal general,113\n"
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": {"labels": ["sex"], "counts": ["persons"]}}})
    assert r.verdict != "pass" and "differencing" in r.rule_status


def test_negative_counts_hiding_small_ones_fail(tmp_path):
    data = b"region,persons\nN,-3\nS,400\n"
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": {"labels": ["region"], "counts": ["persons"]}}})
    assert r.verdict == "fail"


# ---- data where a reviewer does not look: notebooks, R Markdown, shell ---------------------------
def _notebook(cells: list, metadata: dict | None = None) -> bytes:
    return json.dumps({"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def _code_cell(source: str, outputs: list | None = None, metadata: dict | None = None) -> dict:
    return {"cell_type": "code", "source": source, "execution_count": 1, "metadata": metadata or {},
            "outputs": outputs or []}


PAYLOAD = base64.b64encode(RNG.bytes(9000)).decode()
ROWS = "\n".join(f"F,{RNG.integers(1940, 2000)},750{RNG.integers(10, 99)},{RNG.integers(0, 5000)}" for _ in range(40))


def test_notebook_hiding_a_payload_in_cell_metadata_fails(tmp_path):
    r = check(tmp_path, "a.ipynb", _notebook([_code_cell("x = 1", metadata={"tags": [], "blob": PAYLOAD})]))
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_notebook_hiding_a_table_in_its_own_metadata_fails(tmp_path):
    r = check(tmp_path, "a.ipynb", _notebook([_code_cell("x = 1")], metadata={"notes": ROWS}))
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_notebook_output_printing_person_rows_fails(tmp_path):
    output = {"output_type": "stream", "name": "stdout", "text": ROWS}
    r = check(tmp_path, "a.ipynb", _notebook([_code_cell("print(df.to_csv())", [output])]))
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_notebook_output_carrying_a_binary_payload_fails(tmp_path):
    output = {"output_type": "display_data", "metadata": {}, "data": {"application/octet-stream": PAYLOAD}}
    r = check(tmp_path, "a.ipynb", _notebook([_code_cell("show()", [output])]))
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_rmarkdown_with_an_embedded_csv_block_fails(tmp_path):
    source = f"---\ntitle: x\n---\n\n```{{r}}\nd <- read.csv(text = '\nsex,year,zip,cost\n{ROWS}\n')\n```\n"
    r = check(tmp_path, "report.Rmd", source.encode())
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_python_list_of_rows_starting_with_text_fails(tmp_path):
    rows = "\n".join(f"    ('F', {RNG.integers(1940, 2000)}, {RNG.integers(0, 5000)})," for _ in range(40))
    r = check(tmp_path, "rebuild.py", f"rows = [\n{rows}\n]\n".encode())
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


@pytest.mark.parametrize("width", [76, 24], ids=["base64-76-columns", "base64-in-short-lines"])
def test_shell_heredoc_of_base64_lines_fails(tmp_path, width):
    lines = "\n".join(PAYLOAD[i:i + width] for i in range(0, len(PAYLOAD), width))
    r = check(tmp_path, "unpack.sh", f"base64 -d > data.csv <<'EOF'\n{lines}\nEOF\n".encode())
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


# ---- tables and figures carrying more than their cells ----------------------------------------
def test_parquet_with_microdata_in_its_metadata_fails(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"region": ["N", "S"], "persons": [120, 230]})
    table = table.replace_schema_metadata({b"notes": ("sex,year,zip,cost\n" + ROWS).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    declared = {"labels": ["region"], "counts": ["persons"]}
    r = check(tmp_path, "t.parquet", buffer.getvalue(), context={"tables": {"t.parquet": declared}})
    assert r.verdict in {"fail", "refused"} and "embedded-data" in r.rule_status


def _xlsx_with(extra: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"region": ["N", "S"], "persons": [120, 230]}).to_excel(buffer, index=False, engine="openpyxl")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        for name, data in extra.items():
            dst.writestr(name, data)
    return out.getvalue()


def test_workbook_with_an_extra_part_holding_microdata_fails(tmp_path):
    data = _xlsx_with({"customXml/item1.xml": f"<rows>{ROWS}</rows>".encode()})
    declared = {"labels": ["region"], "counts": ["persons"]}
    r = check(tmp_path, "t.xlsx", data, context={"tables": {"t.xlsx": declared}})
    assert r.verdict in {"fail", "refused"} and "embedded-data" in r.rule_status


@pytest.mark.parametrize("part", ["xl/sharedStrings.xml\n", "xl/worksheets/sheet1.xml\n", "xl/calcChain.xml\n"])
def test_workbook_with_a_standard_part_name_and_a_line_feed_fails(tmp_path, part):
    """A part named like a standard one plus a line feed: no reader opens it, and a pattern ending
    in ``$`` matched it as the standard part (the shared strings and sheets have no size bound)."""
    data = _xlsx_with({part: f"<sst><si><t>{ROWS}</t></si></sst>".encode()})
    declared = {"labels": ["region"], "counts": ["persons"]}
    r = check(tmp_path, "t.xlsx", data, context={"tables": {"t.xlsx": declared}})
    assert r.verdict in {"fail", "refused"} and "embedded-data" in r.rule_status


def _xlsx_edited(change) -> bytes:
    """pandas' workbook of the table, each part passed through ``change(name, data)``, which returns
    the (name, data) pairs to write in its place."""
    buffer = io.BytesIO()
    pd.DataFrame({"region": ["N", "S"], "persons": [120, 230]}).to_excel(buffer, index=False, engine="openpyxl")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            for name, data in change(item.filename, src.read(item.filename)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # zipfile warns about a repeated name: that is the attack
                    dst.writestr(name, data)
    return out.getvalue()


def _shared_strings_workbook(frame: pd.DataFrame) -> bytes:
    """``frame`` saved as Excel saves text: each text cell a reference into xl/sharedStrings.xml
    (openpyxl writes inline strings), with its relationship and content type."""
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False, engine="openpyxl")
    strings: list[str] = []

    def shared(match) -> str:
        text = html.unescape(match.group(2))
        if text not in strings:
            strings.append(text)
        return f'<c r="{match.group(1)}" t="s"><v>{strings.index(text)}</v></c>'

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(r'<c r="([A-Z]+[0-9]+)" t="inlineStr"><is><t[^>]*>(.*?)</t></is></c>', shared,
                              data.decode()).encode()
            elif item.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", b'<Relationship Id="rId9" Type="http://schemas.openxml'
                                    b'formats.org/officeDocument/2006/relationships/sharedStrings" '
                                    b'Target="sharedStrings.xml"/></Relationships>')
            elif item.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="'
                                    b'application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"'
                                    b"/></Types>")
            dst.writestr(item, data)
        items = "".join(f'<si><t xml:space="preserve">{html.escape(s)}</t></si>' for s in strings)
        dst.writestr("xl/sharedStrings.xml", '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/'
                     f'main" count="{len(strings)}" uniqueCount="{len(strings)}">{items}</sst>')
    return out.getvalue()


def test_workbook_with_shared_strings_as_excel_writes_them_passes(tmp_path):
    """The checks of shared strings refuse none that a cell shows: a missing value written "NA" (read
    as an empty cell), an escape sequence "_x000D_" (read as written), spaces kept."""
    frame = pd.DataFrame({"region": ["N", "S", "E"], "note": ["NA", "line_x000D_break", "  spaced "],
                          "persons": [120, 230, 310]})
    data = _shared_strings_workbook(frame)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert b"_x000D_" in archive.read("xl/sharedStrings.xml") and b'"s"' in archive.read("xl/worksheets/sheet1.xml")
    declared = {"labels": ["region", "note"], "counts": ["persons"]}
    r = check(tmp_path, "t.xlsx", data, context={"tables": {"t.xlsx": declared}})
    assert "embedded-data" not in r.rule_status, r.rule_status


_HIDDEN_RELS = f"<Relationships>{ROWS}</Relationships>".encode()
_EXTERNAL = ('<Relationship Id="rId99" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
             f'hyperlink" Target="https://example.org/?rows={ROWS.replace(chr(10), ";")}" TargetMode="External"/>')
WORKBOOK_ATTACKS = {
    # any number of 16 KiB relationship parts under any name: the pattern took "_rels/<anything>.rels"
    "twenty extra relationship parts": lambda name, data: [(name, data)] + (
        [(f"_rels/part{i}.rels", _HIDDEN_RELS) for i in range(20)] if name == "_rels/.rels" else []),
    # \\d matched other scripts' digits: sheet\u0661 is a sheet rels part no reader opens
    "a sheet's relationships named with an Arabic-Indic digit": lambda name, data: [(name, data)] + (
        [("xl/worksheets/_rels/sheet\u0661.xml.rels", _HIDDEN_RELS)] if name == "_rels/.rels" else []),
    "a sheet's relationships part holding rows": lambda name, data: [(name, data)] + (
        [("xl/worksheets/_rels/sheet1.xml.rels", _HIDDEN_RELS)] if name == "_rels/.rels" else []),
    "an external link carrying rows": lambda name, data: [(name, data.replace(
        b"</Relationships>", _EXTERNAL.encode() + b"</Relationships>") if name == "xl/_rels/workbook.xml.rels" else data)],
    # a reader opens the last copy of a name: the first one is read by nobody
    "a part name written twice": lambda name, data: (
        [(name, f"<sst><si><t>{ROWS}</t></si></sst>".encode())] if name == "xl/workbook.xml" else []) + [(name, data)],
    # XML comments are dropped by every reader, in any standard part (64 KiB of theme)
    "a comment in the theme carrying rows": lambda name, data: [(name, data.replace(
        b"</a:theme>", f"<!-- {ROWS} --></a:theme>".encode()) if name == "xl/theme/theme1.xml" else data)],
    # a calculation chain lists formula cells, and formulas are refused: it was allowed 1 MiB
    "a calculation chain": lambda name, data: [(name, data)] + (
        [("xl/calcChain.xml", f"<calcChain>{ROWS}</calcChain>".encode())] if name == "xl/workbook.xml" else []),
    # 16 KiB of binary that Excel writes when printing was set up, which no checker can read
    "printer settings carrying rows": lambda name, data: [(name, data)] + (
        [("xl/printerSettings/printerSettings1.bin", ROWS.encode())] if name == "xl/workbook.xml" else []),
    # as few strings as the sheet has text cells, but referenced by no cell
    "a shared string no cell shows": lambda name, data: [(name, data)] + (
        [("xl/sharedStrings.xml", f'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                                  f"<si><t>{ROWS}</t></si></sst>".encode())] if name == "xl/workbook.xml" else []),
}


@pytest.mark.parametrize("attack", sorted(WORKBOOK_ATTACKS))
def test_workbook_hiding_rows_where_no_reader_looks_fails(tmp_path, attack):
    declared = {"labels": ["region"], "counts": ["persons"]}
    (tmp_path / "plain").mkdir()
    (tmp_path / "attack").mkdir()
    plain = check(tmp_path / "plain", "t.xlsx", _xlsx_edited(lambda name, data: [(name, data)]),
                  context={"tables": {"t.xlsx": declared}})
    assert "embedded-data" not in plain.rule_status  # the workbook itself passes
    r = check(tmp_path / "attack", "t.xlsx", _xlsx_edited(WORKBOOK_ATTACKS[attack]),
              context={"tables": {"t.xlsx": declared}})
    assert r.verdict in {"fail", "refused"} and "embedded-data" in r.rule_status


def _chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(extra_chunks: bytes = b"", trailer: bytes = b"") -> bytes:
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    image = _chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    return b"\x89PNG\r\n\x1a\n" + header + extra_chunks + image + _chunk(b"IEND", b"") + trailer


@pytest.mark.parametrize("where", ["after IEND", "text chunk"])
def test_figure_carrying_microdata_outside_its_pixels_fails(tmp_path, where):
    rows = ("sex,year,zip,cost\n" + ROWS).encode()
    body = b"Comment\x00" + rows
    data = _png(trailer=rows) if where == "after IEND" else _png(_chunk(b"tEXt", body))
    (tmp_path / "fig.csv").write_bytes(b"region,persons\nN,120\n")
    r = check(tmp_path, "fig.png", data, other_files=["fig.csv"])
    assert r.verdict in {"fail", "refused"} and "embedded-data" in r.rule_status


def _check_workbook(tmp_path, book):
    """The gate's check of openpyxl ``book``, saved as t.xlsx and declared as persons by region."""
    buffer = io.BytesIO()
    book.save(buffer)
    declared = {"labels": ["region"], "counts": ["persons"]}
    return check(tmp_path, "t.xlsx", buffer.getvalue(), context={"tables": {"t.xlsx": declared}})


def test_workbook_cell_holding_a_formula_fails(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in (["region", "persons"], ["N", 120], ["S", "=1+2"]):  # read as empty, shown as 3
        sheet.append(row)
    r = _check_workbook(tmp_path, book)
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


@pytest.mark.parametrize("cell", ["1 234", "3 (a)"])
def test_a_count_column_written_as_text_is_not_taken_for_a_category(tmp_path, cell):
    # "1 234" (a French thousands separator) or a footnote made the column text, hence a label
    data = f"region,n,m\nN,{cell},50\nS,3,60\n".encode()
    declared = {"labels": ["region"], "counts": ["m"]}
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": declared}})
    assert r.verdict != "pass"


def test_person_rows_under_a_column_numbering_them_do_not_pass(tmp_path):
    frame = pd.DataFrame({"row": [f"r{i}" for i in range(PERSONS)], "age": RNG.integers(18, 90, PERSONS),
                          "cost": RNG.integers(10, 5000, PERSONS)})
    declared = {"labels": ["row"], "counts": ["age", "cost"]}
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": declared}})
    assert r.verdict != "pass" and "microdata" in r.rule_status


# ---- differencing the gate must see: renamed columns, two populations in one request -----------
def _released(service, declared: dict, data: bytes) -> str:
    view = service.create("alice", PROJECT, files(("t.csv", data)), "all adults", declared)
    for who in ("olga", "omar"):
        service.review(who, view.id, {0: {"decision": "approve"}})
    service.release("olga", view.id)
    return view.id


def test_renaming_the_columns_of_a_released_table_does_not_hide_a_difference(runtime):
    service, _ = build_service(runtime)
    first = _released(service, {"tables": {"t.csv": {"labels": ["region"], "counts": ["persons"]}}},
                      b"region,persons\nN,120\nS,230\nE,310\n")
    renamed = {"tables": {"t.csv": {"labels": ["reg"], "counts": ["n_adults"]}}}
    again = service.create("alice", PROJECT, files(("t.csv", b"reg,n_adults\nN,117\nS,230\nE,310\n")), "over 19",
                           renamed)
    assert again.files[0].check_status == "review"
    message = next(x["message"] for x in service.get_request("olga", again.id).files[0].check["findings"]
                   if x["rule"] == "differencing")
    assert first in message and again.id in message


def test_two_populations_in_one_request_are_compared(runtime):
    service, _ = build_service(runtime)
    declared = {"tables": {name: {"labels": ["region"], "counts": ["persons"]} for name in ("all.csv", "over19.csv")}}
    view = service.create("alice", PROJECT, files(("all.csv", b"region,persons\nN,120\nS,230\nE,310\n"),
                                                  ("over19.csv", b"region,persons\nN,117\nS,230\nE,310\n")),
                          "two tables", declared)
    assert [f.check_status for f in view.files] == ["review", "review"]
    checked = service.get_request("olga", view.id).files
    assert all(f.check["rules"].get("differencing") == "review" for f in checked)


# ---- more places for records: nested Parquet cells, images and SVG in outputs, vectors -----------
@pytest.mark.parametrize("column", [[[34, 1, 4500], [51, 2, 120]], [{"age": 34, "cost": 4500}, {"age": 51, "cost": 12}]])
def test_parquet_cells_holding_lists_or_records_fail(tmp_path, column):
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"region": ["N", "S"], "persons": [120, 230], "x": column}), buffer)
    declared = {"labels": ["region"], "counts": ["persons"]}
    r = check(tmp_path, "t.parquet", buffer.getvalue(), context={"tables": {"t.parquet": declared}})
    assert r.verdict == "fail" and r.rule_status["table"].value == "fail"


def test_notebook_image_output_carrying_rows_after_its_end_fails(tmp_path):
    image = base64.b64encode(_png(trailer=ROWS.encode())).decode()
    output = {"output_type": "display_data", "metadata": {}, "data": {"image/png": image, "text/plain": "<Figure>"}}
    r = check(tmp_path, "a.ipynb", _notebook([_code_cell("plot()", [output])]))
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_notebook_svg_output_carrying_rows_fails(tmp_path):
    svg = f"<svg xmlns='http://www.w3.org/2000/svg'><desc>\n{ROWS}\n</desc></svg>"
    output = {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": svg, "text/plain": "<Figure>"}}
    r = check(tmp_path, "a.ipynb", _notebook([_code_cell("plot()", [output])]))
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_r_vector_written_one_value_a_line_fails(tmp_path):
    values = ",\n".join(f"  {RNG.integers(0, 5000)}" for _ in range(120))
    r = check(tmp_path, "costs.R", f"cost <- c(\n{values}\n)\n".encode())
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_notebook_output_labelled_png_holding_other_bytes_fails(tmp_path):
    # the review page would show a broken image; the bytes are a table
    output = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": base64.b64encode(ROWS.encode()).decode(), "text/plain": "<Figure>"}}
    r = check(tmp_path, "a.ipynb", _notebook([_code_cell("plot()", [output])]))
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_a_person_level_file_sent_as_a_resubmission_is_refused_and_not_staged(runtime):
    from pds_kernel.airlock.staging import RefusedFiles, request_dir

    service, _ = build_service(runtime)
    declared = {"tables": {"t.csv": {"labels": ["region"], "counts": ["persons"]}}}
    view = service.create("alice", PROJECT, files(("t.csv", b"region,persons\nN,120\nS,230\n")), "why", declared)
    for who in ("olga", "omar"):
        service.review(who, view.id, {0: {"decision": "request_changes", "comment": "by age"}})
    before = sorted(p.name for p in request_dir(runtime.settings.paths.staging, PROJECT, view.id).iterdir())
    persons = pd.DataFrame({"c1": RNG.integers(18, 90, 6_000), "c2": RNG.integers(0, 5000, 6_000)})
    with pytest.raises(RefusedFiles, match="6000 rows"):
        service.resubmit("alice", view.id, files(("t.csv", persons.to_csv(index=False).encode())))
    after = sorted(p.name for p in request_dir(runtime.settings.paths.staging, PROJECT, view.id).iterdir())
    assert after == before and service.get_request("olga", view.id).round == 1


@pytest.mark.parametrize("element", ["validation list", "header", "core properties"])
def test_workbook_hiding_rows_in_parts_of_the_sheet_nobody_reads_fails(tmp_path, element):
    import openpyxl
    from openpyxl.worksheet.datavalidation import DataValidation

    book = openpyxl.Workbook()
    sheet = book.active
    for row in (["region", "persons"], ["N", 120], ["S", 230]):
        sheet.append(row)
    hidden = ROWS.replace("\n", ";")
    if element == "validation list":
        sheet.add_data_validation(DataValidation(type="list", formula1=f'"{hidden[:250]}"'))
    elif element == "header":
        sheet.oddHeader.center.text = hidden[:250]
    else:
        book.properties.description = ROWS
    r = _check_workbook(tmp_path, book)
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_records_packed_into_labels_with_a_constant_count_do_not_pass(tmp_path):
    labels = [f"F|{RNG.integers(1940, 2000)}|750{RNG.integers(10, 99)}|{i}" for i in range(PERSONS)]
    frame = pd.DataFrame({"who": labels, "n": 10})  # one person a row, every count raised to the threshold
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": {"labels": ["who"], "counts": ["n"]}}})
    assert r.verdict != "pass" and r.rule_status["microdata"].value == "review"


def test_person_rows_with_a_constant_added_to_every_count_do_not_pass(tmp_path):
    frame = pd.DataFrame({"sex": RNG.choice(["F", "M"], PERSONS), "age_group": RNG.choice(["18-39", "40-64", "65+"],
                                                                                           PERSONS),
                          "region": [f"R{i:03d}" for i in RNG.permutation(PERSONS)], "n": 10})
    declared = {"labels": ["sex", "age_group", "region"], "counts": ["n"]}
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": declared}})
    assert r.verdict != "pass" and "microdata" in r.rule_status


def test_values_in_a_field_the_header_does_not_name_fail(tmp_path):
    # one more field per row than the header: pandas makes it the index, which no rule read
    data = b"region,persons\n185127512345678,N,120\n295039912345612,S,230\n"
    declared = {"labels": ["region"], "counts": ["persons"]}
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": declared}})
    assert r.verdict == "fail" and r.rule_status["table"].value == "fail"


@pytest.mark.parametrize("hiding", ["object stream", "escaped name"])
def test_pdf_figure_with_an_attached_file_fails(tmp_path, hiding):
    rows = ("sex,year,zip,cost\n" + ROWS).encode()
    attached = b"<< /Length %d >>\nstream\n" % len(rows) + rows + b"\nendstream"
    filespec = b"<< /Type /Filespec /F (rows.csv) /EF << /F 5 0 R >> >>"
    if hiding == "object stream":  # the dictionaries that name the file, compressed
        packed = zlib.compress(b"4 0 " + filespec)
        names = b"<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length %d >>\nstream\n" % len(packed) + \
            packed + b"\nendstream"
    else:
        names = filespec.replace(b"/EF", b"/E#46").replace(b"/Filespec", b"/Filesp#65c")
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"
    data = pdf_of([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page,
                   names, attached])
    r = check(tmp_path, "fig.pdf", data, other_files=["fig.csv"])
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_shares_of_the_total_that_give_back_a_suppressed_row_do_not_pass(tmp_path):
    # 40 is 4.42 % of 905: the shares give the total, the total minus the cells gives S's 5
    data = b"region,persons,pct\nN,40,4.42\nS,*,*\nE,300,33.15\nW,560,61.88\n"
    declared = {"labels": ["region"], "counts": ["persons"], "magnitudes": {"pct": "percent"}}
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": declared}})
    assert r.verdict != "pass" and [f.row for f in r.findings if f.rule == "differencing"] == [1]


def test_survival_curve_whose_steps_are_single_events_fails(tmp_path):
    # the events are not published, but each step of S(t) with its number at risk gives them back
    rows, survival, at_risk = [], 1.0, 500
    for t in range(1, 6):
        survival *= 1 - 2 / at_risk
        rows.append(f"{t},{at_risk},{survival:.6f}")
        at_risk -= 2
    data = ("month,at_risk,survival\n" + "\n".join(rows) + "\n").encode()
    declared = {"labels": ["month"], "counts": ["at_risk"], "magnitudes": {"survival": "survival"}}
    r = check(tmp_path, "km.csv", data, context={"tables": {"km.csv": declared}})
    assert r.verdict == "fail" and [(f.row, f.col) for f in r.findings if f.rule == "small-cell"] == [(0, 2)]


def test_a_category_of_dates_written_yyyymmdd_does_not_pass(tmp_path):
    days = (pd.to_datetime("2020-01-01") + pd.to_timedelta(np.arange(30) * 3, unit="D")).strftime("%Y%m%d")
    frame = pd.DataFrame({"d": days.astype(int), "n": RNG.integers(20, 90, 30)})
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": {"labels": ["d"], "counts": ["n"]}}})
    assert r.verdict == "review" and r.rule_status["day-date"].value == "review"


def test_png_colour_profile_that_is_rows_fails(tmp_path):
    data = _png(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(("sex,year,zip,cost\n" + ROWS).encode())))
    r = check(tmp_path, "fig.png", data, other_files=["fig.csv"])
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_jpeg_with_rows_in_application_segments_fails(tmp_path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    image = buffer.getvalue()
    rows = ("sex,year,zip,cost\n" + ROWS * 30).encode()
    segments = b"".join(b"\xff\xe4" + struct.pack(">H", len(part) + 2) + part
                        for part in (rows[i:i + 60_000] for i in range(0, len(rows), 60_000)))
    r = check(tmp_path, "fig.jpg", image[:2] + segments + image[2:], other_files=["fig.csv"])
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_records_written_as_dicts_in_a_script_fail(tmp_path):
    rows = "\n".join(f'    {{"sex": "F", "born": {RNG.integers(1940, 2000)}, "cost": {RNG.integers(0, 5000)}}},'
                     for _ in range(40))
    r = check(tmp_path, "rebuild.py", f"rows = [\n{rows}\n]\n".encode())
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_workbook_number_format_displaying_other_digits_fails(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in (["region", "persons"], ["N", 120], ["S", 230]):
        sheet.append(row)
    sheet["B3"].number_format = '"3"'  # the gate reads 230, a spreadsheet shows 3
    r = _check_workbook(tmp_path, book)
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_workbook_with_a_worksheet_part_it_does_not_list_fails(tmp_path):
    rows = "".join(f"<row><c t='inlineStr'><is><t>{line}</t></is></c></row>" for line in ROWS.splitlines())
    orphan = f"<worksheet xmlns='http://schemas.openxmlformats.org/spreadsheetml/2006/main'><sheetData>{rows}" \
             "</sheetData></worksheet>"
    data = _xlsx_with({"xl/worksheets/sheet2.xml": orphan.encode()})  # pandas reads the listed sheet only
    declared = {"labels": ["region"], "counts": ["persons"]}
    r = check(tmp_path, "t.xlsx", data, context={"tables": {"t.xlsx": declared}})
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"
