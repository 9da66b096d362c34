"""Kubernetes: every end of a workspace's notebook container is audited with its cause, a crash loop
stops the server, and the researcher's home page says why.

The pod is KubeSpawner's own (the PDS hooks), its status the API server's JSON
(:mod:`tests.k8s.restart_pods`), read by the hub's real ``PdsKubeSpawner.poll`` from its pod
reflector; the extract watch's deadline is the real module run against a directory; the home page
is the real hub's (tests/k8s/k8s_hub.py) rendering ``templates/home.html``. The attacks:
tests/security/test_k8s_notebook_restarts.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from tornado.httpclient import AsyncHTTPClient

from pds_kernel.errors import InvalidInput
from pds_kernel.extract.pod_watch import UNFINISHED_PREFIX
from pds_kernel.hub.common import HubContext
from pds_kernel.k8s.config import K8sConfig, parse_k8s_config
from pds_kernel.k8s.pods import watch_deadline
from pds_kernel.k8s.restarts import RestartLog, duration, memory_limit, notebook_end

from .api_stand_in import container_status, terminated
from .conftest import HUB_HOST_VALUES, helm_available, write_fingerprint_record
from .pod_cache import pods_seen_by
from .restart_pods import entries, killed, notebook_pod, oom, restarted
from .test_spawner import make_spawner, spawn_manifest

OTHER_UID = "1a2b3c4d-1d2a-4e5f-9a8b-7c6d5e4f3a2b"


async def _alice(settings, **k8s):
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study", k8s=K8sConfig(**k8s))
    return spawner, await spawn_manifest(spawner)


def _told_after_a_hub_restart(settings, spawner) -> None:
    """A new hub process (an upgrade, a crash) tells alice what the last one told her: the notice
    is built again from the audit trail."""
    again = HubContext.from_settings(settings)
    try:
        assert again.notices.for_user("alice") == spawner.context.notices.for_user("alice") != {}
    finally:
        again.runtime.close()


async def _poll(spawner, pod):
    with pods_seen_by(spawner, pod):
        return await spawner.poll()


@pytest.mark.asyncio
async def test_an_oom_kill_is_audited_once_with_the_pods_memory_limit(settings, runtime, registry, kubeconfig):
    """Before: the kubelet restarted the notebook, nothing was audited, nobody was told."""
    spawner, manifest = await _alice(settings)
    pod = notebook_pod(spawner, manifest, restarted(1, oom()))
    assert await _poll(spawner, pod) is None  # the server runs on (restarted)
    assert await _poll(spawner, pod) is None  # polled again: the same restart
    (entry,) = entries(runtime, "workspace.restart")
    assert (entry.actor, entry.project, entry.target, entry.outcome) == ("hub", "alpha-study", "user:alice", "failed")
    details = entry.details
    assert details["cause"] == "out of memory (limit 4 GiB)"  # alpha-study: 4096 MB (the pod's own limit)
    assert (details["reason"], details["exit_code"], details["restarts"]) == ("OOMKilled", 137, 1)
    assert (details["pod"], details["pod_uid"], details["unseen_restarts"]) == (spawner.pod_name, pod["metadata"]["uid"], 0)
    assert details["finished_at"] == "2026-03-01T10:05:00Z"
    assert not entries(runtime, "workspace.stop")
    notice = spawner.context.notices.for_user("alice")["alpha-study"]
    assert notice.startswith("Your workspace alpha-study was restarted at 2026-03-01 10:05:00 UTC: out of memory")
    assert "larger profile" in notice
    _told_after_a_hub_restart(settings, spawner)
    # the next restart of the same pod: a second entry
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(2, killed(1)))) is None
    assert [e.details["restarts"] for e in entries(runtime, "workspace.restart")] == [1, 2]


@pytest.mark.parametrize("ended,cause", [
    (killed(137), "the extract watch did not answer within 30 s (liveness probe timeout)"),
    (killed(143), "the extract watch did not answer within 30 s (liveness probe timeout)"),
    (killed(1), "exited with code 1"),
    (killed(137, "Killed by the researcher's script"), "exited with code 137"),
    (terminated(0, reason="Completed"), "exited with code 0"),
])
@pytest.mark.asyncio
async def test_the_cause_in_plain_words(settings, runtime, registry, kubeconfig, ended, cause):
    spawner, manifest = await _alice(settings)
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(1, ended))) is None
    (entry,) = entries(runtime, "workspace.restart")
    assert entry.details["cause"] == cause


@pytest.mark.asyncio
async def test_the_extract_refusal_keeps_precedence(settings, runtime, registry, kubeconfig):
    """The probe's refusal (its message, then the kubelet's kill): the server is stopped as an
    extract changed, as before, and no restart entry is written for it."""
    spawner, manifest = await _alice(settings)
    refusal = "the project's extract is refused: it changed while the workspace ran"
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(1, killed(137, refusal)))) == 3
    (stop,) = entries(runtime, "workspace.stop")
    assert stop.details["cause"] == "extract changed"
    assert not entries(runtime, "workspace.restart")


@pytest.mark.asyncio
async def test_restarts_within_the_window_stop_the_server_and_say_why(settings, runtime, registry, kubeconfig):
    spawner, manifest = await _alice(settings, restart_limit=3, restart_window_seconds=600)
    spawner.restart_log.reset()  # what start() does (the hub saw the server start)
    for count in (1, 2):
        assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(count, oom()))) is None
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(3, oom(), back_off=True))) == 1
    assert len(entries(runtime, "workspace.restart")) == 3
    (stop,) = entries(runtime, "workspace.stop")
    assert (stop.actor, stop.details["cause"]) == ("hub", "restarted repeatedly")
    assert stop.details["reason"] == "restarted 3 times in 10 minutes (the latest: out of memory (limit 4 GiB))"
    notice = spawner.context.notices.for_user("alice")["alpha-study"]
    assert notice.startswith("Your workspace alpha-study was restarted 3 times in 10 minutes and was stopped: "
                             "out of memory (limit 4 GiB).")
    assert "ask the project's data manager for a larger profile" in notice
    _told_after_a_hub_restart(settings, spawner)
    # JupyterHub polls again when it learns the server stopped: the same answer, nothing more written
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(3, oom(), back_off=True))) == 1
    assert len(entries(runtime, "workspace.stop")) == 1 and len(entries(runtime, "workspace.restart")) == 3


@pytest.mark.asyncio
async def test_restarts_spread_over_more_than_the_window_do_not_stop_it(settings, runtime, registry, kubeconfig):
    log = RestartLog(3, 600, saw_start=True)
    spawner, manifest = await _alice(settings)
    ends = [notebook_end(notebook_pod(spawner, manifest, restarted(n, oom())), watch_timeout=30) for n in (1, 2, 3)]
    assert [log.observe(e, t) for e, t in zip(ends, (0, 400, 700))] == [1, 1, 1]
    assert not log.looping(700)  # the first one is 700 s old
    assert log.observe(ends[2], 710) == 0  # seen before
    log.reset()
    assert not log.looping(710) and log.observe(ends[0], 720) == 1


@pytest.mark.asyncio
async def test_a_notebook_ended_before_its_restart_is_audited_as_a_stop(settings, runtime, registry, kubeconfig):
    """Read before the kubelet restarted it, KubeSpawner reports the server stopped (JupyterHub stops
    it): before, silently; now ``workspace.stop`` with the cause, and the home page says why."""
    spawner, manifest = await _alice(settings)
    spawner.delete_stopped_pods = False  # no API server here
    pod = notebook_pod(spawner, manifest, container_status("notebook", oom()))
    assert await _poll(spawner, pod) == 137
    (stop,) = entries(runtime, "workspace.stop")
    assert stop.details["cause"] == "out of memory (limit 4 GiB)" and stop.details["restarts"] == 0
    # the kubelet's restart of that same run, read afterwards: not a second entry
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(1, oom()))) is None
    assert not entries(runtime, "workspace.restart") and len(entries(runtime, "workspace.stop")) == 1
    assert spawner.context.notices.for_user("alice")["alpha-study"].startswith(
        "Your workspace alpha-study stopped at 2026-03-01 10:05:00 UTC: out of memory")
    _told_after_a_hub_restart(settings, spawner)


@pytest.mark.asyncio
async def test_after_a_hub_restart_earlier_restarts_make_no_crash_loop(settings, runtime, registry, kubeconfig):
    """A spawner the hub made for a server already running (it did not see the start) counts only
    the latest restart it reads; it is audited once, with the count."""
    spawner, manifest = await _alice(settings, restart_limit=3)
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(7, killed(1)))) is None
    (entry,) = entries(runtime, "workspace.restart")
    assert (entry.details["restarts"], entry.details["unseen_restarts"]) == (7, 0)


def test_memory_limits_for_people():
    def pod(memory):
        return {"spec": {"containers": [{"name": "notebook", "resources": {"limits": {"memory": memory}}}]}}
    assert [memory_limit(pod(m)) for m in ("8192Mi", "1500Mi", "8G", "2Gi", "1024", "8Gi; rm", 8, None)] == [
        "8 GiB", "1500 MiB", "8 GB", "2 GiB", "1024 bytes", "", "", ""]
    assert [duration(s) for s in (600, 60, 90, 3600, 7200, 86400, 1)] == [
        "10 minutes", "1 minute", "90 seconds", "1 hour", "2 hours", "1 day", "1 second"]


@pytest.mark.parametrize("data,why", [({"restart_limit": 0}, "positive integer"), ({"restart_limit": 21}, "at most 20"),
                                      ({"restart_window_seconds": 86401}, "at most 86400"),
                                      ({"dask_worker_wait_seconds": True}, "positive integer"),
                                      ({"dask_worker_wait_seconds": 3601}, "at most 3600")])
def test_k8s_config_bounds_the_restart_limit(data, why):
    with pytest.raises(InvalidInput, match=why):
        parse_k8s_config(data)


@pytest.mark.asyncio
async def test_the_hub_is_configured_from_the_k8s_config(settings, runtime, registry, kubeconfig):
    spawner, _ = await _alice(settings, restart_limit=5, restart_window_seconds=120, extract_watch_timeout_seconds=12)
    assert (spawner.restart_limit, spawner.restart_window, spawner.extract_watch_timeout) == (5, 120, 12)


# ---- the extract watch's own deadline, run for real --------------------------------------------------
@pytest.mark.parametrize("timeout,deadline", [(30, "25"), (5, "4"), (2, "1"), (1, "0.5"), (600, "595")])
def test_the_watch_deadline_leaves_room_below_the_probes_timeout(timeout, deadline):
    assert watch_deadline(timeout) == deadline


def test_a_walk_past_its_deadline_fails_closed_saying_so(tmp_path):
    """A tree too large to walk in the probe's time (here: 30,000 entries, a deadline of 10 ms):
    the probe ends with its own message, not the kubelet's silent timeout; a tree walked in time
    and unchanged passes."""
    data = tmp_path / "data"
    (data / "many").mkdir(parents=True)
    for i in range(30_000):
        (data / "many" / f"{i:05d}").touch()
    record = tmp_path / "fingerprint"
    write_fingerprint_record(data, record)

    def watch(deadline: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-I", "-m", "pds_kernel.extract.pod_watch", str(data), "--record",
                               str(record), "--deadline", deadline], capture_output=True, text=True, timeout=120)

    done = watch("0.01")
    assert done.returncode == 3 and done.stderr.startswith(UNFINISHED_PREFIX), done.stderr
    assert "within 0.01 s" in done.stderr and "compares the whole tree again" in done.stderr
    assert watch("60").returncode == 0
    assert watch("0").returncode == 2  # refused: no deadline at all is no bound


@pytest.mark.asyncio
async def test_an_unfinished_walk_is_a_restart_not_a_change(settings, runtime, registry, kubeconfig):
    """The probe's own deadline message: the kubelet kills the notebook; its restart compares the
    whole tree before it serves. The hub audits a restart with that cause, not an extract change."""
    spawner, manifest = await _alice(settings)
    message = UNFINISHED_PREFIX + " comparing /data with its pod's check within 24 s (...)"
    assert await _poll(spawner, notebook_pod(spawner, manifest, restarted(1, killed(3, message)))) is None
    (entry,) = entries(runtime, "workspace.restart")
    assert entry.details["cause"] == ("the extract watch could not finish its check of /data within 25 s "
                                      "(slow storage or a loaded node)")
    assert not entries(runtime, "workspace.stop")


# ---- the home page ----------------------------------------------------------------------------------
def signed_in_cookie(app, user) -> str:
    """The hub's login cookie of ``user``, as the hub sets it once its authenticator accepted them
    (``BaseHandler.set_login_cookie``: the user's cookie id signed with the hub's cookie secret)."""
    from tornado.web import create_signed_value

    name = app.hub.cookie_name
    value = create_signed_value(app.cookie_secret, name, user.orm_user.cookie_id).decode()
    return f"{name}={value}"


@pytest.mark.asyncio
async def test_the_home_page_says_why(settings, runtime, registry, tmp_path, kubeconfig):
    """The real hub's home page for alice shows her notice, and not bob's."""
    from .k8s_hub import Hub, start_hub, start_notebook_stand_in

    notebook, url = start_notebook_stand_in()
    app, server, api_url = await start_hub(settings, f"sqlite:///{tmp_path}/hub.sqlite", tmp_path, url)
    try:
        hub = Hub(app, api_url, app.services)
        alice, bob = hub.sign_in("alice", ["alpha-study", "beta-study"]), hub.sign_in("bob", ["alpha-study"])
        notices = app.authenticator.context.notices
        notices.tell("alice", "alpha-study", "Your workspace alpha-study was restarted 3 times in 10 minutes "
                                             "and was stopped: out of memory (limit 4 GiB).")
        notices.tell("bob", "alpha-study", "bob's own notice")
        pages = {}
        for user in (alice, bob):
            response = await AsyncHTTPClient().fetch(api_url.replace("/hub/api", "/hub/home"),
                                                     headers={"Cookie": signed_in_cookie(app, user)},
                                                     follow_redirects=False)
            pages[user.name] = response.body.decode()
        assert 'id="notice-alpha-study"' in pages["alice"], pages["alice"]
        assert "restarted 3 times in 10 minutes and was stopped: out of memory (limit 4 GiB)" in pages["alice"]
        assert "bob's own notice" not in pages["alice"] and 'id="notice-beta-study"' not in pages["alice"]
        assert "bob&#39;s own notice" in pages["bob"] and "restarted 3 times" not in pages["bob"]
    finally:
        server.stop()
        notebook.stop()
        app.db.close()


# ---- the chart's values ---------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.skipif(not helm_available(), reason="helm missing")
async def test_chart_values_reach_the_hubs_spawner_and_the_workspace(settings, runtime, registry, kubeconfig, tmp_path):
    from .test_extract_watch_k8s import _chart_spawner

    spawner, _ = _chart_spawner(tmp_path, settings, "--set", "workspace.restartLimit=5", "--set",
                                "workspace.restartWindowSeconds=1800", "--set", "workspace.daskWorkerWaitSeconds=300")
    assert (spawner.restart_limit, spawner.restart_window, spawner.extract_watch_timeout) == (5, 1800, 30)
    pod = await spawn_manifest(spawner)
    (notebook,) = pod["spec"]["containers"]
    assert {"name": "PDS_DASK_WORKER_WAIT_SECONDS", "value": "300"} in notebook["env"]
    defaults, _ = _chart_spawner(tmp_path / "defaults", settings)
    assert (defaults.restart_limit, defaults.restart_window) == (3, 600)


@pytest.mark.skipif(not helm_available(), reason="helm missing")
@pytest.mark.parametrize("value", ["workspace.restartLimit=0", "workspace.restartLimit=21",
                                   "workspace.restartWindowSeconds=86401", "workspace.daskWorkerWaitSeconds=0"])
def test_chart_refuses_out_of_bounds_restart_values(tmp_path, value):
    from .conftest import chart_without_dependencies
    from .test_chart import helm

    chart = chart_without_dependencies(tmp_path / "chart")
    done = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "--namespace", "pds", "--set", value)
    assert done.returncode != 0 and value.split(".")[1].split("=")[0] in done.stderr, done.stderr
