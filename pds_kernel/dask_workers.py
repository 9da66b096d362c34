"""A workspace's Dask cluster on Kubernetes: wait for its first worker, and say why none came.

dask-gateway starts a cluster's scheduler, then asks Kubernetes for worker pods. A worker that
cannot start leaves the researcher's code waiting with no word: the nodes are full, the image
cannot be pulled, or the worker pod refuses the project's extract (its ``verify-extract`` container,
its start or its liveness probe: :mod:`pds_kernel.extract.checked_start`), which the hub audits
but nobody in the notebook sees. :func:`wait_for_first_worker`, called by
:func:`pds_kernel.workspace.dask_client`, waits at most ``$PDS_DASK_WORKER_WAIT_SECONDS`` (the
chart's ``workspace.daskWorkerWaitSeconds``, 120 s by default), saying so; when no worker joined it
asks the hub whether this cluster's worker pods refused the extract
(:mod:`pds_kernel.hub.worker_refusal_api`: the server's own token, its own cluster, nothing else),
shuts the cluster down and raises :class:`NoDaskWorker` saying which it was and what to do.

Standard library only besides ``distributed`` (it runs in the notebook image).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from .errors import PdsError

WAIT_ENV = "PDS_DASK_WORKER_WAIT_SECONDS"
DEFAULT_WAIT = 120.0
MAX_WAIT = 3600.0
#: the hub's endpoint (under ``$JUPYTERHUB_API_URL``)
REFUSALS_PATH = "/pds/worker-refusals"
#: seconds the question to the hub may take
HUB_TIMEOUT = 10


class NoDaskWorker(PdsError):
    """No worker joined a workspace's Dask cluster in time (the message says why, and what to do)."""

    http_status = 504


def wait_seconds(environ: Mapping[str, str]) -> float:
    """``$PDS_DASK_WORKER_WAIT_SECONDS`` when it is a number of seconds in (0, 3600], else 120."""
    try:
        value = float(environ.get(WAIT_ENV) or DEFAULT_WAIT)
    except ValueError:
        return DEFAULT_WAIT
    return value if 0 < value <= MAX_WAIT else DEFAULT_WAIT


def ask_hub(cluster: str, environ: Mapping[str, str]) -> tuple[dict[str, Any] | None, str]:
    """``(answer, "")``: whether the hub audited a refusal of the extract by ``cluster``'s worker
    pods; ``(None, why)`` when it could not be asked."""
    url, token = environ.get("JUPYTERHUB_API_URL"), environ.get("JUPYTERHUB_API_TOKEN")
    user, server = environ.get("JUPYTERHUB_USER"), environ.get("JUPYTERHUB_SERVER_NAME")
    if not (url and token and user and server):
        return None, "this is not a hub's workspace (no $JUPYTERHUB_API_URL, token, user or server name)"
    request = Request(f"{url.rstrip('/')}{REFUSALS_PATH}/{quote(user, safe='@')}/{quote(server, safe='')}"
                      f"?cluster={quote(cluster, safe='')}", headers={"Authorization": f"token {token}"})
    try:
        with urlopen(request, timeout=HUB_TIMEOUT) as response:
            answer = json.loads(response.read(65536))
    except (HTTPError, URLError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"
    return (answer, "") if isinstance(answer, dict) else (None, "the hub's answer is not an object")


def explain(cluster: str, waited: float, project: str, answer: dict[str, Any] | None, why: str) -> str:
    """What the researcher is told when no worker joined ``cluster`` within ``waited`` seconds."""
    head = f"No Dask worker joined your cluster {cluster} within {waited:g} s; the cluster was shut down."
    if answer and answer.get("refused") is True:
        at = str(answer.get("at") or "")[:40]
        return (f"{head} Its worker pods refused the project's extract (the hub recorded it at {at}): "
                f"{str(answer.get('reason') or '')[:300]}. This is not a lack of capacity: waiting or asking "
                "for fewer workers will not help. Tell the project's data manager; nothing runs on this "
                "extract until it is re-published or verified.")
    asked = ("the hub recorded no refusal of the project's extract by its worker pods"
             if answer is not None else f"the hub could not be asked whether its worker pods refused the "
                                        f"project's extract ({why})")
    return (f"{head} {asked[0].upper()}{asked[1:]}. Likely causes: no room in the cluster for a worker "
            "of this project's size (try again later, or with fewer workers: dask_client(workers=1)), or "
            "the worker image could not be pulled or started. If it persists, an administrator can see "
            f"what the hub recorded with `pds audit show --project {project} --action extract.mount_refused` "
            "and the worker pods with `kubectl get pods -l pds.component=dask-worker`.")


def wait_for_first_worker(client, cluster, *, timeout: float, environ: Mapping[str, str] | None = None,
                          out=None) -> None:
    """Wait at most ``timeout`` seconds for ``cluster``'s first worker (``client`` on it), saying so
    on ``out``; otherwise close both and raise :class:`NoDaskWorker` with :func:`explain`."""
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    name = str(getattr(cluster, "name", "") or "")
    print(f"Waiting up to {timeout:g} s for the first worker of Dask cluster {name} ...", file=out, flush=True)
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        answer, why = ask_hub(name, environ)
        client.close()
        cluster.close()
        raise NoDaskWorker(explain(name, timeout, environ.get("PDS_PROJECT") or "<project>", answer, why)) from None
    print("A worker joined: the cluster is ready.", file=out, flush=True)
