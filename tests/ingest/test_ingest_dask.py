"""``--dask``: files spread over a distributed cluster give the same lake, manifest and report."""

from __future__ import annotations

import json

import pytest
from delivery_factory import fresh_runtime, write_large_claims
from test_crash import _snapshot
from test_quarantine import _corrupt

from pds_kernel.errors import InvalidInput
from pds_kernel.ingest import ingest_delivery, parse, streamed

pytestmark = pytest.mark.slow


def _report(result) -> dict:
    report = json.loads(result.report_json.read_text())
    return {k: v for k, v in report.items() if k not in ("run", "generated", "lake")}


def test_dask_run_equals_local_run(tmp_path, delivery, monkeypatch):
    from distributed import LocalCluster

    _corrupt(delivery)
    (delivery / "ER_PRS_F_202302.csv").write_text(
        (delivery / "ER_PRS_F_202302.csv").read_text(encoding="latin-1")
        + (delivery / "ER_PRS_F_202302.csv").read_text(encoding="latin-1").splitlines()[1] + "\n",
        encoding="latin-1")  # a duplicate key, resolved by the pipeline after the workers
    # a large file with one bad date: the streamed parser loads it, on the workers too
    large = write_large_claims(delivery / "ER_PRS_F_202303.csv", streamed.MIN_BYTES + (1 << 20), month="202303")
    lines = large.read_bytes().split(b"\n")
    lines[1000] = lines[1000].replace(b"MAR2023:00:00:00", b"MAR2O23:00:00:00", 1)
    large.write_bytes(b"\n".join(lines))
    loaded_by = []
    real = parse._parse_streamed

    def recording(*args):
        loaded_by.append(real(*args))
        return loaded_by[-1]

    monkeypatch.setattr(parse, "_parse_streamed", recording)
    local_rt = fresh_runtime(tmp_path / "local")
    local = ingest_delivery(local_rt, delivery, actor="tester")
    assert loaded_by.count(True) == 1  # the large file, in this process
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        dask_rt = fresh_runtime(tmp_path / "dask")
        distributed = ingest_delivery(dask_rt, delivery, actor="tester", dask_address=cluster.scheduler_address)
    assert distributed.files == local.files
    assert _snapshot(tmp_path / "dask") == _snapshot(tmp_path / "local")
    assert _report(distributed) == _report(local)
    assert sum(f.rows_quarantined for f in local.files) == 13
    runs = dask_rt.audit.entries(action="ingest.run")
    assert runs[-1].details["dask"] is True


def test_bad_scheduler_address_is_a_clear_error(runtime, delivery):
    with pytest.raises(InvalidInput, match="cannot reach the Dask scheduler"):
        ingest_delivery(runtime, delivery, actor="tester", dask_address="nonsense://scheduler")
    assert not (runtime.settings.paths.lake / "ER_PRS_F").exists()
