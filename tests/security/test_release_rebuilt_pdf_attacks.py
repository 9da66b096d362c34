"""Attacks on the gate's rebuild of PDF figures and on the child process it rebuilds in
(docs/adr/0010-release-rebuilt-copies.md): content PDFium does not draw, pages a viewer turns or
crops, a small PDF that keeps PDFium busy, and a child that floods the gate or says it rebuilt
what it did not write. Each test names whether the attack passed before a fix (and the fix) or
already failed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_disclosure_hidden_channels import HIDDEN

from pds_kernel.airlock import rebuild as rebuild_module
from pds_kernel.airlock.rebuild import rebuild, rebuild_all, release_copies
from pds_kernel.airlock.staging import RefusedFiles, StagedFile
from pds_kernel.errors import InvalidInput

ROWS = HIDDEN.replace(b"\n", b" ").replace(b"(", b"").replace(b")", b"").replace(b"\\", b"")
FONT = b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>"
PLAIN = b"0 0 1 rg 20 20 50 80 re f"
BOX = b"/MediaBox [0 0 200 200]"


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), extra, data)


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of ``objects`` (object 1 the catalog), with a correct cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.7\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _page(content: bytes, page: bytes = BOX, resources: bytes = FONT, more: tuple[bytes, ...] = (),
          catalog: bytes = b"") -> bytes:
    """A one-page PDF drawing ``content``; ``more`` are objects 5, 6..."""
    return _pdf([b"<< /Type /Catalog /Pages 2 0 R %s >>" % catalog, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                 b"<< /Type /Page /Parent 2 0 R %s /Resources %s /Contents 4 0 R >>" % (page, resources),
                 _stream(content), *more])


def _rows(mode: int = 0, size: float = 8, colour: bytes = b"0 g", y: int = 150) -> bytes:
    return b" BT %s /F1 %g Tf %d Tr 10 %d Td (%s) Tj ET" % (colour, size, mode, y, ROWS)


def _annotation(flags: int, subtype: bytes = b"/Square") -> bytes:
    appearance = _stream(b"BT /F1 8 Tf 10 150 Td (%s) Tj ET" % ROWS,
                         b" /Type /XObject /Subtype /Form /BBox [0 0 200 200] /Resources " + FONT)
    return _page(PLAIN, BOX + b" /Annots [5 0 R]", more=(
        b"<< /Type /Annot /Subtype %s /Rect [0 0 200 200] /F %d /AP << /N 6 0 R >> >>" % (subtype, flags),
        appearance))


def _rebuilt(tmp_path: Path, data: bytes, tag: str) -> bytes:
    source, target = tmp_path / f"{tag}-in.pdf", tmp_path / f"{tag}-out.pdf"
    source.write_bytes(data)
    rebuild(source, target, "fig.pdf")
    return target.read_bytes()


def _drawn(data: bytes, scale: float = 1.0) -> np.ndarray:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    try:
        return document[0].render(scale=scale, fill_color=(255, 255, 255, 255)).to_numpy()
    finally:
        document.close()


# ---- content no viewer draws (already left out) --------------------------------------------------
UNDRAWN = {
    "rows in invisible text (render mode 3)": lambda: _page(PLAIN + _rows(mode=3)),
    "rows in clipping-only text (render mode 7)": lambda: _page(PLAIN + _rows(mode=7)),
    "rows outside the CropBox, inside the MediaBox": lambda: _page(
        PLAIN + _rows(y=250), b"/MediaBox [0 0 200 300] /CropBox [0 0 200 200]"),
    "rows inside the CropBox, outside the MediaBox": lambda: _page(
        PLAIN + _rows(y=250), b"/MediaBox [0 0 200 200] /CropBox [0 0 200 300]"),
    "rows in a Hidden annotation's appearance": lambda: _annotation(2),
    "rows in a NoView annotation's appearance": lambda: _annotation(32),
    "rows in a popup annotation's appearance": lambda: _annotation(0, b"/Popup"),
    "rows in a 0.001-point font": lambda: _page(PLAIN + _rows(size=0.001)),
    "rows on a page outside the page tree": lambda: _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R %s /Resources %s /Contents 4 0 R >>" % (BOX, FONT), _stream(PLAIN),
        b"<< /Type /Page /Parent 2 0 R %s /Resources %s /Contents 6 0 R >>" % (BOX, FONT), _stream(_rows())]),
}


@pytest.mark.parametrize("attack", sorted(UNDRAWN))
def test_content_pdfium_does_not_draw_does_not_leave(tmp_path, attack):
    """Rows a text extractor or another viewer might read, but PDFium does not draw: the copy is the
    copy of the figure without them (already so: the copy holds what PDFium draws, nothing else)."""
    crafted = UNDRAWN[attack]()
    assert ROWS[:40] in crafted
    assert _rebuilt(tmp_path, crafted, "crafted") == _rebuilt(tmp_path, _page(PLAIN), "plain")


@pytest.mark.parametrize("state, colour", [(b"", b"0.996 g"), (b" /G gs", b"0 g"), (b"", b"0.98 g")])
def test_rows_drawn_a_shade_from_the_background_do_not_leave(tmp_path, state, colour):
    """Text drawn in grey 254 (or 250) on white, or black at 0.4% opacity, is invisible on any screen
    and came back as 33-pixel-high glyphs a level or five from white (thresholding read them): the
    copy writes pixels within FAINT_LEVELS of the background as the background."""
    resources = FONT[:-2] + b" /ExtGState << /G << /ca 0.004 >> >> >>"
    copy = _rebuilt(tmp_path, _page(PLAIN + state + _rows(colour=colour), resources=resources), "crafted")
    assert copy == _rebuilt(tmp_path, _page(PLAIN), "plain")


# ---- what a viewer shows of a legitimate figure (already kept) -----------------------------------
@pytest.mark.parametrize("page", [b"/MediaBox [0 0 200 100] /Rotate 90",
                                  b"/MediaBox [0 0 200 100] /CropBox [50 0 200 100] /Rotate 270",
                                  b"/MediaBox [-100 -50 100 50]"])
def test_a_turned_or_cropped_page_comes_back_as_a_viewer_shows_it(tmp_path, page):
    """/Rotate and a CropBox: the copy's page has the turned, cropped size and the same picture."""
    figure = _page(b"0 0 0 rg -100 -50 150 100 re f 1 0 0 rg 100 0 20 20 re f", page)
    copy = _rebuilt(tmp_path, figure, "turned")
    shown, again = _drawn(figure, 2), _drawn(copy, 2)
    assert shown.shape == again.shape
    assert np.abs(shown.astype(int) - again.astype(int)).mean() < 2


