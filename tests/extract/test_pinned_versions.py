"""Extracts record the lake versions they read; the same spec on the same versions gives the same
bytes after the lake changed; a build on newer versions says what changed."""

from __future__ import annotations

import polars as pl
import pytest
from extract_lake import DIABETES_SPEC

from pds_kernel import lake as lake_mod
from pds_kernel.errors import NotFound
from pds_kernel.extract.build import run_build, run_check
from pds_kernel.extract.layout import file_hashes
from pds_kernel.extract.spec import parse_spec
from pds_kernel.lake import versions
from pds_kernel.lake.upgrade import commit_written_files


def _shas(result) -> dict[str, str]:
    return file_hashes(result.manifest)


def _correct_biggest_month(lake) -> tuple[int, int]:
    """Replace the ER_PRS_F month with the most rows by a copy without its first 5 rows and with
    every amount of the next 4 doubled (a new version); the rows removed and changed."""
    files = lake_mod.table_files(lake, "ER_PRS_F")
    old = max(files, key=lambda f: pl.read_parquet(f).height)
    frame = pl.read_parquet(old)
    fixed = frame.slice(5).with_row_index("i").with_columns(
        pl.when(pl.col("i") < 4).then(pl.col("PRS_PAI_MNT") * 2 + 1).otherwise(pl.col("PRS_PAI_MNT"))
        .alias("PRS_PAI_MNT")).drop("i")
    new = old.with_name("part.fixed.parquet")
    fixed.write_parquet(new)
    folder = lake / "ER_PRS_F"
    versions.commit(lake, "ER_PRS_F", [versions.AddedFile(str(new.relative_to(folder)), new.stat().st_size,
                                                          fixed.height)],
                    [str(old.relative_to(folder))], {"run": "test-correction", "entries": []})
    return 5, 4


@pytest.fixture
def versioned_lake(small_lake):
    commit_written_files(small_lake.path)
    return small_lake


def test_same_spec_on_the_same_versions_gives_the_same_bytes(runtime, registry, versioned_lake):
    lake = versioned_lake.path
    spec = parse_spec(DIABETES_SPEC)
    first = run_build(runtime, "diab-study", spec, actor="root")
    pinned = first.manifest["lake_versions"]
    assert pinned["ER_PRS_F"] == versions.latest_version(lake, "ER_PRS_F") == 1
    assert first.manifest["lake_changes"] == []
    removed, changed = _correct_biggest_month(lake)

    same = run_build(runtime, "diab-study", spec, actor="root", pin=pinned)
    assert _shas(same) == _shas(first)
    assert same.manifest["lake_versions"] == pinned and same.manifest["lake_snapshot"] == first.manifest["lake_snapshot"]
    assert run_check(runtime, "diab-study", actor="root").ok  # checked against the versions it read

    newer = run_build(runtime, "diab-study", spec, actor="root")
    assert newer.manifest["lake_versions"]["ER_PRS_F"] == 2
    assert newer.manifest["lake_snapshot"] != first.manifest["lake_snapshot"]
    [change] = newer.manifest["lake_changes"]
    assert (change["table"], change["from_version"], change["to_version"]) == ("ER_PRS_F", 1, 2)
    assert (change["added"], change["changed"], change["removed"]) == (0, changed, removed)
    assert change["columns_changed"] == {"PRS_PAI_MNT": changed}
    [audit] = [e for e in runtime.audit.entries(action="extract.build") if e.details.get("lake_changes")]
    assert audit.details["lake_changes"][0]["removed"] == removed

    back = run_build(runtime, "diab-study", spec, actor="root", pin=pinned)
    assert _shas(back) == _shas(first)


def test_a_pin_on_an_unknown_version_is_refused(runtime, registry, versioned_lake):
    with pytest.raises(NotFound, match="version 9 of table ER_PRS_F"):
        run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root", pin={"ER_PRS_F": 9})
