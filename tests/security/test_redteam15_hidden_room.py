"""Red team, fifteenth round (15B): a hidden room in exported files.

A researcher carries pseudonymised identifiers or rows out inside a file the checker approves
without seeing them. Every attack is submitted through the gate's real service (staging, the
rebuild of figures and Parquet files, the checks) and, where the page matters, read on the real
review page; each asserts that the payload does not leave unseen: the copy that would be released
does not hold it (the same bytes as the copy of the file without it), or the gate refuses the
file, or the checks fail it with a reason the checker reads, or the page shows it.

44 attempts and 2 controls; 23 got through before their fix:

- PNG (7: text, compressed text, international text, EXIF and private chunks, bytes after IEND,
  a second image stream) and PDF (9: an attached file, JavaScript, an incremental update hiding
  the first revision, Info and XMP metadata, an annotation's text, text in render mode 3, white
  on white, outside the page): none got through, the copy rebuilt from pixels leaves each out
  (ADR 10), and the checks name what the submitted PNG held.
- tables (13): Parquet metadata and later row groups, identifiers past the 500th row or 60th
  column, and Arrow or Feather files did not get through; codes past what the page shows (2) were
  judged by the rules alone, which cannot tell a code from a category: now ``preview`` fails
  and the page names the rows and columns it did not show. A CSV leaves as submitted, and the
  page showed the numbers pandas read: ``0120``, ``+120``, ``1.2e2``, blanks around a number or a
  category, blank lines and mixed line endings (7) all got through; now the page shows each cell as
  written and the rest fails ``hidden-text``.
- text steganography (14): look-alike letters (Cyrillic and Greek in Latin words, in a text,
  Markdown, a program, a cell and a header, and a word wholly of look-alikes, 6), spaces or tabs
  ending lines (of a text, Markdown, a program and a notebook's cell, 5) and mixed line endings (2):
  all got through; now ``hidden-text`` fails, and the page writes each as ``<U+XXXX>`` (blanks ending
  an output's lines are shown, not failed: R prints them).
- the staging disk (1): one author submitting the same file again and again, or resubmitting,
  staged without bound (imports had a daily bound, exports none): now
  ``airlock.export_max_bytes_per_day``.
"""

from __future__ import annotations

import html
import io
import struct
import zlib

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from disclosure_support import pdf_of
from gate_support import PROJECT, files
from PIL import Image
from redteam13_support import gate13_fixture  # noqa: F401  (fixture)

from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.errors import InvalidInput

SECRET = b"ZZQHIDDEN K7QX2M9PLA W4RT8ZB1QE"  #: pseudonyms in a code the identifier rules do not know
TABLE = b"region,persons\nN,120\nS,230\n"


def rules(view, index: int = 0, status: str | None = None) -> set[str]:
    return {f["rule"] for f in view.files[index].check.get("findings", []) if status in (None, f["status"])}


def page_of(gate, view, who: str = "olga") -> str:
    r = gate.browser(who).get(gate.base + f"requests/{view.id}", timeout=60)
    assert r.status_code == 200
    return html.unescape(r.text)


def submit(gate, *items: tuple[str, bytes], author: str = "alice"):
    return gate.service.create(author, PROJECT, files(*items), "Figure 2 of the paper", {"notebook": "fig.ipynb"})


def released_copy(gate, view, index: int) -> bytes:
    """The bytes a checker approves and the release writes (the rebuilt copy of a figure or Parquet file)."""
    _, path = gate.service.open_staged("olga", view.id, index)
    return path.read_bytes()


_PLAIN: dict[str, bytes | None] = {}


def plain_copy(gate, name: str, data: bytes) -> bytes | None:
    """The copy of the plain figure (rebuilt once per module: each rebuild takes a second)."""
    if name not in _PLAIN:
        _PLAIN[name] = copy_or_refused(gate, name, data)[0]
    return _PLAIN[name]


def copy_or_refused(gate, name: str, data: bytes) -> tuple[bytes | None, object]:
    """(the copy that would leave, the view), or (None, None) when the gate refuses the file."""
    table = name.rsplit(".", 1)[0] + ".csv"
    try:
        view = submit(gate, (name, data), (table, TABLE))
    except RefusedFiles:
        return None, None
    return released_copy(gate, view, 0), view


