"""The key index finds every duplicate, across files and within one, and no false one."""

from __future__ import annotations

import polars as pl

from pds_kernel.ingest.keys import KeyIndex


def _hashes(pairs):
    return pl.DataFrame({"h1": [a for a, _ in pairs], "h2": [b for _, b in pairs]},
                        schema={"h1": pl.UInt64, "h2": pl.UInt64})


def _lines(*numbers):
    return pl.Series(list(numbers), dtype=pl.UInt32)


def test_duplicates_across_files_within_a_file_and_h1_collisions():
    index = KeyIndex("ER_PRS_F")
    index.add("a.csv", _hashes([(5, 1), (9, 1), (5, 2), (2**64 - 1, 7)]), _lines(2, 3, 4, 5))
    index.add("b.csv", _hashes([(1, 1), (7, 3)]), None)  # a lake file: lines unknown
    assert len(index) == 6
    new = _hashes([(5, 2),          # same key as a.csv line 4 (h1 shared with line 2)
                   (5, 3),          # h1 collision only: not a duplicate
                   (7, 3),          # same key as b.csv, line unknown
                   (2**64 - 1, 7),  # largest hash: a.csv line 5
                   (0, 0), (4, 4),  # new keys
                   (4, 4)])         # repeats line 7 of this file
    dups = index.find_duplicates(new, _lines(2, 3, 4, 5, 6, 7, 8))
    assert dups.rows() == [(0, 2, "a.csv", 4), (2, 4, "b.csv", None), (3, 5, "a.csv", 5), (6, 8, None, 7)]


def test_empty_index_and_no_duplicates():
    index = KeyIndex("ER_PRS_F")
    assert index.find_duplicates(_hashes([(1, 1), (2, 2)]), _lines(2, 3)).height == 0
    index.add("a.csv", _hashes([]), _lines())
    assert index.find_duplicates(_hashes([(1, 1)]), _lines(2)).height == 0
