"""Readers see only committed files: what the manifest names, never what a killed ingest left."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from pds_kernel import lake as lake_mod
from pds_kernel.errors import IntegrityError, NotFound
from pds_kernel.ingest import ingest_delivery


def test_scan_table_ignores_files_the_manifest_does_not_name(runtime, delivery):
    ingest_delivery(runtime, delivery, actor="tester")
    lake = runtime.settings.paths.lake
    before = lake_mod.scan_table(lake, "ER_PRS_F").collect()
    committed = lake_mod.committed_files(lake, "ER_PRS_F")
    assert committed and all(p.is_file() for p in committed)
    # What a run killed between its rename into the lake and its manifest update leaves behind:
    # a copy of a committed file in a new month, and one next to the committed files.
    stray = lake / "ER_PRS_F" / "month=209912" / "ER_PRS_F_209912.parquet"
    stray.parent.mkdir(parents=True)
    shutil.copy(committed[0], stray)
    shutil.copy(committed[0], committed[0].with_name("ER_PRS_F_leftover.parquet"))
    assert stray.is_file()  # on disk...
    assert stray not in lake_mod.committed_files(lake, "ER_PRS_F")  # ...but not committed
    assert stray not in lake_mod.table_files(lake, "ER_PRS_F")  # so no reader (extracts too) sees it
    assert lake_mod.scan_table(lake, "ER_PRS_F").collect().equals(before)


def test_no_manifest_no_table(tmp_path):
    part = tmp_path / "lake" / "ER_PRS_F" / "month=202301"
    part.mkdir(parents=True)
    pl.DataFrame({"x": [1]}).write_parquet(part / "ER_PRS_F_202301.parquet")
    with pytest.raises(NotFound):
        lake_mod.scan_table(tmp_path / "lake", "ER_PRS_F")


@pytest.mark.parametrize("parquet", ["../../etc/passwd.parquet", "IR_BEN_R/snapshot/IR_BEN_R.parquet",
                                     "ER_PRS_F/month=202301/x.csv", 7])
def test_manifest_cannot_point_elsewhere(tmp_path, parquet):
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / lake_mod.MANIFEST_NAME).write_text(json.dumps(
        {"format": 1, "files": {"x.csv": {"table": "ER_PRS_F", "parquet": parquet}}}))
    with pytest.raises(IntegrityError):
        lake_mod.scan_table(lake, "ER_PRS_F")
