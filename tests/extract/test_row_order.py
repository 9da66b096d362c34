"""The canonical row order (``sort_rows``) is exactly polars' sort on every column, nulls last.

It packs leading columns into one integer and only re-sorts ties, so the cases that matter are the
ones where packing stops or ties remain: nulls, NaN, strings, dates, wide integer ranges, all-null
columns, floats first, duplicate rows."""

from __future__ import annotations

import random
from datetime import date

import polars as pl
import pytest

from pds_kernel.extract.order import _string_codes, sort_rows

VALUES = {
    "str": (pl.String, ["a", "b", "ab", "", None, "Z", "é", "a b"]),
    "int": (pl.Int64, [1, 2, None, -5, 2**40]),
    "float": (pl.Float64, [1.0, float("nan"), None, 2.5, -1e300]),
    "date": (pl.Date, [date(2022, 1, 1), None, date(1600, 1, 1), date(2023, 12, 31)]),
    "small": (pl.UInt8, [0, 255, None]),
    "bool": (pl.Boolean, [True, False, None]),
    "wide": (pl.Int64, [-2**62, 2**62, 0]),  # a range too wide to pack
    "nulls": (pl.Int32, [None]),
    "u64": (pl.UInt64, [0, 2**64 - 1, 7, None]),
}


def reference(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True, maintain_order=True)


@pytest.mark.parametrize("seed", range(6))
def test_same_order_as_sorting_on_every_column(seed):
    rng = random.Random(seed)
    for _ in range(150):
        kinds = [rng.choice(list(VALUES)) for _ in range(rng.randint(1, 6))]
        height = rng.randint(0, 90)
        df = pl.DataFrame({f"c{i}": [rng.choice(VALUES[k][1]) for _ in range(height)] for i, k in enumerate(kinds)},
                          schema={f"c{i}": VALUES[k][0] for i, k in enumerate(kinds)})
        assert sort_rows(df).equals(reference(df)), (kinds, df)


def test_wide_table_with_ties_beyond_the_packed_columns():
    """Like an extract table: a pseudonym, keys that fit the 64-bit word, then more columns that
    must settle rows tying on the word (same person and keys, different amounts)."""
    rng = random.Random(42)
    height = 20_000
    df = pl.DataFrame({
        "PERSON_ID": [f"{rng.randrange(500):064x}" for _ in range(height)],
        "DCT_ORD_NUM": [rng.randrange(5_000_000_000) for _ in range(height)],
        "FLX_DIS_DTD": [date(2022, rng.randint(1, 12), 1) for _ in range(height)],
        "ORG_CLE_NUM": [rng.choice(["01C751000", "01C131000", None]) for _ in range(height)],
        "PRS_ORD_NUM": [rng.randrange(3) for _ in range(height)],
        "PRS_PAI_MNT": [rng.choice([1.5, 2.0, float("nan"), None]) for _ in range(height)],
        "NOTE": [rng.choice(["x", "y", None]) for _ in range(height)],
    })
    df = pl.concat([df, df.head(300)])  # exact duplicate rows too
    assert sort_rows(df).equals(reference(df))
    assert sort_rows(df.reverse()).equals(reference(df))  # the input order does not matter


def test_trivial_frames_are_returned_as_they_are():
    empty = pl.DataFrame(schema={"a": pl.String})
    assert sort_rows(empty).equals(empty)
    one = pl.DataFrame({"a": ["x"], "b": [None]})
    assert sort_rows(one).equals(one)


@pytest.mark.parametrize("hasher", [
    lambda s: pl.Series([0] * s.len(), dtype=pl.UInt64),           # every value collides
    lambda s: (s.str.len_bytes().fill_null(0)).cast(pl.UInt64),     # values of one length collide
], ids=["all-collide", "same-length-collide"])
def test_string_codes_stay_exact_when_hashes_collide(hasher):
    """Strings are coded through a 64-bit hash; a collision must fall back to the exact lookup,
    never merge two values into one code."""
    values = pl.Series("v", ["b", "a", None, "ab", "a", "", "ba", None, "é"])
    codes, distinct = _string_codes(values, hasher)
    expected = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}, key=str.encode))}
    assert distinct == len(expected)
    assert codes.to_list() == [expected.get(v) for v in values]
    assert _string_codes(values)[0].to_list() == codes.to_list()


def test_random_63_bit_numbers_are_packed_by_their_rank():
    """Keyed record numbers (random 63-bit integers) take the bits of their distinct values, not
    63: the columns after them still share the word, so few rows are left to polars' sort."""
    from pds_kernel.extract.order import _packed_word

    rng = random.Random(7)
    height = 5_000
    df = pl.DataFrame({
        "PERSON_ID": [f"{rng.randrange(300):064x}" for _ in range(height)],
        "DCT_ORD_NUM": [rng.choice([rng.randrange(2**63), None]) if rng.random() < 0.1 else rng.randrange(2**63)
                        for _ in range(height)],
        "FLX_DIS_DTD": [date(2022, rng.randint(1, 12), 1) for _ in range(height)],
        "PRS_ORD_NUM": [rng.randrange(3) for _ in range(height)],
    })
    df = pl.concat([df, df.head(200)])
    word, rest = _packed_word(df, df.columns)
    assert word is not None and rest == []
    assert sort_rows(df).equals(reference(df))
    assert sort_rows(df.sample(fraction=1.0, shuffle=True, seed=3)).equals(reference(df))
