"""The manifest's journal: committing a file appends one line, whatever the size of the lake; the
whole manifest is written once per run; a torn last line is ignored; readers see the journal."""

from __future__ import annotations

import json

import pytest

from pds_kernel import lake as lake_mod
from pds_kernel.errors import IntegrityError
from pds_kernel.ingest.manifest import Manifest, ManifestEntry


def _entry(i: int, table: str = "ER_PRS_F") -> ManifestEntry:
    month = f"{2000 + i // 12}{i % 12 + 1:02d}"
    return ManifestEntry(name=f"{table}_{month}.csv", table=table, month=month, sha256=f"{i:064x}",
                         rows_read=3, rows_loaded=3, rows_quarantined=0,
                         parquet=f"{table}/month={month}/{table}_{month}.parquet", quarantine=None,
                         run="r1", nulls={"A": 0}, missing_dates={}, unknown_codes={})


def test_a_commit_appends_one_line_whatever_the_lake_holds(tmp_path):
    manifest = Manifest(tmp_path)
    for i in range(2000):
        manifest.put(_entry(i))
    manifest.save()
    whole = (tmp_path / "_manifest.json").read_bytes()
    sizes = []
    for i in range(2000, 2100):
        manifest.put(_entry(i))
        manifest.flush()
        sizes.append((tmp_path / "_manifest.journal").stat().st_size)
    steps = {b - a for a, b in zip(sizes, sizes[1:])}
    assert max(steps) < 600, steps  # one short line per file, not the 2,000 entries again
    assert (tmp_path / "_manifest.json").read_bytes() == whole  # untouched until the run ends
    again = Manifest(tmp_path)
    assert len(again.entries) == 2100 and again.get(_entry(2099).name) == _entry(2099)
    again.save()
    assert not (tmp_path / "_manifest.journal").exists()
    assert len(json.loads((tmp_path / "_manifest.json").read_text())["files"]) == 2100


def test_a_torn_last_line_is_ignored_and_a_bad_line_is_an_error(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.put(_entry(0))
    manifest.put(_entry(1))
    manifest.flush()
    journal = tmp_path / "_manifest.journal"
    complete = journal.read_bytes()
    journal.write_bytes(complete + complete.splitlines()[0][:40])  # killed while writing a line
    assert set(Manifest(tmp_path).entries) == {_entry(0).name, _entry(1).name}
    journal.write_bytes(b"{not json}\n" + complete)
    with pytest.raises(IntegrityError, match="unreadable"):
        Manifest(tmp_path)


def test_readers_see_files_recorded_only_in_the_journal(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.put(_entry(0))
    manifest.save()
    before = lake_mod.snapshot_id(tmp_path)
    manifest.put(_entry(1))
    manifest.flush()
    files = lake_mod.committed_files(tmp_path, "ER_PRS_F")
    assert [p.name for p in files] == [f"ER_PRS_F_{_entry(i).month}.parquet" for i in (0, 1)]
    assert lake_mod.snapshot_id(tmp_path) != before
    assert [e.name for e in Manifest(tmp_path).of_table("ER_PRS_F")] == [_entry(0).name, _entry(1).name]