# ---- a small PDF that keeps PDFium busy (already bounded by the wall limit) ----------------------
def _mesh_shading(triangles: int) -> bytes:
    """A page filled by a free-form triangle mesh: each triangle covers half the page."""
    import zlib

    vertices = bytes([0, 0, 0, 0, 0, 255, 0, 128, 0, 0, 255, 255]) * triangles
    mesh = zlib.compress(vertices)
    shading = b"<< /Length %d /Filter /FlateDecode /ShadingType 4 /ColorSpace /DeviceGray /BitsPerCoordinate 8 " \
              b"/BitsPerComponent 8 /BitsPerFlag 8 /Decode [0 612 0 792 0 1] >>\nstream\n%s\nendstream" % (len(mesh), mesh)
    return _page(b"/Sh sh", b"/MediaBox [0 0 612 792]", b"<< /Shading << /Sh 5 0 R >> >>", (shading,))


def test_a_pdf_that_keeps_pdfium_busy_is_refused_at_the_wall_limit(tmp_path):
    """A 1.2 kB page of 20,000 triangles takes PDFium about 9 ms a triangle at 300 dpi, using no
    memory: about 180 s, the child's wall limit, which ends it (already so; the submission is held
    that long: ADR 10, left open)."""
    data = _mesh_shading(20_000)
    assert len(data) < 1_500
    source = tmp_path / "fig.pdf"
    source.write_bytes(data)
    started = time.monotonic()
    reasons = rebuild_all([(source, tmp_path / "out.pdf", "fig.pdf")], wall_seconds=5)
    assert time.monotonic() - started < 20
    assert "took longer than 5 s" in reasons["fig.pdf"] and not (tmp_path / "out.pdf").exists()


