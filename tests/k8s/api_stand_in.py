"""A loopback stand-in for the few routes of the Kubernetes API server a gate's Job uses, and pods'
statuses as the API server sends them.

There is no cluster here. :class:`JobApi` answers what :func:`pds_kernel.k8s.jobs.run_job` asks
(create a Job, read it, list its pods, read a container's log, delete it) over real HTTP on
127.0.0.1, with a kubeconfig naming it, so ``run_job`` runs unchanged with the real
``kubernetes_asyncio`` client. The pod it reports is built from ``kubernetes_asyncio``'s own
models (:func:`pod_json`) and serialised as the API server's JSON; a container's log is refused
as the API server refuses it while the container has not started.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


def _json(value):
    """A model's ``to_dict(serialize=True)`` without the unset (None) fields, as the API server sends it."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def terminated(exit_code: int, message: str = "", reason: str = "Error", finished_at: str | None = None):
    from kubernetes_asyncio import client

    return client.V1ContainerState(terminated=client.V1ContainerStateTerminated(
        exit_code=exit_code, reason=reason, message=message or None, finished_at=finished_at))


def waiting(reason: str):
    from kubernetes_asyncio import client

    return client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason=reason))


def running():
    from kubernetes_asyncio import client

    return client.V1ContainerState(running=client.V1ContainerStateRunning(started_at="2026-03-01T10:00:00Z"))


def container_status(name: str, state, last_state=None, restarts: int = 0, ready: bool = False):
    from kubernetes_asyncio import client

    return client.V1ContainerStatus(name=name, image="registry.example.org/pds/notebook:0.1.0", image_id="",
                                    ready=ready, restart_count=restarts, state=state, last_state=last_state)


POD_UID = "0b7f3c4e-1d2a-4e5f-9a8b-7c6d5e4f3a2b"


def pod_json(name: str, namespace: str, phase: str, init: list, containers: list, labels: dict | None = None,
             pod_ip: str | None = None, uid: str = POD_UID) -> dict:
    """A pod (kubernetes_asyncio's V1Pod) as the API server's JSON: what KubeSpawner's reflector
    keeps and what a list of pods is deserialised from."""
    from kubernetes_asyncio import client

    pod = client.V1Pod(api_version="v1", kind="Pod",
                       metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels or {},
                                                    uid=uid, resource_version="7"),
                       status=client.V1PodStatus(phase=phase, pod_ip=pod_ip, init_container_statuses=init,
                                                 container_statuses=containers))
    return _json(pod.to_dict(serialize=True))


class _ResponseHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        return

    def _send(self, code: int, body, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _LoopbackApi:
    """An HTTP server on 127.0.0.1 (a thread) answering with :meth:`_handler`'s class."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, tmp_path: Path, monkeypatch) -> Path:
        """Point ``kubernetes_asyncio`` (and ``$KUBECONFIG``) at this stand-in."""
        from .conftest import use_kubeconfig

        return use_kubeconfig(tmp_path, monkeypatch, self.url)

    def _handler(self):
        raise NotImplementedError


class JobApi(_LoopbackApi):
    """The API server of one namespace as a gate's Job sees it: ``pod_of(job manifest)`` gives the
    Job's ``status`` and its pod (JSON) once created, and ``logs`` the log of each container that ran."""

    def __init__(self, pod_of, logs: dict[str, str] | None = None):
        self.pod_of, self.logs = pod_of, logs or {}
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.log_reads: list[str] = []
        super().__init__()

    def _handler(self):
        api = self

        class Handler(_ResponseHandler):
            def do_POST(self):
                job = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.created.append(job)
                self._send(201, job)

            def do_DELETE(self):
                api.deleted.append(self.path.rsplit("/", 1)[-1].split("?")[0])
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

            def do_GET(self):
                url = urlsplit(self.path)
                job = api.created[-1]
                status, pod = api.pod_of(job)
                if url.path.startswith("/apis/batch/v1/"):
                    self._send(200, {**job, "status": status})
                elif url.path.endswith("/log"):
                    container = parse_qs(url.query)["container"][0]
                    api.log_reads.append(container)
                    states = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
                    state = next((s["state"] for s in states if s["name"] == container), {})
                    if "waiting" in state or not state:
                        self._send(400, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
                                         "message": f'container "{container}" in pod "{pod["metadata"]["name"]}" '
                                                    "is waiting to start: PodInitializing"})
                    else:
                        self._send(200, api.logs.get(container, ""), "text/plain")
                else:
                    self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]})

        return Handler


class PodsApi(_LoopbackApi):
    """The API server as the hub lists the pods of its namespace: ``GET
    /api/v1/namespaces/<namespace>/pods`` answers ``pods`` (JSON, :func:`pod_json`) that match the
    request's label selector (equality terms, as the hub sends), or, while ``refuse`` is set, that
    HTTP status (403: a Role without pods). ``requests``: the paths asked, in order."""

    def __init__(self, namespace: str, pods: list[dict] | None = None):
        self.namespace, self.pods = namespace, list(pods or [])
        self.refuse: int | None = None
        self.requests: list[str] = []
        super().__init__()

    def _handler(self):
        api = self

        class Handler(_ResponseHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                api.requests.append(self.path)
                if api.refuse is not None:
                    self._send(api.refuse, {
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "reason": "Forbidden", "code": api.refuse,
                        "message": f'pods is forbidden: User "system:serviceaccount:{api.namespace}:hub" cannot '
                                   f'list resource "pods" in API group "" in the namespace "{api.namespace}"'})
                    return
                if url.path != f"/api/v1/namespaces/{api.namespace}/pods":
                    self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})
                    return
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
                items = [pod for pod in list(api.pods)
                         if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
                self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"},
                                 "items": items})

        return Handler
