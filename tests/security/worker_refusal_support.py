"""The real JupyterHub in Kubernetes mode with Dask worker refusals already audited, and a question
to its worker refusals endpoint (``pds_kernel.hub.worker_refusal_api``): shared by the red-team files
on that endpoint."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from pds_kernel.k8s.worker_refusals import refused_workers
from tests.k8s.k8s_hub import Hub, start_hub, start_notebook_stand_in


@asynccontextmanager
async def hub_with_refusals(settings, tmp_path, runtime, pods: list[dict]):
    """The hub on ``runtime``'s platform, after the hub's worker watch audited the refusals of the
    listed worker ``pods`` (as the API server lists them)."""
    for refusal in refused_workers({"kind": "PodList", "items": pods}):
        runtime.audit.record(refusal.audit_event())
    notebook, url = start_notebook_stand_in()
    app, server, api_url = await start_hub(settings, f"sqlite:///{tmp_path}/hub.sqlite", tmp_path, url)
    hub = Hub(app, api_url, app.services)
    hub.runtime = runtime
    try:
        yield hub
    finally:
        server.stop()
        notebook.stop()
        app.db.close()
        runtime.close()


async def ask(hub, token: str | None, path: str, cluster: str) -> tuple[int, dict]:
    """The endpoint's status and JSON answer ({} when refused) for ``<path>?cluster=<cluster>``."""
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        response = await AsyncHTTPClient().fetch(f"{hub.api_url}/pds/worker-refusals/{path}?cluster={cluster}",
                                                 headers=headers, follow_redirects=False)
    except HTTPClientError as exc:
        return exc.code, {}
    return response.code, json.loads(response.body)