# ---- a child that floods the gate or claims copies it did not write ------------------------------
_FLOOD = """
import json, sys
items = json.load(sys.stdin)
block = "x" * (1 << 20) + "\\n"
for _ in range(512):
    sys.{stream}.write(block)
sys.stdout.write(json.dumps({{name: "refused" for _, _, name in items}}))
"""

_MEASURE = r"""
import json, re, sys
from pathlib import Path
from pds_kernel.airlock import rebuild
rebuild.CHILD = [sys.executable, "-c", sys.argv[1]]
reasons = rebuild.rebuild_all([(Path("in.pdf"), Path("out.pdf"), "fig.pdf")], wall_seconds=60)
# VmHWM: this process's own peak (ru_maxrss keeps the peak of the process it was forked from)
peak = int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps([reasons, peak]))
"""


@pytest.mark.parametrize("stream", ["stderr", "stdout"])
def test_a_child_writing_gigabytes_does_not_fill_the_gates_memory(tmp_path, stream):
    """The gate read all the child's output into memory (``communicate``): a child writing 512 MiB
    on its standard error (a library's warnings, or a parser flaw exploited) made the gate's
    process grow by 1.6 GB (fix: at most 1 MiB of results and the last 4 KiB of errors are kept,
    the rest read and dropped; results longer than that are no results)."""
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(rebuild_module.__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", _MEASURE, _FLOOD.format(stream=stream)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120, check=True)
    reasons, max_rss_kib = json.loads(done.stdout)
    assert max_rss_kib < 200 * 1024, f"the gate grew to {max_rss_kib >> 10} MiB"
    assert set(reasons) == {"fig.pdf"} and reasons["fig.pdf"]


_LIARS = {
    "says it rebuilt a copy it did not write": "",
    "wrote an empty copy": "Path(target).write_bytes(b'')",
    "wrote a link to another file instead of a copy": "os.symlink('/etc/hostname', target)",
}


@pytest.mark.parametrize("lie", sorted(_LIARS) + ["gives an empty reason", "names a file it was not given"])
def test_a_child_claiming_copies_it_did_not_write_is_not_trusted(tmp_path, monkeypatch, lie):
    """A child exiting 0 whose results say "rebuilt" without a regular, non-empty copy at the target
    made the release fail on a missing file (an error, not a refusal), or put a symbolic link in the
    staging area in place of the figure; an empty reason counted as "rebuilt" (fix: the results are
    checked against the files the gate gave, each a reason or a copy written; else every file of
    the batch is refused)."""
    results = ('{name: None for _, _, name in items}' if lie in _LIARS else
               '{name: "" for _, _, name in items}' if lie == "gives an empty reason" else
               '{**{name: None for _, _, name in items}, "other.pdf": None}')
    write = _LIARS.get(lie, "Path(target).write_bytes(b'%PDF-1.4')")
    script = ("import json, os, sys\nfrom pathlib import Path\nitems = json.load(sys.stdin)\n"
              f"for _, target, _ in items:\n    {write or 'pass'}\n"
              f"sys.stdout.write(json.dumps({results}))\n")
    monkeypatch.setattr(rebuild_module, "CHILD", [sys.executable, "-c", script])
    staged_bytes = _page(PLAIN)
    (tmp_path / "0-fig.pdf").write_bytes(staged_bytes)
    staged = [StagedFile(0, "fig.pdf", "0-fig.pdf", "0" * 64, len(staged_bytes))]
    with pytest.raises(RefusedFiles) as refused:
        release_copies(tmp_path, staged)
    assert set(refused.value.reasons) == {"fig.pdf"} and "cannot rebuild it" in refused.value.reasons["fig.pdf"]
    assert (tmp_path / "0-fig.pdf").read_bytes() == staged_bytes
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "submitted") == ["0-fig.pdf"]
    assert isinstance(refused.value, InvalidInput)  # the service refuses and discards the round


