"""The streamed parser (one polars streaming query) and the block parser give the same result.

Large files with clean bytes are parsed by :mod:`pds_kernel.ingest.streamed`; every other file, and
any file the streamed parser gives up on, by the block parser. Each variant of a claims file below
is parsed both ways (the size threshold set to 0, then out of reach) and must give the same
outcome: SHA-256, rows read, loaded and quarantined, the lake rows, the quarantine file byte for
byte, the column figures (nulls, missing dates, unknown codes) and the key hashes. Each variant
also says which parser must have loaded it, observed on the real functions.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from delivery_factory import fresh_runtime, make_rows, write_delivery, write_large_claims, write_table

from pds_kernel.ingest import codes, ingest_delivery, parse, streamed
from pds_kernel.ingest.parse import ParseJob, parse_file
from pds_kernel.snds.catalogue import ingestible_table

NOMENCLATURES = {c.name: c.nomenclature for c in ingestible_table("ER_PRS_F").columns if c.nomenclature}


def _lines(tmp_path: Path) -> list[bytes]:
    rows = make_rows(persons=600, months=("202301",))[("ER_PRS_F", "202301")]
    for i, row in enumerate(rows):
        row["BEN_RES_DPT"] = ("075", "2A", "999")[i % 3]  # 999: not in its nomenclature
        row["PSE_SPE_COD"] = (1, 26, 98)[i % 3]
    source = write_table(tmp_path / "rows.csv", "ER_PRS_F", rows)
    return source.read_bytes().split(b"\n")[:-1]


def _edit(lines: list[bytes], number: int, column: str, value: bytes) -> list[bytes]:
    """``lines`` with field ``column`` of line ``number`` (1: the header) set to ``value``."""
    lines = list(lines)
    fields = lines[number - 1].split(b";")
    fields[lines[0].split(b";").index(column.encode())] = value
    lines[number - 1] = b";".join(fields)
    return lines


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


#: name -> (how the file is made from the clean lines, the parser that must load it)
VARIANTS = {
    "clean": (lambda ls: _join(ls), "streamed"),
    "bad date": (lambda ls: _join(_edit(ls, 50, "EXE_SOI_DTD", b"31FOO2022:00:00:00")), "streamed"),
    "date of another month": (lambda ls: _join(_edit(ls, 60, "FLX_DIS_DTD", b"01FEB2023:00:00:00")),
                              "streamed"),
    "value outside its set": (lambda ls: _join(_edit(ls, 70, "BEN_SEX_COD", b"7")), "streamed"),
    "missing required value": (lambda ls: _join(_edit(ls, 80, "BEN_NIR_PSA", b"")), "streamed"),
    "number the reader refuses": (lambda ls: _join(_edit(ls, 90, "PRS_PAI_MNT", b"2.x")), "streamed"),
    "blank before a number": (lambda ls: _join(_edit(ls, 100, "PRS_ACT_QTE", b" 2")), "streamed"),
    "blank in a text": (lambda ls: _join(_edit(ls, 110, "PFS_EXE_NUM", b"751 234")), "streamed"),
    # the one space of the file: the streamed parser checks blanks around codes only when it holds one
    "blank after a code": (lambda ls: _join(_edit(ls, 105, "BEN_RES_DPT", b"075 ")), "streamed"),
    # a quote is never loaded (red team 14B): its line is quarantined by the block parser
    "quote in a text": (lambda ls: _join(_edit(ls, 120, "PFS_EXE_NUM", b'"751"')), "blocks"),
    "repeated key": (lambda ls: _join(ls[:130] + [ls[129]] + ls[130:]), "streamed"),
    "header ends with CR": (lambda ls: _join([ls[0] + b"\r"] + ls[1:]), "streamed"),
    "line short of a field": (lambda ls: _join(ls[:140] + [ls[140].rsplit(b";", 1)[0]] + ls[141:]), "blocks"),
    "line with a field too many": (lambda ls: _join(ls[:150] + [ls[150] + b";x"] + ls[151:]), "blocks"),
    "empty line": (lambda ls: _join(ls[:160] + [b""] + ls[160:]), "blocks"),
    # one field short and one too many: the separators add up, the reader must refuse the file
    "short and long lines": (lambda ls: _join(ls[:140] + [ls[140].rsplit(b";", 1)[0]] + ls[141:150]
                                              + [ls[150] + b";x"] + ls[151:]), "blocks"),
    "empty line and a long one": (lambda ls: _join(ls[:160] + [b"", ls[160] + b";" * 23] + ls[161:]),
                                  "blocks"),
    "NUL byte": (lambda ls: _join(_edit(ls, 170, "PFS_EXE_NUM", b"751\x00234")), "blocks"),
    "tab": (lambda ls: _join(_edit(ls, 175, "PFS_EXE_NUM", b"751\t234")), "blocks"),
    "latin-1 letter": (lambda ls: _join(_edit(ls, 180, "PFS_EXE_NUM", b"751\xe9")), "blocks"),
    "C1 byte": (lambda ls: _join(_edit(ls, 185, "PFS_EXE_NUM", b"751\x92")), "blocks"),
    "CRLF line ends": (lambda ls: b"\r\n".join(ls) + b"\r\n", "blocks"),
    "last line cut": (lambda ls: _join(ls)[:-3], "blocks"),
}


def _parse(source: Path, staging: Path, threshold: int, monkeypatch, table: str = "ER_PRS_F",
           month: str | None = "202301", **job) -> tuple:
    """Parse ``source`` (a file of ``table`` and ``month``; ``job``: other fields of its
    :class:`ParseJob`) with the streamed parser allowed from ``threshold`` bytes; the outcome and
    the parser that loaded the file ("streamed" or "blocks")."""
    monkeypatch.setattr(streamed, "MIN_BYTES", threshold)
    loaded_by = []
    real = parse._parse_streamed

    def recording(*args):
        done = real(*args)
        loaded_by.append("streamed" if done else "blocks")
        return done

    monkeypatch.setattr(parse, "_parse_streamed", recording)
    nomenclatures = {c.name: c.nomenclature for c in ingestible_table(table).columns if c.nomenclature}
    outcome = parse_file(ParseJob(source=str(source), table=table, month=month, staging=str(staging),
                                  nomenclatures=nomenclatures, **job))
    monkeypatch.setattr(parse, "_parse_streamed", real)
    return outcome, loaded_by[0] if loaded_by else None  # None: refused before either parser


def _keys(outcome) -> pl.DataFrame | None:
    if outcome.key_lines is not None:
        return outcome.key_lines
    return pl.read_parquet(outcome.lines) if outcome.lines else None


def _assert_same(blocks, streamed_outcome) -> None:
    for name in ("refused", "sha256", "bytes", "rows_read", "rows_loaded", "rows_quarantined", "empty"):
        assert getattr(blocks, name) == getattr(streamed_outcome, name), name
    assert blocks.stats == streamed_outcome.stats
    a, b = _keys(blocks), _keys(streamed_outcome)
    assert (a is None and b is None) or a.equals(b)
    assert bool(blocks.parquet) == bool(streamed_outcome.parquet) == (not blocks.refused)
    if blocks.parquet:
        assert pl.read_parquet(blocks.parquet).equals(pl.read_parquet(streamed_outcome.parquet))
    quarantine = [Path(o.quarantine).read_bytes() if o.quarantine else b"" for o in (blocks, streamed_outcome)]
    assert quarantine[0] == quarantine[1]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_both_parsers_load_and_quarantine_the_same_rows(variant, tmp_path, monkeypatch):
    make, parser = VARIANTS[variant]
    source = tmp_path / "ER_PRS_F_202301.csv"
    source.write_bytes(make(_lines(tmp_path)))
    blocks, by = _parse(source, tmp_path / "blocks", 1 << 60, monkeypatch)
    assert by == "blocks"
    candidate, by = _parse(source, tmp_path / "streamed", 0, monkeypatch)
    assert by == parser
    _assert_same(blocks, candidate)
    assert blocks.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    if variant != "clean" and parser == "streamed" and variant not in ("blank in a text",
                                                                        "header ends with CR", "repeated key"):
        assert candidate.rows_quarantined == 1 and candidate.quarantine
    if variant == "quote in a text":
        assert candidate.rows_quarantined == 1 and b"quote" in Path(candidate.quarantine).read_bytes()
    if variant == "blank after a code":
        assert b"blank_around_code" in Path(candidate.quarantine).read_bytes()
    if variant == "C1 byte":
        assert "C1 control character" in candidate.refused
    else:
        assert candidate.stats.unknown_codes.get("BEN_RES_DPT", 0) > 0


def test_a_large_clean_file_takes_the_streamed_parser_at_the_default_threshold(tmp_path, monkeypatch):
    source = write_large_claims(tmp_path / "ER_PRS_F_202301.csv", streamed.MIN_BYTES + (1 << 20))
    lines = source.read_bytes().count(b"\n")
    monkeypatch.setattr(streamed, "ROW_GROUP_ROWS", 10_000)  # several row groups in this file
    candidate, by = _parse(source, tmp_path / "streamed", streamed.MIN_BYTES, monkeypatch)
    assert by == "streamed" and candidate.rows_loaded == lines - 1
    blocks, _ = _parse(source, tmp_path / "blocks", 1 << 60, monkeypatch)
    _assert_same(blocks, candidate)
    groups = pq.read_metadata(candidate.parquet)
    sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
    assert sum(sizes) == lines - 1 and len(sizes) > 2 and set(sizes[:-1]) == {10_000}


def test_a_whole_delivery_gives_the_same_lake_and_report(tmp_path, monkeypatch):
    """The pipeline over both parsers: same files, statuses, figures and lake rows."""
    rows = make_rows(persons=400, months=("202301", "202302"))
    delivery = write_delivery(tmp_path / "delivery", rows)
    results, lakes = [], []
    for name, threshold in (("blocks", 1 << 60), ("streamed", 0)):
        monkeypatch.setattr(streamed, "MIN_BYTES", threshold)
        runtime = fresh_runtime(tmp_path / name)
        result = ingest_delivery(runtime, delivery, actor="test")
        results.append(sorted((f.name, f.status, f.rows_read, f.rows_loaded, f.rows_quarantined, f.sha256)
                              for f in result.files))
        lake = runtime.settings.paths.lake
        lakes.append({p.relative_to(lake): pl.read_parquet(p) for p in sorted(lake.rglob("*.parquet"))
                      if "_delta_log" not in p.parts})
    assert results[0] == results[1] and len(results[0]) == len(rows)
    assert lakes[0].keys() == lakes[1].keys() and lakes[0]
    for path, frame in lakes[0].items():
        assert frame.equals(lakes[1][path]), path


def test_a_run_never_loads_arrow(tmp_path):
    """Both parsers write with polars: ``pds ingest`` of large clean files (the claims of a national
    delivery, streamed) and of small ones (referentials with accented text, small claims files:
    the block parser) never loads pyarrow (~30 MiB of a whole delivery's peak), into an empty lake
    or one whose tables it checks against the ledger first."""
    config = tmp_path / "pds.yaml"
    config.write_text("paths:\n  lake: lake\n  reports: reports\n  state: state\n"
                      f"cli:\n  identities:\n    {json.dumps(getpass.getuser())}: alice\n")
    for month in ("202301", "202302"):
        delivery = tmp_path / month
        small = make_rows(persons=20, months=(month,))
        write_delivery(delivery, {k: v for k, v in small.items() if k != ("ER_PRS_F", month)})
        write_large_claims(delivery / f"ER_PRS_F_{month}.csv", streamed.MIN_BYTES + (1 << 20), month=month)
        done = subprocess.run(
            [sys.executable, "-c", "import atexit, sys\n"
             "atexit.register(lambda: print('arrow loaded:', 'pyarrow' in sys.modules, file=sys.stderr))\n"
             "from pds_kernel.cli import main; main()", "--config", str(config), "ingest", str(delivery)],
            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert f"ER_PRS_F_{month}.csv" in done.stdout and f"ER_PHA_F_{month}.csv" in done.stdout
        assert "loaded" in done.stdout and "refused" not in done.stdout
        assert "arrow loaded: False" in done.stderr, month


@pytest.mark.parametrize("threshold", [0, 1 << 60], ids=["streamed", "blocks"])
def test_threads_starting_together_build_each_nomenclature_once(threshold, tmp_path, monkeypatch):
    """The parse threads of a run start at the same time: each nomenclature's codes are built once,
    not once per thread (they were, ~0.09 s of CPU each at the start of a run)."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(streamed, "MIN_BYTES", threshold)
    codes.known_series.cache_clear()
    built = []
    uncached = codes.nomenclature_series

    def counted(name, column=None):
        built.append((name, column))
        return uncached(name, column)

    monkeypatch.setattr(codes, "nomenclature_series", counted)
    sources = [write_table(tmp_path / f"ER_PRS_F_20230{i}.csv", "ER_PRS_F",
                           make_rows(persons=300, months=(f"20230{i}",))[("ER_PRS_F", f"20230{i}")])
               for i in (1, 2)]
    jobs = [ParseJob(source=str(s), table="ER_PRS_F", month=s.stem[-6:], staging=str(tmp_path / s.stem),
                     nomenclatures=NOMENCLATURES) for s in sources]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(parse_file, jobs))
    assert all(o.rows_loaded > 0 for o in outcomes)
    assert len(built) == len(set(built)) == len(NOMENCLATURES)
    codes.known_series.cache_clear()  # the next tests build them with the real function
