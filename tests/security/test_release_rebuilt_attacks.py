"""Attacks on the gate's rebuild of tables and figures (docs/adr/0010-release-rebuilt-copies.md):
room the rebuilt copy kept that no viewer shows, small files that cost the gate minutes or
gigabytes, legitimate files whose copy changed without a word. Each passed before the fix in
pds_kernel/airlock/rebuild_formats.py named in its docstring."""

from __future__ import annotations

import datetime
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_disclosure_crafted import _shared_strings_workbook
from test_disclosure_hidden_channels import HIDDEN

from pds_kernel.airlock.rebuild_formats import MAX_JPEG_SCANS, MAX_TABLE_CELLS, rebuild
from pds_kernel.errors import InvalidInput


def _rebuilt(tmp_path: Path, name: str, data: bytes, tag: str = "x") -> bytes:
    source, target = tmp_path / f"{tag}-in-{name}", tmp_path / f"{tag}-out-{name}"
    source.write_bytes(data)
    rebuild(source, target, name)
    return target.read_bytes()


def _refused(tmp_path: Path, name: str, data: bytes, match: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=match):
        _rebuilt(tmp_path, name, data)
    assert time.monotonic() - started < 3, "refused, but only after the gate did the work"
    assert not (tmp_path / f"x-out-{name}").exists()


def _png(pixels: np.ndarray, mode: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, None if mode == "I;16" else mode).save(buffer, "PNG", **options)
    return buffer.getvalue()


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


# ---- room no viewer shows ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_the_colour_of_fully_transparent_pixels_does_not_leave(tmp_path, mode):
    """A pixel of alpha 0 shows nothing, whatever its colour: 256 such pixels of an RGBA figure hid
    768 bytes that the lossless copy kept (fix: their colour channels are written as 0)."""
    channels = {"RGBA": 3, "LA": 1}[mode]
    plain = np.zeros((16, 16, channels + 1), np.uint8)
    plain[..., :channels] = 255
    crafted = plain.copy()
    payload = np.resize(np.frombuffer(HIDDEN, np.uint8), (16, 16, channels))
    crafted[..., :channels] = payload
    copies = [_rebuilt(tmp_path, "fig.png", _png(p, mode), tag) for tag, p in (("plain", plain), ("crafted", crafted))]
    assert copies[0] == copies[1]
    assert not np.asarray(Image.open(io.BytesIO(copies[1])))[..., :channels].any()


def test_transparent_pixels_of_a_visible_figure_keep_their_look(tmp_path):
    """Zeroing the colour under alpha 0 changes nothing a viewer shows; half-transparent pixels keep theirs."""
    pixels = np.array([[[10, 20, 30, 0], [10, 20, 30, 128], [10, 20, 30, 255]]], np.uint8)
    out = np.asarray(Image.open(io.BytesIO(_rebuilt(tmp_path, "fig.png", _png(pixels, "RGBA")))))
    assert out.tolist() == [[[0, 0, 0, 0], [10, 20, 30, 128], [10, 20, 30, 255]]]


# ---- legitimate files the copy changed -----------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_a_grey_figure_with_a_transparent_grey_stays_transparent(tmp_path, mode):
    """A grey PNG whose tRNS chunk makes one grey transparent (what PNG optimisers write): its
    transparent pixels came back opaque, showing whatever they held (fix: written as grey + alpha)."""
    pixels = np.array([[0, 200], [0, 90]], np.uint8 if mode == "L" else np.uint16)
    if mode == "I;16":
        pixels = pixels * 257
    out = Image.open(io.BytesIO(_rebuilt(tmp_path, "fig.png", _png(pixels, mode, transparency=0))))
    assert out.mode == "LA"
    assert np.asarray(out).tolist() == [[[0, 0], [200, 255]], [[0, 0], [90, 255]]]


def test_times_of_a_named_zone_are_shown_in_that_zone(tmp_path):
    """A Europe/Paris column came back in UTC: midnight of 1 January read as 23:00 on 31 December in
    pandas (fix: a zone of the tz database or a fixed offset stays; any other text is refused)."""
    when = pd.Timestamp("2024-01-01 00:00", tz="Europe/Paris")
    table = pa.table({"day": pa.array([when], pa.timestamp("us", tz="Europe/Paris")), "persons": [120]})
    frame = pd.read_parquet(io.BytesIO(_rebuilt(tmp_path, "t.parquet", _parquet(table))))
    assert frame["day"][0] == when and str(frame["day"][0]) == "2024-01-01 00:00:00+01:00"


def test_a_zone_name_no_tz_database_knows_is_refused(tmp_path):
    table = pa.table({"day": pa.array([0], pa.timestamp("us", tz=HIDDEN.decode()[:200]))})
    _refused(tmp_path, "t.parquet", _parquet(table), "no zone of the tz database")


