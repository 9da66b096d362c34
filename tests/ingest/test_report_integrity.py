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


def test_child_files_checked_in_groups_count_what_the_whole_tables_count(tmp_path, monkeypatch):
    """The report checks a child table's files in groups of about ``CHECK_ROWS`` rows (its memory
    stays bounded): one file per group or the whole table at once gives the counts of an exact
    join of the whole tables, orphans included."""
    from delivery_factory import fresh_runtime, make_rows, write_delivery

    from pds_kernel.ingest import ingest_delivery, report
    from pds_kernel.ingest.manifest import Manifest

    rows = make_rows(persons=40, months=("202301", "202302", "202303"))
    rows[("ER_PRS_F", "202302")][0]["BEN_NIR_PSA"] = "NIR_UNKNOWN_0001"  # a claim of nobody
    rows[("ER_PHA_F", "202303")][0]["DCT_ORD_NUM"] = 99_999_999  # a pharmacy line of no claim
    runtime = fresh_runtime(tmp_path)
    ingest_delivery(runtime, write_delivery(tmp_path / "delivery", rows), actor="tester")
    lake = runtime.settings.paths.lake
    manifest = Manifest(lake)
    counts = []
    for check_rows in (1, 10**9):
        monkeypatch.setattr(report, "CHECK_ROWS", check_rows)
        counts.append({i["name"]: (i["rows"], i["missing"]) for i in report.build_integrity(lake, manifest)})
    assert counts[0] == counts[1]
    claims = pl.read_parquet(lake / "ER_PRS_F" / "*" / "*.parquet")
    people = pl.read_parquet(lake / "IR_BEN_R" / "snapshot" / "*.parquet")
    exact = claims.join(people, on=["BEN_NIR_PSA", "BEN_RNG_GEM"], how="anti", nulls_equal=False).height
    assert counts[0]["claims_without_beneficiary"] == (claims.height, exact) and exact == 1
    assert counts[0]["pharmacy_without_claim"][1] == 1  # keys of 9 columns, compared as one hash
    runtime.close()
