"""Red team 12B: the intake writing identifying data where workspaces read.

The ingestion writes the lake (typed rows with every raw identifier, and ``_quarantine/`` CSV files
holding the delivered lines of the rows it set aside) and the quality report (whose examples quote
those lines). A platform configured with ``paths.lake`` or ``paths.reports`` inside a place a
workspace mounts or a reviewer reads (``paths.homes``: a researcher's private home; ``paths.projects``;
``paths.imports``...) hands a researcher raw identifiers on the first ingest. The key store was
guarded against this (``check_key_store_place``); the lake and the reports were not: 2 attempts,
both got through before the fix (the ingest succeeded and the researcher's home held a quarantined
line with a person's BEN_NIR_PSA). The ingest now refuses, audited, before reading anything.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from intake_damage_support import fresh_runtime, make_rows, write_delivery

from pds_kernel.errors import PermissionDenied
from pds_kernel.ingest import ingest_delivery
from pds_kernel.runtime import Runtime


@pytest.mark.parametrize("place", ["lake", "reports"])
def test_an_ingest_writing_into_a_researchers_home_is_refused(tmp_path, place):
    base = fresh_runtime(tmp_path)
    home = base.settings.paths.homes / "alice" / "diab-study"
    paths = replace(base.settings.paths, **{place: home / place})
    runtime = Runtime(replace(base.settings, paths=paths))
    rows = make_rows(months=("202301",))
    victim = rows[("ER_PRS_F", "202301")][0]["BEN_NIR_PSA"]
    delivery = write_delivery(tmp_path / "d", rows)
    prs = delivery / "ER_PRS_F_202301.csv"
    prs.write_bytes(prs.read_bytes().replace(victim.encode(), victim[:5].encode() + b"\x00" + victim[5:].encode(), 1))
    with pytest.raises(PermissionDenied, match=f"paths.{place} .* is inside paths.homes"):
        ingest_delivery(runtime, delivery, actor="operator")
    leaked = [p for p in home.rglob("*") if p.is_file() and victim[5:].encode() in p.read_bytes()]
    assert not leaked, leaked
    [entry] = runtime.audit.entries(action="ingest.run")
    assert entry.outcome == "failed" and f"paths.{place}" in entry.details["error"]
