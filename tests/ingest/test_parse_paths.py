"""The one-read fast path and the two-read slow path of the parser give the same result.

Blocks whose every line has the right field count are read once and the raw text of quarantined
lines is rebuilt from the fields; other blocks are read as whole lines too. The same file parsed in
small blocks (most of them clean: fast path) and in one block (slow path, because of its ragged
lines) must load the same rows and quarantine the same lines, with the raw text verbatim.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from delivery_factory import make_rows, write_table

from pds_kernel.ingest.executor import LocalExecutor
from pds_kernel.ingest.parse import ParseJob, _read_block, lake_schema, parse_file
from pds_kernel.ingest.quarantine import read_quarantine


def _corrupted_file(path: Path) -> tuple[Path, dict[int, str]]:
    """ER_PRS_F rows with bad values (fast-path blocks) and ragged or empty lines (slow-path
    blocks); returns the file and the expected check of each bad line number."""
    rows = make_rows(persons=600, months=("202301",))[("ER_PRS_F", "202301")]  # > 64 KiB
    write_table(path, "ER_PRS_F", rows)
    lines = path.read_bytes().decode("latin-1").split("\n")
    header = lines[0].split(";")
    expected = {}

    def edit(number: int, column: str, value: str, check: str) -> None:
        fields = lines[number - 1].split(";")
        fields[header.index(column)] = value
        lines[number - 1] = ";".join(fields)
        expected[number] = check

    edit(5, "FLX_DIS_DTD", "32JAN2023:00:00:00", "unparsable")
    edit(9, "BEN_SEX_COD", "7", "not_in_set")
    edit(10, "PFS_EXE_NUM", "É", "unparsable")  # latin-1 text in a rebuilt raw line
    lines[10 - 1] = lines[10 - 1].replace(";1.0;", ";1,0;", 1)
    edit(12, "ETB_PRE_FIN", "", "unparsable")
    lines[12 - 1] = lines[12 - 1].replace(";3317;", ";x3317;")
    edit(40, "BEN_NIR_PSA", "", "missing_value")
    edit(44, "PRS_NAT_REF", " 3317", "unparsable")  # the typed reader would accept it
    edit(400, "BEN_RNG_GEM", "+1", "")  # accepted by both readers: loaded
    del expected[400]
    # Past the first 64 KiB block: lines that send their blocks to the slow path.
    edit(600, "PFS_EXE_NUM", "é;", "column_count")  # one field too many
    lines[700 - 1] = lines[700 - 1].rsplit(";", 3)[0]  # three fields short
    expected[700] = "column_count"
    lines[750 - 1] = ""  # an empty line in the middle
    expected[750] = "column_count"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    return path, expected


def _parse(source: Path, staging: Path, batch_rows: int):
    outcome = parse_file(ParseJob(source=str(source), table="ER_PRS_F", month="202301",
                                  staging=str(staging), batch_rows=batch_rows))
    assert not outcome.refused, outcome.refused
    quarantine = read_quarantine(Path(outcome.quarantine))
    # ER_PRS_F keys hold the file's month: with no key repeated in the file, no key file is kept
    assert outcome.lines == ""
    # the blocks of a file of several are staged as parts, joined into the lake file, then removed
    assert [p.name for p in staging.iterdir() if ".part" in p.name] == []
    lake = pl.read_parquet(outcome.parquet)
    assert lake.schema == pl.Schema(lake_schema("ER_PRS_F"))
    return outcome, lake, quarantine


def test_fast_and_slow_paths_agree(tmp_path):
    source, expected = _corrupted_file(tmp_path / "ER_PRS_F_202301.csv")
    text_lines = source.read_bytes().decode("latin-1").split("\n")
    small = _parse(source, tmp_path / "small", batch_rows=8)
    whole = _parse(source, tmp_path / "whole", batch_rows=1_000_000)
    for outcome, lake, quarantine in (small, whole):
        assert outcome.rows_read == len(text_lines) - 1 - (text_lines[-1] == "")
        assert outcome.rows_quarantined == len(expected)
        assert dict(zip(quarantine["line"], quarantine["check"])) == expected
        for row in quarantine.iter_rows(named=True):
            assert row["raw"] == text_lines[row["line"] - 1], "raw line kept verbatim"
        assert lake.height == outcome.rows_loaded
    assert small[1].equals(whole[1]) and small[2].equals(whole[2])


@pytest.mark.parametrize("block, fast", [
    (b"1;2;3\n4;5;6\n", True),
    (b"1;2;3\n4;5\n", False),       # too few fields: nulls, caught by the separator count
    (b"1;2;3\n4;5;6;7\n", False),   # too many: the strict read fails
    (b"1;2;3\n\n4;5;6\n", False),   # empty line
    (b";;\n1;2;3", True),           # only empty fields, last line without newline
])
def test_read_block_takes_the_fast_path_only_when_exact(block, fast):
    frame = _read_block(block, ["a", "b", "c"], "latin-1")
    assert ("__raw" not in frame.columns) is fast
    lines = block.decode().rstrip("\n").split("\n")
    assert frame.height == len(lines)
    assert frame["__fields"].to_list() == [line.count(";") + 1 for line in lines]


def test_local_executor_answers_every_job_in_order(tmp_path):
    sources = []
    for i in range(5):
        rows = make_rows(persons=5 + i, months=("202301",), seed=i)[("ER_PRS_F", "202301")]
        sources.append(write_table(tmp_path / f"ER_PRS_F_20230{i + 1}.csv", "ER_PRS_F", rows))
    jobs = [ParseJob(source=str(s), table="ER_PRS_F", month=s.stem[-6:], staging=str(tmp_path / "staging"))
            for s in sources]
    results = list(LocalExecutor(workers=2).run(jobs))
    assert [position for position, _ in results] == list(range(5))
    assert [outcome.name for _, outcome in results] == [s.name for s in sources]


@pytest.mark.parametrize("block, typed", [
    (b"1;2.5;a\n+3;-1e3;b c\n", False),  # a blank anywhere: text (" 1" would read as 1)
    (b"1;2.5;a\n+3;-1e3;b\n", True),
    (b"1;x;a\n", False),                  # not a number: text, for the checks to report it
    (b"1;;a\n;2;\n", True),              # empty fields are nulls either way
])
def test_numbers_are_read_typed_only_when_the_text_path_agrees(block, typed):
    numbers = {"a": pl.Int64, "b": pl.Float64}
    frame = _read_block(block, ["a", "b", "c"], "latin-1", numbers)
    assert (frame.schema["a"] == pl.Int64) is typed
    text = _read_block(block, ["a", "b", "c"], "latin-1")
    as_text = text.select(pl.col("a").cast(pl.Int64, strict=False), pl.col("b").cast(pl.Float64, strict=False))
    assert frame.select(pl.col("a").cast(pl.Int64, strict=False),
                        pl.col("b").cast(pl.Float64, strict=False)).equals(as_text)


def _keys(outcome) -> pl.DataFrame:
    """The key hashes a parse hands to the pipeline: in memory for a small file, else staged."""
    return outcome.key_lines if outcome.key_lines is not None else pl.read_parquet(outcome.lines)


def test_key_file_only_when_the_pipeline_needs_it(tmp_path, monkeypatch):
    """The key hashes (line and key hashes of each loaded row) are handed over when the file
    repeats a key, or when its table's keys may repeat another file's (PMSI): in memory for a
    small file, as a staged file for a large one; their lines are the loaded rows' lines, in
    order."""
    source, expected = _corrupted_file(tmp_path / "ER_PRS_F_202301.csv")
    lines = source.read_bytes().decode("latin-1").split("\n")
    source.write_bytes("\n".join(lines[:-1] + [lines[1], lines[-1]]).encode("latin-1"))  # line 2 again
    outcome = parse_file(ParseJob(source=str(source), table="ER_PRS_F", month="202301",
                                  staging=str(tmp_path / "dup"), batch_rows=100))
    keys = _keys(outcome)
    assert keys.height == outcome.rows_loaded
    assert set(keys["line"]).isdisjoint(expected) and keys["line"].is_sorted()
    assert keys.select(pl.struct("h1", "h2").is_duplicated().sum()).item() == 2

    from delivery_factory import make_rows, write_table

    rows = make_rows()
    pmsi = write_table(tmp_path / "T_MCOaaC_202301.csv", "T_MCOaaC", rows[("T_MCOaaC", "202301")])
    outcome = parse_file(ParseJob(source=str(pmsi), table="T_MCOaaC", month="202301",
                                  staging=str(tmp_path / "pmsi")))
    assert _keys(outcome).height == outcome.rows_loaded > 0 and outcome.lines == ""  # small: in memory

    import pds_kernel.ingest.parse as parse_mod

    monkeypatch.setattr(parse_mod, "INLINE_KEY_ROWS", 1)
    outcome = parse_file(ParseJob(source=str(pmsi), table="T_MCOaaC", month="202301",
                                  staging=str(tmp_path / "pmsi-large")))
    assert outcome.key_lines is None and pl.read_parquet(outcome.lines).height == outcome.rows_loaded
