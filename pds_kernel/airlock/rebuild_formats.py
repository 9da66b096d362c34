"""Rebuilding a table or figure from its cells or pixels alone, with fixed settings (the copy the
gate checks, shows and releases: :mod:`.rebuild`, docs/adr/0010-release-rebuilt-copies.md).

- **Parquet** (pyarrow): the columns, dictionary columns decoded, no metadata of the file, the
  schema or a field; zstd, pyarrow's default layout.
- **XLSX** (openpyxl): the values of each sheet's cells, in a new workbook (no formatting, formula
  results as values, texts always texts, errors always errors).
- **PNG and JPEG** (Pillow): the first frame's pixels, turned the way its EXIF orientation says,
  in 8-bit L, LA, RGB or RGBA (fully transparent pixels black: their colour shows nothing); a PNG
  keeps its resolution (dpi), a JPEG is encoded again at quality 95 without chroma subsampling.
  Nothing else of the file is written.
- **PDF**: each page drawn as a picture at 300 dpi by PDFium, in a new PDF of those pictures
  (:mod:`.rebuild_pdf`).

A file that cannot be rebuilt, or whose copy does not hold the same cells or pixels, raises
:class:`InvalidInput` with the reason. Every bound is checked before anything is unpacked. Run as
a module, this is the child process the gate rebuilds in (:func:`main`): it imports nothing of
the gate.
"""

from __future__ import annotations

import errno
import io
import json
import math
import resource
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from ..errors import InvalidInput
from .inputs import quoted

#: the largest image the gate decodes (pixels): a 16-megapixel figure is already a poster
MAX_PIXELS = 40_000_000
#: the most bytes a workbook's parts or a Parquet file's columns may unpack to
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
#: the largest Parquet table the gate reads (the checks refuse larger tables: outputs are aggregates)
MAX_TABLE_CELLS = 5_000_000
#: the largest workbook the gate reads cell by cell
MAX_XLSX_CELLS = 1_000_000
#: the most XML elements of a workbook's parts: a cell takes two (``c`` and ``v``), formatting a few more
MAX_XLSX_ELEMENTS = 4 * MAX_XLSX_CELLS
#: levels (of 255) a pixel may differ from its picture's background and be written as the
#: background: no screen shows marks that close (rows drawn in grey 254 on white, or at 0.4 %
#: opacity, came back as glyphs one level from white that a threshold reads); a figure's
#: anti-aliasing that close to the background is as invisible
FAINT_LEVELS = 6
#: the mean difference (0-255) between a JPEG's pixels and those of its copy encoded again at
#: quality 95; above, the copy is not the picture the researcher submitted
MAX_JPEG_DIFFERENCE = 6.0
#: the most scans of a JPEG: a progressive JPEG of the usual encoders has about ten, and each scan is
#: a pass over the whole picture (a few kilobytes of repeated scans cost minutes)
MAX_JPEG_SCANS = 100
_DPI = (1, 10_000)
#: the line of a rebuild Job's log that carries its results (``--items-file``: :func:`main`)
RESULT_MARKER = "PDS-REBUILD-RESULT "
_EPOCH = datetime(2000, 1, 1)


def rebuilt_kind(name: str) -> str | None:
    """The format the gate rebuilds ``name`` as (``parquet``, ``xlsx``, ``png``, ``jpeg``, ``pdf``,
    ``notebook``: its figures, :mod:`.rebuild_notebook`), or None."""
    return {".parquet": "parquet", ".xlsx": "xlsx", ".png": "png", ".jpg": "jpeg",
            ".jpeg": "jpeg", ".pdf": "pdf", ".ipynb": "notebook"}.get(Path(name).suffix.lower())