# ---- 1. PNG ----------------------------------------------------------------------------------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_with(extra: bytes = b"", tail: bytes = b"", idat: bytes | None = None) -> bytes:
    """The plain PNG with ``extra`` chunks after its header, ``tail`` after IEND, ``idat`` added after its IDAT."""
    data = _png()
    end = data.rfind(b"IEND") - 4
    body = data[:33] + extra + data[33:end]
    if idat is not None:
        body += _chunk(b"IDAT", idat)
    return body + data[end:] + tail


PNG_ATTACKS = {
    "a tEXt chunk": lambda: _png_with(_chunk(b"tEXt", b"Comment\x00" + SECRET)),
    "a zTXt chunk": lambda: _png_with(_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(SECRET))),
    "an iTXt chunk": lambda: _png_with(_chunk(b"iTXt", b"Comment\x00\x00\x00en\x00Comment\x00" + SECRET)),
    "an eXIf chunk": lambda: _png_with(_chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08" + SECRET)),
    "a private chunk": lambda: _png_with(_chunk(b"prVt", SECRET)),
    "bytes after IEND": lambda: _png_with(tail=SECRET),
    "a second image stream": lambda: _png_with(idat=zlib.compress(SECRET * 40)),
}


@pytest.mark.parametrize("attack", sorted(PNG_ATTACKS))
def test_png_payload_never_leaves(gate13, attack):
    """What leaves is the PNG rebuilt from its pixels: the same bytes as the plain figure's copy."""
    plain = plain_copy(gate13, "fig.png", _png())
    crafted, view = copy_or_refused(gate13, "fig.png", PNG_ATTACKS[attack]())
    assert crafted is None or crafted == plain, attack
    if view is not None and attack != "a second image stream":  # the checker is told what was submitted
        assert rules(view, status="fail") & {"embedded-data", "identifier", "hidden-text"}, view.files[0].check


# ---- 2. PDF ----------------------------------------------------------------------------------
def _stream(content: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(content), extra) + content + b"\nendstream"


DRAWING = b"0.8 0.1 0.1 rg 100 100 200 300 re f 0 0 0 rg BT /F1 18 Tf 100 450 Td (persons by region) Tj ET"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 500] /Resources << /Font << /F1 4 0 R >> >> /Contents 3 0 R%s >>"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _figure(drawing: bytes = DRAWING, catalogue: bytes = b"", page: bytes = b"", more: list[bytes] = (),
            trailer: bytes = b"") -> bytes:
    return pdf_of([b"<< /Type /Catalog /Pages 2 0 R %s>>" % catalogue, b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
                 _stream(drawing), FONT, PAGE % page, *more], trailer)


def _incremental() -> bytes:
    """A first revision whose page shows the rows, and an update drawing the plain figure over it."""
    first = _figure(DRAWING + b" BT /F1 6 Tf 10 10 Td (" + SECRET + b") Tj ET")
    start = first.rfind(b"startxref")
    previous = int(first[start + 10:].split()[0])
    offset = len(first)
    update = b"3 0 obj\n" + _stream(DRAWING) + b"\nendobj\n"
    xref = offset + len(update)
    return first + update + (b"xref\n3 1\n%010d 00000 n \ntrailer\n<< /Size 6 /Root 1 0 R /Prev %d >>\n"
                             b"startxref\n%d\n%%%%EOF\n" % (offset, previous, xref))


PDF_ATTACKS = {
    "an attached file": lambda: _figure(catalogue=b"/Names << /EmbeddedFiles << /Names [(rows.csv) 6 0 R] >> >> ",
                                        more=[b"<< /Type /Filespec /F (rows.csv) /EF << /F 7 0 R >> >>",
                                              _stream(SECRET, b"/Type /EmbeddedFile ")]),
    "JavaScript run at opening": lambda: _figure(catalogue=b"/OpenAction << /S /JavaScript /JS (" + SECRET + b") >> "),
    "an incremental update hiding the first revision": _incremental,
    "Info metadata": lambda: _figure(more=[b"<< /Title (" + SECRET + b") /Subject (" + SECRET + b") >>"],
                                     trailer=b"/Info 6 0 R "),
    "XMP metadata": lambda: _figure(catalogue=b"/Metadata 6 0 R ", more=[_stream(
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><dc:description>" + SECRET + b"</dc:description>"
        b"</rdf:RDF></x:xmpmeta>", b"/Type /Metadata /Subtype /XML ")]),
    "an annotation's text": lambda: _figure(page=b" /Annots [6 0 R]", more=[
        b"<< /Type /Annot /Subtype /Text /Rect [10 10 30 30] /Contents (" + SECRET + b") >>"]),
    "invisible text (render mode 3)": lambda: _figure(DRAWING + b" BT 3 Tr /F1 6 Tf 10 10 Td (" + SECRET + b") Tj ET"),
    "white text on white": lambda: _figure(DRAWING + b" 1 1 1 rg BT /F1 6 Tf 10 10 Td (" + SECRET + b") Tj ET"),
    "text outside the page": lambda: _figure(DRAWING + b" BT /F1 6 Tf 900 900 Td (" + SECRET + b") Tj ET"),
}