def test_submissions_of_busy_pdfs_cannot_take_every_core(tmp_path):
    """Two submissions of such a PDF hold the gate's two rebuild slots; a third waits for a slot at
    most its wall limit, then is told to come back, and takes no core meanwhile. Once the two end,
    a figure is rebuilt as usual."""
    import threading

    from pds_kernel.airlock.rebuild import MAX_CONCURRENT

    busy = _mesh_shading(20_000)
    outcomes: list[dict] = []

    def submit(index: int) -> None:
        source = tmp_path / f"busy-{index}.pdf"
        source.write_bytes(busy)
        outcomes.append(rebuild_all([(source, tmp_path / f"out-{index}.pdf", "fig.pdf")], wall_seconds=8))

    holders = [threading.Thread(target=submit, args=(i,)) for i in range(MAX_CONCURRENT)]
    for holder in holders:
        holder.start()
    time.sleep(1)
    third = tmp_path / "third.pdf"
    third.write_bytes(_page(PLAIN))
    started = time.monotonic()
    waited = rebuild_all([(third, tmp_path / "out-third.pdf", "fig.pdf")], wall_seconds=2)
    assert time.monotonic() - started < 5
    assert "submit again in a few minutes" in waited["fig.pdf"] and not (tmp_path / "out-third.pdf").exists()
    for holder in holders:
        holder.join(timeout=60)
    assert len(outcomes) == MAX_CONCURRENT and all("took longer than" in o["fig.pdf"] for o in outcomes)
    assert rebuild_all([(third, tmp_path / "out-third.pdf", "fig.pdf")]) == {"fig.pdf": None}


def test_one_researcher_submitting_busy_pdfs_holds_one_slot_not_every_slot(tmp_path):
    """One researcher submitting such a PDF twice at once held both of the gate's rebuild slots:
    every other researcher's submission waited its wall limit, then was told to come back (fix:
    one rebuild running or waiting per submitter; her second submission is told to wait for her
    first, and another researcher's figure is rebuilt meanwhile in the slot left)."""
    import threading

    busy = tmp_path / "busy.pdf"
    busy.write_bytes(_mesh_shading(20_000))
    first: list[dict] = []
    holder = threading.Thread(target=lambda: first.append(
        rebuild_all([(busy, tmp_path / "out-1.pdf", "fig.pdf")], wall_seconds=10, holder="mallory")))
    holder.start()
    time.sleep(1)
    started = time.monotonic()
    second = rebuild_all([(busy, tmp_path / "out-2.pdf", "fig.pdf")], wall_seconds=3, holder="mallory")
    assert time.monotonic() - started < 6
    assert "previous submission" in second["fig.pdf"] and not (tmp_path / "out-2.pdf").exists()
    figure = tmp_path / "figure.pdf"
    figure.write_bytes(_page(PLAIN))
    assert rebuild_all([(figure, tmp_path / "out-alice.pdf", "fig.pdf")], wall_seconds=3,
                       holder="alice") == {"fig.pdf": None}
    holder.join(timeout=60)
    assert "took longer than" in first[0]["fig.pdf"]
    assert rebuild_all([(figure, tmp_path / "out-3.pdf", "fig.pdf")], holder="mallory") == {"fig.pdf": None}


def test_a_crashing_rebuild_leaves_no_core_file_of_what_it_read(tmp_path, monkeypatch):
    """A parser crashing in the child (a crafted file exploiting a flaw) dumped its memory, the
    submitted files it had read, into a core file in the gate's folder wherever core dumps were
    allowed (fix: the child's core size limit is 0; its reason names the crash, not its text)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))  # dumps allowed, as on some hosts
    monkeypatch.chdir(tmp_path)
    script = ("import os, signal, sys\nsecret = sys.stdin.read() * 1000\n"
              "os.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setattr(rebuild_module, "CHILD", [sys.executable, "-c", script])
    try:
        figure = tmp_path / "figure.pdf"
        figure.write_bytes(_page(PLAIN))
        reasons = rebuild_all([(figure, tmp_path / "out.pdf", "fig.pdf")])
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    assert "SIGSEGV: a parser crashed" in reasons["fig.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.pdf"]
