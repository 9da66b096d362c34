"""The quality report's foreign-key counts compare keys of several columns through one hash per
row: they must count exactly what the exact join on every column counts, nulls included."""

import polars as pl

from pds_kernel.ingest.report import _KEY_HASH, _key_hash

COLUMNS = ["FLX_DIS_DTD", "ORG_CLE_NUM", "PRS_ORD_NUM"]


def _frames():
    parent = pl.DataFrame({"FLX_DIS_DTD": ["2023-01-01", "2023-01-01", "2023-02-01", None],
                           "ORG_CLE_NUM": ["A", "B", "A", "A"],
                           "PRS_ORD_NUM": [1, 1, 2, 3]})
    child = pl.DataFrame({"FLX_DIS_DTD": ["2023-01-01", "2023-01-01", "2023-02-01", None, "2023-01-01", "2023-02-01"],
                          "ORG_CLE_NUM": ["A", "B", "B", "A", None, "A"],
                          "PRS_ORD_NUM": [1, 1, 2, 3, 1, 2]})
    return parent, child


def test_hashed_keys_count_what_the_exact_join_counts():
    parent, child = _frames()
    exact = child.join(parent, on=COLUMNS, how="anti", nulls_equal=False).height
    hashed = child.select(_key_hash(COLUMNS)).join(parent.select(_key_hash(COLUMNS)), on=_KEY_HASH,
                                                   how="anti", nulls_equal=False).height
    # (2023-02-01, B, 2) has no parent; the rows with a null key never match, even the one whose
    # parent row has the same null
    assert exact == 3
    assert hashed == exact


def test_a_key_with_a_null_hashes_to_null():
    _, child = _frames()
    hashes = child.select(_key_hash(COLUMNS)).get_column(_KEY_HASH)
    assert hashes.is_null().to_list() == [False, False, False, True, True, False]
