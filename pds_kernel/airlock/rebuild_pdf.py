"""A PDF figure rebuilt from what a viewer shows: each page drawn as a picture, in a new PDF.

A PDF is a graph of objects, and what a viewer shows is whatever its pages' content draws; an
object can hang anywhere in that graph under a key no viewer reads, so a PDF cannot be rebuilt by
keeping "the objects that matter" (docs/adr/0010-release-rebuilt-copies.md). The gate draws each
page with PDFium (pypdfium2: Chromium's PDF engine, run in the rebuild's limited child process)
at 300 dpi on white, and writes a new PDF of those pictures itself: one page per page, one
losslessly compressed RGB image per page at the page's size, nothing else (no text, fonts, links,
metadata or dates), so the same pages give the same bytes. Text in the figure stays readable on
screen and on paper; it can no longer be selected or searched.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

from ..errors import InvalidInput
from .rebuild_formats import flatten_faint

#: pages of a figure (a figure is a page or a few: a report is text, submitted as such)
MAX_PAGES = 20
#: how finely each page is drawn, at most (dots per inch)
DPI = 300
#: pixels of all the pages' pictures, at most (as for a PNG figure): larger pages are drawn at a
#: lower resolution
MAX_TOTAL_PIXELS = 40_000_000
#: the largest page side accepted, in points (200 inches: a poster)
MAX_SIDE_POINTS = 14_400


def _open(path: Path):
    """The PDFium document at ``path`` and the size of each page in points, within the bounds."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise InvalidInput(f"PDFium cannot open it ({exc})") from None
    pages = len(document)
    if not 1 <= pages <= MAX_PAGES:
        document.close()
        raise InvalidInput(f"{pages} pages: a figure has 1 to {MAX_PAGES}")
    sizes = [document.get_page_size(i) for i in range(pages)]
    for index, (width, height) in enumerate(sizes):
        if not (0 < width <= MAX_SIDE_POINTS and 0 < height <= MAX_SIDE_POINTS):
            document.close()
            raise InvalidInput(f"page {index + 1} measures {width:g} x {height:g} points: at most "
                               f"{MAX_SIDE_POINTS} a side")
    return document, sizes


def _pages(source: Path):
    """(width and height in points, RGB pixels) of each page of ``source``, drawn at
    :data:`DPI`, or lower when the pages' pictures would exceed :data:`MAX_TOTAL_PIXELS`."""
    import numpy as np

    document, sizes = _open(source)
    try:
        area = sum(width * height for width, height in sizes)
        scale = min(DPI / 72, 0.99 * math.sqrt(MAX_TOTAL_PIXELS / area))  # PDFium rounds sizes up
        out = []
        for index, size in enumerate(sizes):
            page = document[index]
            bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255), may_draw_forms=True)
            out.append((size, flatten_faint(np.array(bitmap.to_pil().convert("RGB")))))
            page.close()
        return out
    finally:
        document.close()


def _write(target: Path, pages) -> None:
    """A PDF of ``pages`` ((width, height) in points, RGB pixels), one image per page."""
    objects: list[bytes] = []  # object number i + 1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog, tree = add(b""), add(b"")
    kids = []
    for (width, height), pixels in pages:
        rows, cols = pixels.shape[:2]
        data = zlib.compress(pixels.tobytes(), 9)
        image = add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                    b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
                    % (cols, rows, len(data), data))
        drawing = b"q %.4f 0 0 %.4f 0 0 cm /Im0 Do Q" % (width, height)
        content = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(drawing), drawing))
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.4f %.4f] /Resources << /XObject "
                        b"<< /Im0 %d 0 R >> >> /Contents %d 0 R >>" % (tree, width, height, image, content)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    with open(target, "xb") as fh:
        fh.write(out)


def rebuild_pdf(source: Path, target: Path) -> None:
    """Write at ``target`` the PDF of ``source``'s pages drawn as pictures; check it opens with as
    many pages of the same sizes."""
    pages = _pages(source)
    _write(target, pages)
    document, sizes = _open(target)
    document.close()
    if [(round(w, 2), round(h, 2)) for w, h in sizes] != [(round(w, 2), round(h, 2)) for (w, h), _ in pages]:
        raise InvalidInput("its rebuilt copy does not hold the same pages")
