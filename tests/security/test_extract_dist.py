"""Attacks on the partitioned extract layout (issue #17: partitions by a hash of PERSON_ID).

Each test tampers with a real extract of several partitions per table, built by ``run_build``,
and asserts that the conformity check (or the notebook's reader) refuses it.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from extract_dist_support import (
    SPEC,
    build,
    manifest_of,
    partition_frames,
    rewrite_partition,
    writable_copy,
)

from pds_kernel import workspace as ws
from pds_kernel.errors import InvalidInput
from pds_kernel.extract.conformity import check_extract
from pds_kernel.extract.spec import PERSON_ID, parse_spec


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("pds"))


@pytest.fixture
def extract(built, tmp_path):
    path, cohort, raw, manifest = built
    assert manifest["partitions"] >= 3
    return writable_copy(path, tmp_path / "copy"), cohort, raw


def test_a_person_split_across_partitions_to_lift_k_is_refused(extract):
    """Move half of one person's claims into another partition: per-partition distinct-person
    counts would then count that person twice and could lift k; the check refuses the misplaced rows."""
    directory, cohort, raw = extract
    parts = partition_frames(directory, "ER_PRS_F")
    # a partition may hold no row (the persons' hashes decide, and the project key is new each build)
    source = next(i for i, p in enumerate(parts) if (p[PERSON_ID].value_counts()["count"].max() or 0) >= 2)
    person = parts[source][PERSON_ID].value_counts().sort("count")[PERSON_ID][-1]
    rows = parts[source].filter(pl.col(PERSON_ID) == person)
    moved, kept = rows.head(rows.height // 2), rows.slice(rows.height // 2)
    target = (source + 1) % len(parts)
    rewrite_partition(directory, "ER_PRS_F", source,
                      pl.concat([parts[source].filter(pl.col(PERSON_ID) != person), kept]))
    rewrite_partition(directory, "ER_PRS_F", target, pl.concat([parts[target], moved]))
    report = check_extract(directory, parse_spec(SPEC.text + "min_k: 1\n"), cohort, raw)
    assert not report.ok
    assert f"ER_PRS_F holds {moved.height} row(s) in a partition file other than their PERSON_ID's" in report.reasons


def test_an_unlisted_partition_file_dropped_in_a_table_directory_is_refused(extract):
    """A file named like a partition, added to a table's directory, is not listed: refused."""
    directory, cohort, raw = extract
    first = partition_frames(directory, "ER_PRS_F")[0]
    extra = directory / "ER_PRS_F" / "part-99999-of-99999.parquet"
    first.write_parquet(extra)
    report = check_extract(directory, SPEC, cohort, raw)
    assert not report.ok and "file ER_PRS_F/part-99999-of-99999.parquet is not listed in the manifest" in report.reasons


def test_a_manifest_partition_pointing_outside_the_extract_is_not_read(extract, monkeypatch, tmp_path):
    """A manifest whose partition list names a file of another directory: the notebook's reader
    refuses it rather than open it."""
    directory, _cohort, _raw = extract
    secret = tmp_path / "other-project" / "ER_PRS_F" / "part-00000-of-00001.parquet"
    secret.parent.mkdir(parents=True)
    pl.DataFrame({"x": [1]}).write_parquet(secret)
    manifest = manifest_of(directory)
    manifest["tables"]["ER_PRS_F"]["files"].append({"file": "ER_PRS_F/../../other-project/ER_PRS_F/part-00000-of-00001.parquet"})
    (directory / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("PDS_DATA_DIR", str(directory))
    with pytest.raises(InvalidInput, match="unexpected file"):
        ws.open_table("ER_PRS_F")