@pytest.mark.parametrize("attack", sorted(PDF_ATTACKS))
def test_pdf_payload_never_leaves(gate13, attack):
    """What leaves is the PDF of its pages drawn as pictures: what the render does not show is not in
    it (the same bytes as the plain figure's copy)."""
    plain = plain_copy(gate13, "fig.pdf", _figure())
    assert plain is not None
    crafted, view = copy_or_refused(gate13, "fig.pdf", PDF_ATTACKS[attack]())
    if attack == "an annotation's text":  # the note's icon is drawn (pixels the checker sees), never its text
        assert crafted is not None and SECRET not in crafted and b"/Annots" not in crafted
        return
    assert crafted is None or crafted == plain, attack


# ---- 3. tables -------------------------------------------------------------------------------
def _parquet(table: pa.Table, **kw) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **kw)
    return buffer.getvalue()


FRAME = pd.DataFrame({"region": ["N", "S"], "persons": [120, 230]})


def test_parquet_metadata_of_the_file_the_schema_and_a_field_never_leaves(gate13):
    table = pa.Table.from_pandas(FRAME, preserve_index=False)
    fields = [table.schema.field(0).with_metadata({b"note": SECRET}), table.schema.field(1)]
    crafted = table.cast(pa.schema(fields, metadata={**table.schema.metadata, b"rows": SECRET}))
    plain = released_copy(gate13, submit(gate13, ("t.parquet", _parquet(table))), 0)
    view = submit(gate13, ("t.parquet", _parquet(crafted)))
    assert released_copy(gate13, view, 0) == plain


def test_parquet_row_groups_past_the_first_are_checked(gate13):
    """A second row group: the page and the checks read every group."""
    frame = pd.DataFrame({"region": [f"R{i}" for i in range(40)], "persons": [100 + i for i in range(40)]})
    frame.loc[35, "region"] = "a" * 64  # a project pseudonym's shape, in the last row group
    with pytest.raises(RefusedFiles, match="pseudonym"):
        submit(gate13, ("t.parquet", _parquet(pa.Table.from_pandas(frame, preserve_index=False), row_group_size=10)))


def _wide_long(rows: int, cols: int, where: tuple[int, int], value: str) -> bytes:
    frame = pd.DataFrame({f"c{j}": [str(100 + i) for i in range(rows)] for j in range(cols)})
    frame.insert(0, "group", [f"g{i}" for i in range(rows)])
    frame.iloc[where] = value
    return frame.to_csv(index=False).encode()


@pytest.mark.parametrize("where", [(550, 0), (3, 65)], ids=["row-551", "column-66"])
def test_identifiers_past_what_the_page_shows_are_checked(gate13, where):
    """The pre-gate reads every cell: a pseudonym's shape refuses the file whatever its place."""
    with pytest.raises(RefusedFiles, match="pseudonym"):
        submit(gate13, ("t.csv", _wide_long(600 if where[0] > 500 else 20, 70, where, "b" * 64)))


@pytest.mark.parametrize("where", [(550, 0), (3, 65)], ids=["row-551", "column-66"])
def test_codes_past_what_the_page_shows_fail_the_preview(gate13, where):
    """Codes no rule knows (``K7QX2M9PLA``), past the 500th row or the 60th column: only the
    automatic checks read them, and they cannot tell a code from a category. The page said so in a
    note; now the file fails ``preview`` (the approving checker reads the rest in the raw file and
    says so), and the page says what it did not show."""
    view = submit(gate13, ("t.csv", _wide_long(600 if where[0] > 500 else 20, 70, where, "K7QX2M9PLA")))
    assert "preview" in rules(view, status="fail"), rules(view)
    text = page_of(gate13, view)
    assert "K7QX2M9PLA" not in text
    assert ("of 600 rows" in text) if where[0] > 500 else ("of 71 columns" in text)


