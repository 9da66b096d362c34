"""xgboost.dask through a real dask-gateway: the path a Kubernetes workspace takes.

dask-gateway-server 2026.3.0 runs here with its UnsafeLocalBackend (scheduler and workers are local
processes instead of pods) and its real proxy (TLS, SNI routing): the client sees only
``gateway://...``, as on Kubernetes. :func:`pds_kernel.training.fit_xgboost` must then bind XGBoost's
tracker to the scheduler's own address on the fixed tracker port, and train across both workers.
Not covered here: pods, NetworkPolicies (tests/k8s/test_netpol.py checks the tracker port there)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ports import free_port

from pds_kernel import training as T

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture
def gateway(tmp_path):
    """A dask-gateway server on loopback; yields (public address, proxy address)."""
    api, public, tcp = free_port(), free_port(), free_port()
    config = tmp_path / "dask_gateway_config.py"
    config.write_text(f"""
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{public}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = "test-only"
c.LocalClusterConfig.scheduler_cmd = [{str(BIN / "dask")!r}, "scheduler"]
c.LocalClusterConfig.worker_cmd = [{str(BIN / "dask")!r}, "worker"]
c.LocalClusterConfig.worker_threads = 1
c.LocalClusterConfig.worker_memory = "1 G"
c.UnsafeLocalBackend.clusters_directory = {str(tmp_path / "clusters")!r}
""")
    log = (tmp_path / "gateway.log").open("wb")
    server = subprocess.Popen([str(BIN / "dask-gateway-server"), "-f", str(config)], cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # the proxy answers 404 until the gateway has registered its API route with it
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{public}/api/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
                time.sleep(0.5)
        yield f"http://127.0.0.1:{public}", f"tcp://127.0.0.1:{tcp}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        gc.collect()  # dask_gateway clients left for the collector are finalised here (see gateway_processes)


def test_xgboost_trains_across_a_dask_gateway_cluster(gateway, monkeypatch):
    import dask.dataframe as dd
    from dask_gateway import BasicAuth, Gateway
    from sklearn.metrics import roc_auc_score

    address, proxy = gateway
    tracker_port = free_port()
    monkeypatch.setattr(T, "TRACKER_PORT", tracker_port)  # the chart's 8789 may be taken on a shared machine
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame(rng.normal(size=(n, 3)).astype("float32"), columns=["a", "b", "c"])
    frame["outcome"] = (frame["a"] + rng.normal(size=n) > 0).astype("int32")
    frame.insert(0, "PERSON_ID", [f"{i:064x}" for i in range(n)])
    with Gateway(address, proxy_address=proxy, auth=BasicAuth("alice", "test-only")) as gw:
        cluster = gw.new_cluster()
        try:
            cluster.scale(2)
            with cluster.get_client() as client:  # xgboost.dask needs it as the default client
                client.wait_for_workers(2, timeout=240)
                assert client.scheduler.address.startswith("gateway://")  # only the proxy is known
                cfg = T.collective_config(client)
                own = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.address)
                assert (cfg.tracker_host_ip, cfg.tracker_port) == (own.split("://")[1].rsplit(":", 1)[0], tracker_port)
                rows = client.persist(dd.from_pandas(frame, npartitions=2))
                client.rebalance(rows)
                held = client.has_what()
                assert len(held) == 2 and all(held.values())  # the rows are spread over both workers
                fit = T.fit_xgboost(client, rows, "outcome", rounds=20)
        finally:
            cluster.shutdown()
    assert fit.rows == n and fit.features == ["a", "b", "c"]
    assert roc_auc_score(frame["outcome"], T.predict(None, fit.booster, __import__("polars").from_pandas(frame),
                                                     fit.features)) > 0.75
