"""Red team, eleventh round: a researcher forges her notebook's report that the extract changed.

The extract watch (the notebook container's liveness probe) and the launcher write their refusal in
``/dev/termination-log``; the researcher's processes run in the same container and may write the
same words and exit with the same codes. What she gains: her own server stopped with the audit cause
``extract changed``, which sends administrators to re-publish an extract that is intact, or hides a
real restart's cause. What must hold: the hub cannot tell her report from the probe's, so its stop
entry says who reported it and that it is not confirmed (``reported_by: notebook``,
``confirmed: false``, a reason naming `pds extract verify`), only ``verify-extract`` (an init
container: none of her code runs there) confirms, and her next start is not refused on her word.

The pods are KubeSpawner's own (the PDS hooks) with kubelet-shaped statuses (tests/k8s/restart_pods.py),
read by the hub's real ``PdsKubeSpawner.poll``.
"""

from __future__ import annotations

import k8s_restarts_support
import pytest

from pds_kernel.extract.tree import REFUSED_EXIT
from pds_kernel.k8s.pod_status import REFUSAL_PREFIX
from tests.k8s.api_stand_in import container_status, pod_json, terminated, waiting
from tests.k8s.restart_pods import entries, killed, notebook_pod, poll_seeing, reflected, restarted, started_alice
from tests.k8s.test_spawner import make_spawner, spawn_manifest

#: the launcher's words, as the researcher's own process writes them before exiting
FORGED = (REFUSAL_PREFIX + ": the extract mounted in this container is not the one its pod's verify-extract "
          "container checked (it changed in between); the data manager must re-publish it (pds extract build)")


registry = k8s_restarts_support.registry


@pytest.mark.asyncio
@pytest.mark.parametrize("ended", [terminated(REFUSED_EXIT, FORGED), killed(137, FORGED), killed(143, FORGED)],
                         ids=["launchers-exit", "sigkill", "sigterm"])
async def test_a_forged_report_of_a_change_is_recorded_as_not_confirmed(settings, runtime, registry, ended):
    spawner, manifest = await started_alice(settings)
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, ended))) == REFUSED_EXIT
    (stop,) = entries(runtime, "workspace.stop")
    assert stop.details["cause"] == "extract changed"  # the hub stops: it cannot tell her words from the probe's
    assert stop.details["reported_by"] == "notebook" and stop.details["confirmed"] is False
    assert "not confirmed" in stop.details["reason"] and "pds extract verify" in stop.details["reason"]
    assert "next start is refused" not in stop.details["reason"]  # the old wording took her word for it


@pytest.mark.asyncio
async def test_her_next_start_is_not_refused_on_her_word(settings, runtime, registry):
    """After the forged report stopped her server, the hub's admission and its last word on the pod
    read only the audit trail's publication: her next start goes ahead (and its ``verify-extract``
    checks the extract for real)."""
    spawner, manifest = await started_alice(settings)
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, killed(137, FORGED)))) == REFUSED_EXIT
    again = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study"], "alpha-study"))
    assert [c["name"] for c in again["spec"]["initContainers"]] == ["verify-extract"]
    assert not [e for e in entries(runtime, "workspace.refused")]


@pytest.mark.asyncio
async def test_only_verify_extract_confirms(settings, runtime, registry):
    """The control: the same stop when ``verify-extract`` (re-run as the pod's sandbox restarts)
    refuses the extract is confirmed."""
    spawner, manifest = await started_alice(settings)
    pod = reflected(manifest, pod_json(spawner.pod_name, "pds", "Pending",
                                       [container_status("verify-extract", terminated(3, FORGED))],
                                       [container_status("notebook", waiting("PodInitializing"))], labels={}))
    assert await poll_seeing(spawner, pod) == REFUSED_EXIT
    (stop,) = entries(runtime, "workspace.stop")
    assert stop.details["reported_by"] == "verify-extract" and stop.details["confirmed"] is True