CSV_FORMS = {
    "spaces around a number": (b"region,persons\nN,120 \nS, 230\n", None),
    "leading zeros": (b"region,persons\nN,0120\nS,230\n", "0120"),
    "a plus sign": (b"region,persons\nN,+120\nS,230\n", "+120"),
    "an exponent": (b"region,persons\nN,1.2e2\nS,230\n", "1.2e2"),
    "blank lines between rows": (b"region,persons\nN,120\n\n\n\nS,230\n", None),
    "spaces after a category": (b"region,persons\nN   ,120\nS,230\n", None),
    "mixed line endings": (b"region,persons\r\nN,120\nS,230\r\n", None),
}


@pytest.mark.parametrize("attack", sorted(CSV_FORMS))
def test_csv_bytes_the_page_does_not_show(gate13, attack):
    """A CSV leaves as submitted: the page showed the values pandas read, so every spelling of
    a number (``0120``, ``+120``, ``1.2e2``, `` 120``), blank lines and line endings carried bits
    past the checker. Now the page shows each cell as written, and what it cannot show (blanks
    at the ends of a cell, blank lines, mixed line endings) fails ``hidden-text``."""
    data, written = CSV_FORMS[attack]
    view = submit(gate13, ("t.csv", data))
    if written is None:
        assert "hidden-text" in rules(view, status="fail"), rules(view)
    else:
        assert f">{written}<" in page_of(gate13, view).replace(" ", "")


def test_an_arrow_or_feather_file_is_refused(gate13):
    for name in ("t.arrow", "t.feather"):
        with pytest.raises(InvalidInput):
            submit(gate13, (name, b"ARROW1\x00\x00" + SECRET))


# ---- 4. text steganography -------------------------------------------------------------------
#: Cyrillic а (U+0430), е (U+0435), о (U+043E) and Greek ο (U+03BF) in Latin words: a bit per letter
LOOKALIKES = "Results by rеgion: nоrth and sоuth, dаta of 2020"


@pytest.mark.parametrize("where", ["text", "code", "cell", "header", "markdown"])
def test_look_alike_letters_carry_data_past_the_checker(gate13, where):
    content, name = {
        "text": (f"{LOOKALIKES}\n".encode(), "notes.txt"),
        "markdown": (f"# {LOOKALIKES}\n".encode(), "notes.md"),
        "code": (f"# {LOOKALIKES}\nx = 1\n".encode(), "fit.py"),
        "cell": (f'group,n\n"{LOOKALIKES}",120\nB,130\n'.encode(), "t.csv"),
        "header": (f'"{LOOKALIKES}",n\nA,120\nB,130\n'.encode(), "t.csv"),
    }[where]
    view = submit(gate13, (name, content))
    assert "hidden-text" in rules(view, status="fail"), rules(view)
    text = page_of(gate13, view)
    assert "\u0435" not in text and "<U+0435>" in text


def test_whole_words_of_look_alike_letters(gate13):
    """A word spelt wholly in Cyrillic look-alikes among Latin words (``АВС`` for ``ABC``)."""
    view = submit(gate13, ("notes.txt", "group \u0410\u0412\u0421 has 120 persons\n".encode()))
    assert "hidden-text" in rules(view, status="fail"), rules(view)


TRAILING = "".join(f"line {i} of the results{' ' if bit == '1' else ''}\n"
                   for i, bit in enumerate(format(1841275123456, "b")))


@pytest.mark.parametrize("name, data", [
    ("notes.txt", TRAILING.encode()), ("fit.py", ("# " + TRAILING.replace("\n", "\n# ")).encode()),
    ("notes.txt", b"results\t\t\nmore\t\n"), ("notes.md", TRAILING.encode()),
], ids=["text-spaces", "code-spaces", "text-tabs", "markdown-spaces"])
def test_blanks_at_the_ends_of_lines_carry_bits(gate13, name, data):
    view = submit(gate13, (name, data))
    assert "hidden-text" in rules(view, status="fail"), rules(view)
    assert "<U+0020>" in page_of(gate13, view) or "<U+0009>" in page_of(gate13, view)