# ---- tables -------------------------------------------------------------------------------------
def _plain_column(name: str, column):
    """``column`` holding only what its cells show: an extension type's storage (its name and
    parameters are the author's text), a dictionary decoded (it can hold values no row uses), a
    timestamp's time zone UTC (any text passes as a zone name; the instants do not change), every
    NaN the same NaN (a NaN carries 51 bits of payload that every reader shows as NaN)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column.type, pa.BaseExtensionType):
        column = pa.chunked_array([chunk.storage for chunk in column.chunks], type=column.type.storage_type)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    if pa.types.is_nested(kind) or isinstance(kind, pa.BaseExtensionType):
        raise InvalidInput(f"column {quoted(name)} holds {quoted(kind, 60)} values, not one value per cell: export a flat table")
    if pa.types.is_timestamp(kind) and kind.tz is not None and kind.tz not in _zones():
        raise InvalidInput(f"column {quoted(name)} names the time zone {kind.tz[:40]!r}, which is no zone of the "
                           "tz database: save its times in UTC or in a zone such as Europe/Paris")
    if pa.types.is_float16(kind):
        column = column.cast(pa.float32())
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(math.nan, column.type), column)
    return column


@cache
def _zones() -> frozenset[str]:
    """The time zones a timestamp column may name: those of the tz database and fixed offsets."""
    import zoneinfo

    offsets = {f"{sign}{h:02d}:{m:02d}" for sign in "+-" for h in range(15) for m in (0, 15, 30, 45)}
    return frozenset(zoneinfo.available_timezones() | offsets | {"UTC", "Z"})


def _decoded_bytes(column) -> int:
    """How many bytes the texts or binaries of a dictionary column take once decoded (a dictionary of
    one long text used by every row unpacks to rows x its length)."""
    import pyarrow.compute as pc

    total = 0
    for chunk in column.chunks:
        lengths = pc.binary_length(chunk.dictionary)
        total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
    return total


def _plain_table(path: Path):
    """The columns of a Parquet file as pyarrow reads them (:func:`_plain_column`), without any
    metadata of the file, the schema or a field. Nothing is unpacked beyond the bounds: a column
    of a million equal values is a few bytes in the file (run-length encoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(path)
    if metadata.num_rows * max(metadata.num_columns, 1) > MAX_TABLE_CELLS:
        raise InvalidInput(f"more than {MAX_TABLE_CELLS} cells: outputs are aggregates")
    unpacked = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if unpacked > MAX_UNPACKED_BYTES:
        raise InvalidInput(f"its columns hold more than {MAX_UNPACKED_BYTES} bytes once unpacked")
    schema = metadata.schema.to_arrow_schema()
    for field in schema:
        if pa.types.is_nested(field.type):
            raise InvalidInput(f"column {quoted(field.name)} holds {quoted(field.type, 60)} values, not one value per cell: "
                               "export a flat table")
        if pa.types.is_fixed_size_binary(field.type) and \
                field.type.byte_width * metadata.num_rows > MAX_UNPACKED_BYTES:
            raise InvalidInput(f"column {quoted(field.name)} holds more than {MAX_UNPACKED_BYTES} bytes once unpacked")
    texts = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_binary(f.type)
             or pa.types.is_large_string(f.type) or pa.types.is_large_binary(f.type)]
    table = pq.read_table(path, read_dictionary=texts)  # texts stay encoded until measured
    if sum(_decoded_bytes(c) for c in table.columns if _is_text_dictionary(c.type)) > MAX_UNPACKED_BYTES:
        raise InvalidInput(f"its texts hold more than {MAX_UNPACKED_BYTES} bytes once unpacked")
    columns = [_plain_column(field.name, column) for field, column in zip(table.schema, table.columns, strict=True)]
    fields = [pa.field(field.name, column.type, nullable=True) for field, column in zip(table.schema, columns,
                                                                                        strict=True)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _is_text_dictionary(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_dictionary(kind) and (pa.types.is_string(kind.value_type) or pa.types.is_binary(
        kind.value_type) or pa.types.is_large_string(kind.value_type) or pa.types.is_large_binary(kind.value_type))


def _same_columns(a, b) -> bool:
    """Whether tables ``a`` and ``b`` hold the same columns and values (a NaN equal to a NaN)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for x, y in zip(a.columns, b.columns, strict=True):
        if pa.types.is_floating(x.type):
            nan_x, nan_y = pc.is_nan(x), pc.is_nan(y)
            if not nan_x.equals(nan_y):
                return False
            x, y = pc.if_else(nan_x, pa.scalar(0.0, x.type), x), pc.if_else(nan_y, pa.scalar(0.0, y.type), y)
        if not x.equals(y):
            return False
    return True


def _parquet(source: Path, target: Path) -> None:
    import pyarrow.parquet as pq

    table = _plain_table(source)
    pq.write_table(table, target, compression="zstd", store_schema=True)
    if not _same_columns(_plain_table(target), table):
        raise InvalidInput("its rebuilt copy does not hold the same columns and values")


def _xlsx_values(path: Path) -> list[tuple[str, list[tuple]]]:
    from openpyxl import load_workbook

    with zipfile.ZipFile(path) as archive:  # a zip bomb is refused before openpyxl inflates it
        if sum(item.file_size for item in archive.infolist()) > MAX_UNPACKED_BYTES:
            raise InvalidInput(f"its parts hold more than {MAX_UNPACKED_BYTES} bytes once unpacked")
        if _elements(archive) > MAX_XLSX_ELEMENTS:
            raise InvalidInput(f"its parts hold more than {MAX_XLSX_ELEMENTS} XML elements: save the cells "
                               "again without formatting, or export the table as CSV")
    with open(path, "rb") as fh:
        return _workbook_values(load_workbook(fh, read_only=True, data_only=True))


def _elements(archive: zipfile.ZipFile) -> int:
    """How many XML elements the parts of a workbook open (openpyxl reads each one in Python: a
    shared-strings part of millions of empty entries is a few kilobytes zipped and minutes to read)."""
    count = 0
    for item in archive.infolist():
        with archive.open(item) as fh:
            while block := fh.read(1 << 20):
                count += block.count(b"<") - block.count(b"</")
    return count


@dataclass(frozen=True)
class _Error:
    """A cell holding an error (``#DIV/0!``, ``#N/A``): written as an error, not as a text."""
    code: str


def _workbook_values(workbook) -> list[tuple[str, list[tuple]]]:
    try:
        sheets, cells = [], 0
        for sheet in workbook.worksheets:
            rows = []
            for cells_of_row in sheet.iter_rows():
                row = tuple(_Error(c.value) if getattr(c, "data_type", None) == "e" else c.value
                            for c in cells_of_row)
                cells += len(row)
                if cells > MAX_XLSX_CELLS:
                    raise InvalidInput(f"more than {MAX_XLSX_CELLS} cells: outputs are aggregates")
                rows.append(tuple(row))
            while rows and all(v is None for v in rows[-1]):
                rows.pop()
            sheets.append((sheet.title, rows))
        return sheets
    finally:
        workbook.close()


def _xlsx(source: Path, target: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.xml.functions import tostring

    sheets = _xlsx_values(source)
    workbook = Workbook(write_only=True)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title)
        for row in rows:
            out = []
            for value in row:
                if isinstance(value, _Error):
                    cell = WriteOnlyCell(sheet, value=value.code)
                    cell.data_type = "e"
                else:
                    cell = WriteOnlyCell(sheet, value=value)
                if isinstance(value, str):
                    cell.data_type = "s"  # a text starting with "=" stays a text, never a formula
                out.append(cell)
            sheet.append(out)
    buffer = io.BytesIO()
    workbook.save(buffer)
    # the same cells give the same bytes: no date in the properties (openpyxl writes the time of
    # saving) or in the archive's entries
    workbook.properties.created = workbook.properties.modified = _EPOCH
    core = tostring(workbook.properties.to_tree())
    with zipfile.ZipFile(buffer) as written, open(target, "xb") as fh, \
            zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as out:
        for item in written.infolist():
            data = core if item.filename == "docProps/core.xml" else written.read(item.filename)
            out.writestr(zipfile.ZipInfo(item.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                         compress_type=zipfile.ZIP_DEFLATED)
    if _xlsx_values(target) != sheets:
        raise InvalidInput("its rebuilt copy does not hold the same cells")


# ---- images -------------------------------------------------------------------------------------
def _scans(path: Path) -> int:
    """At most how many scans the JPEG at ``path`` holds: its start-of-scan markers (``FF DA`` never
    occurs inside compressed data, where an ``FF`` is followed by ``00`` or a restart marker)."""
    count, tail = 0, b""
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            count += (tail + block).count(b"\xff\xda")
            tail = block[-1:]
    return count


def _decoded(path: Path, kind: str):
    """The first frame of the image at ``path``, turned upright, as 8-bit L, LA, RGB or RGBA."""
    import numpy as np
    from PIL import Image, ImageOps

    if kind == "jpeg" and _scans(path) > MAX_JPEG_SCANS:
        raise InvalidInput(f"more than {MAX_JPEG_SCANS} scans (each one is decoded over the whole picture): "
                           "save the figure again as a baseline JPEG, or as a PNG")
    try:
        opened = Image.open(path, formats=["PNG" if kind == "png" else "JPEG"])
    except Image.DecompressionBombError:
        opened = None
    if opened is None or opened.size[0] * opened.size[1] > MAX_PIXELS:
        raise InvalidInput(f"more than {MAX_PIXELS} pixels: export a smaller figure")
    with opened as image:
        image.seek(0)
        image.load()
        dpi = image.info.get("dpi")
        image = ImageOps.exif_transpose(image)
        mode, transparent = image.mode, image.info.get("transparency")
        if mode in {"I;16", "I;16B", "I;16L", "I;16N"}:
            wide = np.asarray(image, dtype=np.uint16)
            pixels = (wide >> 8).astype(np.uint8)
            if isinstance(transparent, int):  # a tRNS grey: the pixels of that value are transparent
                pixels = np.dstack([pixels, np.where(wide == transparent, 0, 255).astype(np.uint8)])
            image = _pixels_image(pixels)
        elif mode in {"1", "L"}:  # a tRNS grey makes some pixels transparent: they stay so
            image = image.convert("L" if transparent is None else "LA")
        elif mode in {"LA", "La"}:
            image = image.convert("LA")
        elif mode in {"P", "PA", "RGBA", "RGBa"} or transparent is not None:
            image = image.convert("RGBA")
        elif mode in {"RGB", "CMYK", "YCbCr", "LAB", "HSV"}:
            image = image.convert("RGB")
        else:
            raise InvalidInput(f"its pixels are {mode}: save the figure as an 8-bit PNG or a JPEG")
        pixels = np.array(image)
    if pixels.ndim == 3 and pixels.shape[2] in {2, 4}:
        # a fully transparent pixel shows nothing, whatever its colour: its colour channels could
        # carry 3 bytes no viewer shows, so they are written as 0
        pixels[pixels[..., -1] == 0, :-1] = 0
    return flatten_faint(pixels), dpi


def flatten_faint(pixels):
    """``pixels`` (8-bit, H x W or H x W x channels) with every pixel within :data:`FAINT_LEVELS` of
    the picture's most common colour (its background) set to that colour, in place."""
    import numpy as np

    flat = pixels.reshape(len(pixels) * pixels.shape[1], -1)
    sample = flat[::max(1, len(flat) // 1_000_000)].astype(np.uint32)
    packed = sample[:, 0].copy()
    for channel in range(1, flat.shape[1]):
        packed = packed << 8 | sample[:, channel]
    colours, counts = np.unique(packed, return_counts=True)
    code = int(colours[counts.argmax()])
    background = [(code >> (8 * (flat.shape[1] - 1 - c))) & 0xFF for c in range(flat.shape[1])]
    near = np.ones(len(flat), dtype=bool)
    for channel, level in enumerate(background):
        near &= np.abs(flat[:, channel].astype(np.int16) - level) <= FAINT_LEVELS
    flat[near] = background
    return pixels


def _pixels_image(pixels):
    """A new image of 8-bit ``pixels`` (L, LA, RGB or RGBA by their shape): no text, profile or
    EXIF of the source."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(pixels))


def _sane_dpi(dpi) -> tuple[int, int] | None:
    try:
        x, y = (round(float(v)) for v in dpi)
    except (TypeError, ValueError, OverflowError):
        return None
    return (x, y) if all(_DPI[0] <= v <= _DPI[1] for v in (x, y)) else None


def _png(source: Path, target: Path) -> None:
    import numpy as np

    pixels, dpi = _decoded(source, "png")
    options = {"dpi": _sane_dpi(dpi)} if _sane_dpi(dpi) else {}
    buffer = io.BytesIO()
    _pixels_image(pixels).save(buffer, format="PNG", **options)
    target.write_bytes(buffer.getvalue())
    again, _ = _decoded(target, "png")
    if again.shape != pixels.shape or not np.array_equal(again, pixels):
        raise InvalidInput("its rebuilt copy does not hold the same pixels")


def _jpeg(source: Path, target: Path) -> None:
    import numpy as np

    pixels, _ = _decoded(source, "jpeg")
    if pixels.ndim == 3 and pixels.shape[2] in {2, 4}:
        pixels = pixels[..., :-1] if pixels.shape[2] == 4 else pixels[..., 0]
    buffer = io.BytesIO()
    _pixels_image(pixels).save(buffer, format="JPEG", quality=95, subsampling=0, optimize=False,
                               progressive=False)
    target.write_bytes(buffer.getvalue())
    again, _ = _decoded(target, "jpeg")
    if again.shape != pixels.shape or \
            np.abs(again.astype(np.int16) - pixels.astype(np.int16)).mean() > MAX_JPEG_DIFFERENCE:
        raise InvalidInput("its copy encoded again is not the same picture")


def _pdf(source: Path, target: Path) -> None:
    from .rebuild_pdf import rebuild_pdf

    rebuild_pdf(source, target)


def _notebook(source: Path, target: Path) -> None:
    from .rebuild_notebook import rebuild_notebook

    rebuild_notebook(source, target, lambda kind, figure, copy: _REBUILD[kind](figure, copy))


_REBUILD: dict[str, Callable[[Path, Path], None]] = {"parquet": _parquet, "xlsx": _xlsx, "png": _png,
                                                     "jpeg": _jpeg, "pdf": _pdf, "notebook": _notebook}


def rebuild(source: Path, target: Path, name: str) -> None:
    """Write at ``target`` (a new file) the copy of ``source`` rebuilt from its cells or pixels;
    raise :class:`InvalidInput` saying why when the gate cannot."""
    kind = rebuilt_kind(name)
    if kind is None:
        raise InvalidInput(f"{name}: the gate does not rebuild this kind of file")
    try:
        _REBUILD[kind](source, target)
    except InvalidInput as exc:
        target.unlink(missing_ok=True)
        raise InvalidInput(f"the gate cannot rebuild it from its {_WHAT[kind]}: {exc}") from None
    except MemoryError:
        target.unlink(missing_ok=True)
        raise InvalidInput(f"the gate cannot rebuild it from its {_WHAT[kind]}: it needs more memory than a "
                           "rebuild may use; save it again smaller, or export the table as CSV") from None
    except Exception as exc:  # a malformed file is the user's input: say so in one line
        target.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _FULL:
            raise InvalidInput(f"the gate cannot rebuild it from its {_WHAT[kind]}: the copy would be larger than "
                               "a rebuild may write; save it again smaller, or export the table as CSV") from None
        raise InvalidInput(f"the gate cannot rebuild it from its {_WHAT[kind]} ({type(exc).__name__}: "
                           f"{str(exc)[:200]}): save it again, or export the table as CSV") from None


#: a write that failed on a bound: the file's size (``RLIMIT_FSIZE``), the bytes or inodes of the
#: folder (a bounded file system), a quota
_FULL = frozenset({errno.EFBIG, errno.ENOSPC, errno.EDQUOT})
_WHAT = {"parquet": "columns", "xlsx": "cells", "png": "pixels", "jpeg": "pixels", "pdf": "pages",
         "notebook": "figures' pixels"}


def main(argv: list[str] | None = None) -> int:
    """The rebuild as a child process of the gate (:func:`pds_kernel.airlock.rebuild.rebuild_all`):
    reads ``[[source, target, name], ...]`` as JSON on its standard input and writes ``{name:
    null or why it cannot be rebuilt}`` on its standard output. With ``--items-file PATH`` (a
    Kubernetes Job, which has no input: :mod:`.rebuild_job`) it reads the items from ``PATH`` and
    prints the results as the last line of its log, after :data:`RESULT_MARKER` (the log also holds
    its errors). Imports nothing of the gate. A crash leaves no core file: the child's memory holds
    the files it read."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    args = sys.argv[1:] if argv is None else argv
    if args and (len(args) != 2 or args[0] != "--items-file"):
        print("usage: python -m pds_kernel.airlock.rebuild_formats [--items-file ITEMS.json]", file=sys.stderr)
        return 2
    items = json.loads(Path(args[1]).read_text(encoding="utf-8")) if args else json.load(sys.stdin)
    results = {}
    for source, target, name in items:
        try:
            rebuild(Path(source), Path(target), name)
            results[name] = None
        except InvalidInput as exc:
            results[name] = str(exc)
    if args:
        sys.stderr.flush()
        print("\n" + RESULT_MARKER + json.dumps(results), flush=True)
    else:
        json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
