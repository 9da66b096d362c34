"""Red team: the hub's answer to a workspace whose Dask cluster got no worker, read by someone else.

``GET /hub/api/pds/worker-refusals/<user>/<server>?cluster=<name>`` tells a workspace whether the
hub audited a refusal of the project's extract by its own cluster's worker pods
(``pds_kernel.hub.worker_refusal_api``): the path a researcher's ``dask_client()`` uses to say
"the extract check", not "no capacity". It adds no scope to any token; what an adversary tries:
another user's workspace token, the same user's workspace of another project (both refused by
JupyterHub's scope check before the endpoint's code: 404, it does not say the server exists), another user's
cluster name under one's own path, names made to escape the query, no token at all, and a pod
message made to reach the notebook.

The hub is the real JupyterHub in Kubernetes mode (tests/k8s/k8s_hub.py), its servers started
through its own ``User.spawn`` (their tokens minted from ``server_token_scopes``); the refusals are
audited as the hub's worker watch writes them (``refused_workers`` on dask-gateway's own worker pod
manifest as the API server lists it, tests/k8s/dask_worker_pods.py).
"""

from __future__ import annotations

import json

import pytest
import pytest_asyncio
from worker_refusal_support import ask, hub_with_refusals

from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from tests.k8s.conftest import two_projects, use_dummy_kubeconfig
from tests.k8s.dask_worker_pods import START_REFUSAL, checked, listed_worker, start_refused, worker_manifest

pytestmark = pytest.mark.asyncio

ALICE_CLUSTER = "a" * 32
FORGED = START_REFUSAL + '<script>alert(1)</script>"}\n{"refused": false}'


@pytest_asyncio.fixture
async def hub(settings, tmp_path, monkeypatch):
    use_dummy_kubeconfig(tmp_path, monkeypatch)
    runtime = Runtime(settings)
    two_projects(Registry.from_runtime(runtime))
    # alice's alpha-study cluster: its worker pod's start refused the extract (its message forged)
    pod = listed_worker(worker_manifest(runtime, "alice", "alpha-study", ALICE_CLUSTER), "a1b2c",
                        "3c1d5e7f-1d2a-4e5f-9a8b-7c6d5e4f3a2b", "Running", [checked()], [start_refused(1, message=FORGED)])
    async with hub_with_refusals(settings, tmp_path, runtime, [pod]) as h:
        yield h


async def _token(hub, user: str, project: str) -> str:
    groups = ["alpha-study", "beta-study"] if user == "alice" else ["alpha-study"]
    return await hub.start_server(hub.sign_in(user, groups), project)


async def test_the_owner_learns_it_and_only_the_hubs_sentence(hub):
    """The control: alice's own workspace gets the answer, without the pod's (forged) message."""
    code, answer = await ask(hub, await _token(hub, "alice", "alpha-study"), "alice@alpha-study/alpha-study", ALICE_CLUSTER)
    assert code == 200 and answer["refused"] is True
    assert set(answer) == {"refused", "cluster", "at", "container", "reason"} and answer["container"] == "dask-worker"
    assert "script" not in json.dumps(answer) and "re-publish it (pds extract build)" not in json.dumps(answer)


async def test_another_users_workspace_token_is_refused(hub):
    code, answer = await ask(hub, await _token(hub, "bob", "alpha-study"), "alice@alpha-study/alpha-study", ALICE_CLUSTER)
    assert code == 404 and answer == {}  # JupyterHub's refusal: it does not even say the server exists


async def test_the_same_users_workspace_of_another_project_is_refused(hub):
    code, _ = await ask(hub, await _token(hub, "alice", "beta-study"), "alice@alpha-study/alpha-study", ALICE_CLUSTER)
    assert code == 404


async def test_another_users_cluster_under_ones_own_path_says_nothing(hub):
    """bob names alice's cluster (its name learnt somehow) under his own server: no refusal of his."""
    code, answer = await ask(hub, await _token(hub, "bob", "alpha-study"), "bob@alpha-study/alpha-study", ALICE_CLUSTER)
    assert code == 200 and answer == {"refused": False}


async def test_the_same_cluster_name_under_another_project_says_nothing(hub):
    code, answer = await ask(hub, await _token(hub, "alice", "beta-study"), "alice@beta-study/beta-study", ALICE_CLUSTER)
    assert code == 200 and answer == {"refused": False}


@pytest.mark.parametrize("cluster", ["", "..%2F..%2Fhub", "a%20b", "x" * 64, "%2A", "a%0Ab", "-a"])
async def test_a_malformed_cluster_name_is_refused(hub, cluster):
    code, _ = await ask(hub, await _token(hub, "alice", "alpha-study"), "alice@alpha-study/alpha-study", cluster)
    assert code == 400


async def test_no_token_no_answer(hub):
    code, _ = await ask(hub, None, "alice@alpha-study/alpha-study", ALICE_CLUSTER)
    assert code == 403


async def test_no_services_token_reads_a_users_refusals(hub):
    """Every service the hub knows (the chart's dask-gateway and airlock, the membership watcher with
    ``admin:servers``) asks about alice's cluster with its own token: none holds ``access:servers``
    on her server, so JupyterHub refuses each before the endpoint's code, and nothing is audited as
    an answer."""
    tokens = {s["name"]: s["api_token"] for s in hub.app.services if s.get("api_token")}
    assert {"dask-gateway", "airlock", "pds-watcher"} <= set(tokens)  # the control
    for name, token in tokens.items():
        assert (await hub.whoami(token))["kind"] == "service", name
        code, answer = await ask(hub, token, "alice@alpha-study/alpha-study", ALICE_CLUSTER)
        assert code in (403, 404) and answer.get("refused") is not True, (name, code, answer)
    assert not [e for e in hub.runtime.audit.entries(action="dask.cluster.refusals") if e.outcome == "ok"]