def _notebook(source: str, output: str) -> bytes:
    import json

    cell = {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": [source],
            "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def test_blanks_ending_a_notebook_cells_lines(gate13):
    """In a cell's source they fail; in an output they are shown (R's ``summary`` prints a blank
    at the end of its lines: failing it would fail every R notebook with outputs)."""
    view = submit(gate13, ("fit.ipynb", _notebook("summary(x) \nplot(x)", "x\n")))
    assert "hidden-text" in rules(view, status="fail"), rules(view)
    summary = "   Min. 1st Qu.  Median    Mean 3rd Qu.    Max. \n   1.00    1.75    2.50    4.00    4.75   10.00 \n"
    view = submit(gate13, ("fit.ipynb", _notebook("summary(x)", summary)))
    assert "hidden-text" not in rules(view), rules(view)
    assert "Max.<U+0020>" in page_of(gate13, view)


@pytest.mark.parametrize("name", ["notes.txt", "fit.py"])
def test_mixed_line_endings_carry_bits(gate13, name):
    lines = [f"# line {i}" for i in range(41)]
    data = "".join(line + ("\r\n" if bit == "1" else "\n") for line, bit in zip(lines, format(1841275123456, "b")))
    view = submit(gate13, (name, data.encode()))
    assert "hidden-text" in rules(view, status="fail"), rules(view)
    assert "<U+000D>" in page_of(gate13, view)


def test_ordinary_text_carries_no_finding(gate13):
    """Controls: accents, French typography, a Greek letter alone, a Russian word, one line ending
    kind (CR LF throughout), a tab inside a line, a table's ordinary numbers."""
    for content, name in (
            ("Résumé: étude « française », α = 0,05, данные\r\ncoût\tmoyen: 12\u202f345 €\r\n".encode(), "notes.txt"),
            ("x = 1  # α\n\tif x:\n\t\ty = 2\n".encode(), "fit.py"),
            ("région,personnes\r\nÎle-de-France,120\r\nμ-Nord,130\r\n".encode(), "t.csv")):
        view = submit(gate13, (name, content))
        assert "hidden-text" not in rules(view) and "preview" not in rules(view), (name, view.files[0].check)


# ---- 5. a daily bound on what exports stage --------------------------------------------------
DAY_LIMIT = 600 * 1024


@pytest.fixture(name="quota_service")
def quota_service_fixture(tmp_path):
    from dataclasses import replace

    from gate_support import people

    from pds_kernel.airlock.limits import AirlockLimits
    from pds_kernel.airlock.service import AirlockService
    from pds_kernel.runtime import Runtime
    from pds_kernel.settings import Airlock
    from tests.conftest import make_settings

    runtime = Runtime(make_settings(tmp_path / "pds", airlock=replace(Airlock(), export_max_bytes_per_day=DAY_LIMIT)))
    try:
        yield AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=people(runtime))
    finally:
        runtime.close()


def test_exports_stage_a_bounded_number_of_bytes_a_day(quota_service):
    """One researcher submitting the same file again and again filled the staging disk (every
    copy is kept for the record): imports were bounded (``airlock.import_max_bytes_per_day``),
    exports were not. Now what her exports staged in 24 hours, resubmissions included, is bounded
    by ``airlock.export_max_bytes_per_day``; past it the request is refused, audited, nothing staged."""
    service, data = quota_service, b"persons by region, 2020\n" * (250 * 1024 // 24)
    first = service.create("carol", PROJECT, files(("notes.txt", data)), "Table 2", {"notebook": "a.ipynb"})
    service.create("carol", PROJECT, files(("notes.txt", data)), "Table 2 again", {"notebook": "a.ipynb"})
    with pytest.raises(RefusedFiles, match="export_max_bytes_per_day"):  # the third copy of the day
        service.create("carol", PROJECT, files(("notes.txt", data)), "Table 2 again", {"notebook": "a.ipynb"})
    entry = service.runtime.audit.entries(action="airlock.request.create")[-1]
    assert entry.actor == "carol" and entry.outcome == "denied" and "24 hours" in str(entry.details), entry
    staging = service.settings.paths.staging
    assert sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) < 2 * len(data) + 4096
    for who in ("olga", "omar"):  # a resubmission stages a new round: it counts the same
        service.review(who, first.id, {0: {"decision": "request_changes", "comment": "round to 10"}})
    with pytest.raises(RefusedFiles, match="export_max_bytes_per_day"):
        service.resubmit("carol", first.id, files(("notes.txt", data + b"rounded\n")))
    assert sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) < 2 * len(data) + 4096
    service.create("alice", PROJECT, files(("notes.txt", data)), "Table 2", {"notebook": "a.ipynb"})  # hers only