def test_an_error_cell_of_a_workbook_stays_an_error(tmp_path):
    """``#DIV/0!`` in a column of ratios came back as the text "#DIV/0!": the column turned from
    numbers into text for pandas, the checks and Excel (fix: error cells are written as errors)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["region", "ratio"])
    sheet.append(["N", 0.5])
    sheet.append(["S", "#N/A"])  # a text: stays a text
    sheet.cell(row=3, column=2).data_type = "s"
    sheet.append(["E", "#DIV/0!"])
    sheet.cell(row=4, column=2).data_type = "e"
    buffer = io.BytesIO()
    book.save(buffer)
    out = _rebuilt(tmp_path, "t.xlsx", buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(out)) as archive:
        xml = archive.read("xl/worksheets/sheet1.xml").decode()
    assert '<c r="B4" t="e"><v>#DIV/0!</v></c>' in xml and 't="e"><v>#N/A' not in xml
    assert pd.read_excel(io.BytesIO(out), na_values=[], keep_default_na=False)["ratio"].tolist() == \
        pd.read_excel(io.BytesIO(buffer.getvalue()), na_values=[], keep_default_na=False)["ratio"].tolist()


def test_dates_of_a_1904_workbook_keep_their_day(tmp_path):
    """A workbook of the Mac 1904 calendar: its dates are days from another origin (already right)."""
    from openpyxl import Workbook
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    book = Workbook()
    book.epoch = CALENDAR_MAC_1904
    book.active.append(["day", "persons"])
    book.active.append([datetime.datetime(2024, 3, 1), 120])
    buffer = io.BytesIO()
    book.save(buffer)
    frame = pd.read_excel(io.BytesIO(_rebuilt(tmp_path, "t.xlsx", buffer.getvalue())))
    assert frame["day"][0] == pd.Timestamp("2024-03-01")


# ---- small files that cost the gate minutes or gigabytes ---------------------------------------
def test_a_parquet_column_of_millions_of_equal_values_is_refused_before_it_is_read(tmp_path):
    """200 million zeros run-length encoded: a 870 kB file the rebuild read for 10 s into 1.6 GB (a
    billion: out of memory) (fix: rows x columns are bounded by the footer before anything is read)."""
    rows = MAX_TABLE_CELLS + 1
    data = _parquet(pa.table({"persons": pa.array(np.zeros(rows, np.int64))}))
    assert len(data) < 200_000
    _refused(tmp_path, "t.parquet", data, "cells: outputs are aggregates")


def test_a_parquet_dictionary_of_one_long_text_is_refused_before_it_is_decoded(tmp_path):
    """One 10 kB text used by 100,000 rows: 671 bytes of file, 1 GB once the dictionary is decoded
    (took 3 GB and 7 s; ten times the rows: out of memory) (fix: the texts are measured still encoded)."""
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(100_000, np.int32)), pa.array(["a" * 10_000]))
    data = _parquet(pa.table({"region": column}))
    assert len(data) < 2_000
    _refused(tmp_path, "t.parquet", data, "texts hold more than")


def test_a_workbook_of_millions_of_empty_shared_strings_is_refused_before_it_is_read(tmp_path):
    """2 million ``<si><t>a</t></si>``: an 88 kB workbook that openpyxl read for 20 s (the parts may
    unpack to 512 MB: minutes) (fix: the XML elements of the parts are counted first)."""
    plain = _shared_strings_workbook(pd.DataFrame({"region": ["N", "S"], "persons": [120, 230]}))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/sharedStrings.xml":
                data = data.replace(b"</sst>", b"<si><t>a</t></si>" * 2_000_000 + b"</sst>")
            dst.writestr(item.filename, data)
    assert len(out.getvalue()) < 200_000
    _refused(tmp_path, "t.xlsx", out.getvalue(), "XML elements")


def test_a_workbook_whose_entities_expand_is_refused(tmp_path):
    """Billion laughs in the shared strings: openpyxl parses with defusedxml (already refused)."""
    plain = _shared_strings_workbook(pd.DataFrame({"region": ["N", "S"], "persons": [120, 230]}))
    entities = '<!ENTITY a "' + "a" * 80 + '">' + "".join(
        f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/sharedStrings.xml":
                data = f"<!DOCTYPE sst [{entities}]>".encode() + data.replace(b"<si>", b"<si><t>&i;</t></si><si>", 1)
            dst.writestr(item.filename, data)
    _refused(tmp_path, "t.xlsx", out.getvalue(), "the gate cannot rebuild it")


def _segments(jpeg: bytes) -> list[tuple[int, bytes]]:
    """(marker, bytes) of each segment after SOI, a scan with its compressed data."""
    at, out = 2, []
    while jpeg[at + 1] != 0xD9:
        marker = jpeg[at + 1]
        end = at + 2 + int.from_bytes(jpeg[at + 2:at + 4], "big")
        if marker == 0xDA:
            while not (jpeg[end] == 0xFF and jpeg[end + 1] not in {0, *range(0xD0, 0xD8)}):
                end += 1
        out.append((marker, jpeg[at:end]))
        at = end
    return out


def test_a_progressive_jpeg_of_repeated_scans_is_refused_before_it_is_decoded(tmp_path):
    """A 36-megapixel progressive JPEG whose last scan (59 bytes) is repeated 1,000 times: 270 kB
    that took 23 s to decode (10,000 times: minutes) (fix: the scans are counted first)."""
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), (200, 100, 50)).save(buffer, "JPEG", progressive=True, quality=90)
    segments = _segments(buffer.getvalue())
    last_scan = [data for marker, data in segments if marker == 0xDA][-1]
    crafted = b"\xff\xd8" + b"".join(data for _, data in segments) + last_scan * 1000 + b"\xff\xd9"
    _refused(tmp_path, "fig.jpg", crafted, f"more than {MAX_JPEG_SCANS} scans")


def test_a_progressive_jpeg_of_the_usual_encoders_is_rebuilt(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(buffer, "JPEG", progressive=True, optimize=True)
    assert _rebuilt(tmp_path, "fig.jpg", buffer.getvalue())
