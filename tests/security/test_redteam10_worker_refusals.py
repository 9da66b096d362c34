"""Red team, tenth round: the hub's answer about a Dask cluster's refused worker pods, read by a
user whose name looks like another's, through encoded paths, or flooded.

``GET /hub/api/pds/worker-refusals/<user>/<server>?cluster=<name>`` matches the hub's audited
refusals by the worker pod's ``pds.user`` label. That label was ``user.replace("_", "-")``, so
``al_ice`` and ``al-ice``, two valid and distinct user names (``[a-z][a-z0-9._-]*``), shared one
label: ``al-ice``'s workspace, naming ``al_ice``'s cluster under its own path, was told about
``al_ice``'s refusal. It got through before its fix (the label is now the user name itself, a
valid label value, so no two users share one). The rest failed as they should.

The hub is the real JupyterHub in Kubernetes mode (tests/k8s/k8s_hub.py); the worker pods are
dask-gateway's own manifests with the PDS options (tests/k8s/dask_worker_pods.py), their refusals
audited as the hub's worker watch writes them.
"""

from __future__ import annotations

from datetime import date

import pytest
import pytest_asyncio
from worker_refusal_support import ask, hub_with_refusals

from pds_kernel.hub.worker_refusal_api import user_label
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from tests.k8s.conftest import two_projects, use_dummy_kubeconfig
from tests.k8s.dask_worker_pods import checked, listed_worker, start_refused, worker_manifest

UNDERSCORE_CLUSTER = "b" * 32


@pytest_asyncio.fixture
async def hub(settings, tmp_path, monkeypatch):
    use_dummy_kubeconfig(tmp_path, monkeypatch)
    runtime = Runtime(settings)
    registry = two_projects(Registry.from_runtime(runtime))
    for name in ("al_ice", "al-ice"):
        registry.upsert_user("admin", name, email=f"{name}@example.org")
        registry.add_member("admin", "alpha-study", name, "researcher", date(2030, 6, 30))
    # al_ice's alpha-study cluster: its worker pod's start refused the extract
    pod = listed_worker(worker_manifest(runtime, "al_ice", "alpha-study", UNDERSCORE_CLUSTER), "d4e5f",
                        "4d2e6f8a-1d2a-4e5f-9a8b-7c6d5e4f3a2b", "Running", [checked()], [start_refused(1)])
    async with hub_with_refusals(settings, tmp_path, runtime, [pod]) as h:
        yield h


async def _token(hub, user: str) -> str:
    return await hub.start_server(hub.sign_in(user, ["alpha-study"]), "alpha-study")


@pytest.mark.asyncio
async def test_the_owner_with_an_underscore_learns_it(hub):
    """The control: al_ice's own workspace is told of her cluster's refusal."""
    code, answer = await ask(hub, await _token(hub, "al_ice"), "al_ice@alpha-study/alpha-study", UNDERSCORE_CLUSTER)
    assert code == 200 and answer["refused"] is True


@pytest.mark.asyncio
async def test_a_user_whose_name_differs_by_an_underscore_learns_nothing(hub):
    """Got through before its fix: al-ice named al_ice's cluster under her own path and was told
    al_ice's cluster was refused (both users' pods carried the label ``al-ice``)."""
    code, answer = await ask(hub, await _token(hub, "al-ice"), "al-ice@alpha-study/alpha-study", UNDERSCORE_CLUSTER)
    assert code == 200 and answer == {"refused": False}


def test_no_two_valid_user_names_share_a_label():
    """The label of every user name is a different value (a few that a replacement would merge)."""
    names = ["al_ice", "al-ice", "al.ice", "a_b_c", "a-b-c", "a_b-c", "alice"]
    assert len({user_label(n) for n in names}) == len(names)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["al%5Fice@alpha-study/alpha-study", "al_ice@alpha-study%2Falpha-study",
                                  "al-ice@alpha-study/..%2Fal_ice@alpha-study%2Falpha-study",
                                  "al_ice@alpha-study/alpha-study%20", "AL_ICE@alpha-study/alpha-study",
                                  "al_ice%40alpha-study/alpha-study", "al_ice/alpha-study"])
async def test_another_users_path_in_an_encoded_form_is_refused(hub, path):
    """al-ice's workspace token on al_ice's path, percent-encoded or respelled: never her answer."""
    code, answer = await ask(hub, await _token(hub, "al-ice"), path, UNDERSCORE_CLUSTER)
    assert code in (400, 403, 404) or answer == {"refused": False}, (path, code, answer)
    assert answer.get("refused") is not True


@pytest.mark.asyncio
async def test_each_answer_names_who_asked(hub):
    """al-ice asking for her own server: the audit entry names her, not al_ice."""
    await ask(hub, await _token(hub, "al-ice"), "al-ice@alpha-study/alpha-study", UNDERSCORE_CLUSTER)
    (entry,) = [e for e in hub.runtime.audit.entries(action="dask.cluster.refusals")]
    assert (entry.actor, entry.target, entry.details["refused"]) == ("al-ice", "user:al-ice", False)


@pytest.mark.asyncio
async def test_a_workspace_asking_in_a_loop_cannot_fill_the_audit_trail(hub):
    """Got through before its fix: every answer is an audit entry (and an anchor line), and a
    workspace's token could ask as fast as the hub answers (30 questions: 30 entries; a loop, millions
    a day). Now one asker gets QUESTIONS_PER_MINUTE answers a minute, then 429, the first refusal
    of each minute audited."""
    from pds_kernel.hub.worker_refusal_api import QUESTIONS_PER_MINUTE

    token = await _token(hub, "al-ice")
    codes = [(await ask(hub, token, "al-ice@alpha-study/alpha-study", f"c{i}"))[0] for i in range(3 * QUESTIONS_PER_MINUTE)]
    entries = hub.runtime.audit.entries(action="dask.cluster.refusals")
    assert 429 in codes and codes[0] == 200, codes
    assert len(entries) <= 2 * (QUESTIONS_PER_MINUTE + 1), len(entries)  # a minute may turn during the loop
    assert [e.outcome for e in entries].count("denied") >= 1


@pytest.mark.asyncio
async def test_a_pds_administrators_token_reads_no_ones_refusals(hub):
    """A registry administrator (the ``pds:admins`` group: ``admin:servers``, never
    ``access:servers``) asks about al_ice's cluster with a token holding all their rights: refused
    by JupyterHub's scope check, as another user's workspace token is."""
    from pds_kernel.hub.oidc import ADMIN_GROUP

    Registry.from_runtime(hub.runtime).upsert_user("admin", "dave", email="dave@example.org", is_admin=True)
    admin = hub.sign_in("dave", [ADMIN_GROUP])
    token = admin.new_api_token(note="red team 10")
    assert "admin:servers" in (await hub.whoami(token))["scopes"]  # the control: an administrator's token
    code, answer = await ask(hub, token, "al_ice@alpha-study/alpha-study", UNDERSCORE_CLUSTER)
    assert code in (403, 404) and answer.get("refused") is not True, (code, answer)
