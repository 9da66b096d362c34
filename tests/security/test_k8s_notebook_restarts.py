"""Red team: a Kubernetes workspace's notebook restarts, and the audit trail and the researcher's page.

Every end of a workspace's notebook container is now read from its pod's status by the hub's poll
(``pds_kernel.k8s.restarts``), audited once per (pod uid, run) and told on the researcher's home
page; a crash loop stops the server. What an adversary tries against that:

* the termination message is the researcher's to write (``/dev/termination-log`` is writable by
  the container's processes): a huge, ANSI-coloured, multi-line, HTML or forged-JSON message, to
  inject audit text, log lines or page markup; a message that mimics the extract watch's own deadline;
* status fields of the wrong type or shape (forged in a stand-in API server: the API server
  validates them, the hub must not rely on it): a reason with markup, an exit code as text, a
  restart count negative, huge or a boolean, a malformed finish time;
* restarts engineered to avoid the audit: the same pod name with a new uid (its count starting
  again at 0), a count that goes back down, a count that jumps;
* a flood of restarts to fill the audit trail.

Each pod is KubeSpawner's own (the PDS hooks) with a status built from kubernetes_asyncio's models
as the API server's JSON (tests/k8s/restart_pods.py), read by the hub's real ``PdsKubeSpawner.poll``;
the page is the real hub's home page.
"""

from __future__ import annotations

import k8s_restarts_support
import pytest
from tornado.httpclient import AsyncHTTPClient

from pds_kernel.extract.pod_watch import UNFINISHED_PREFIX
from pds_kernel.k8s.pod_status import MAX_MESSAGE
from tests.k8s.api_stand_in import terminated
from tests.k8s.restart_pods import entries, killed, notebook_pod, oom, poll_seeing, restarted, started_alice
from tests.k8s.test_notebook_restarts import signed_in_cookie

pytestmark = pytest.mark.asyncio


registry = k8s_restarts_support.registry

NEW_UID = "9f8e7d6c-1d2a-4e5f-9a8b-7c6d5e4f3a2b"
FORGED = ('\x1b[31m"}\n{"action": "workspace.start", "actor": "admin"}\r\n<script>alert(1)</script>'
          '<img src=x onerror=alert(2)>\u2028' * 20_000)[:1_000_000]


def _raw_status(pod: dict, **fields) -> dict:
    """``pod`` with its notebook's ``lastState.terminated`` and status fields overwritten as a forged
    API server would send them (no model validates them on the way)."""
    (notebook,) = pod["status"]["containerStatuses"]
    terminated_fields = fields.pop("terminated", {})
    notebook["lastState"]["terminated"].update(terminated_fields)
    notebook.update(fields)
    return pod


@pytest.mark.parametrize("ended", ["oom", "killed", "exited", "unfinished"])
async def test_a_forged_termination_message_injects_nothing(settings, runtime, registry, ended):
    spawner, manifest = await started_alice(settings)
    message = {"oom": FORGED, "killed": FORGED, "exited": FORGED,
               "unfinished": UNFINISHED_PREFIX + " " + FORGED}[ended]
    last = {"oom": terminated(137, message, reason="OOMKilled"), "killed": killed(137, message),
            "exited": killed(1, message), "unfinished": killed(3, message)}[ended]
    before = len(entries(runtime, None))
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, last))) is None
    (entry,) = entries(runtime, "workspace.restart")
    assert len(entries(runtime, None)) == before + 1  # nothing else written: no forged entry, no refusal
    kept = entry.details["pod_message"]
    assert len(kept) <= MAX_MESSAGE and "\n" not in kept and "\r" not in kept and "\x1b" not in kept
    assert "\u2028" not in kept
    cause = entry.details["cause"]
    assert "<" not in cause and '"' not in cause and "action" not in cause and len(cause) < 200
    notice = spawner.context.notices.for_user("alice")["alpha-study"]
    assert "<" not in notice and "script" not in notice and '"action"' not in notice and "\x1b" not in notice


@pytest.mark.parametrize("fields,cause", [
    # a reason with markup is no reason: a kill without a message
    ({"terminated": {"reason": "OOMKilled<script>alert(1)</script>"}},
     "the extract watch did not answer within 30 s (liveness probe timeout)"),
    ({"terminated": {"reason": "x" * 10_000, "exitCode": "137"}}, "ended without an exit code"),
    ({"terminated": {"reason": "Error", "exitCode": True}}, "ended without an exit code"),
    ({"terminated": {"reason": "Error", "exitCode": 2**70}}, "ended without an exit code"),
    ({"terminated": {"exitCode": 2**70}}, "out of memory (limit 4 GiB)"),
    ({"terminated": {"finishedAt": "2026-03-01T10:05:00Z<b>\n"}}, "out of memory (limit 4 GiB)"),
    ({"terminated": {"finishedAt": ["2026"]}}, "out of memory (limit 4 GiB)"),
])
async def test_forged_status_fields_are_not_trusted(settings, runtime, registry, fields, cause):
    spawner, manifest = await started_alice(settings)
    pod = _raw_status(notebook_pod(spawner, manifest, restarted(1, oom())), **fields)
    assert await poll_seeing(spawner, pod) is None
    (entry,) = entries(runtime, "workspace.restart")
    assert entry.details["cause"] == cause
    assert len(entry.details["reason"]) <= 40 and "<" not in entry.details["reason"]
    assert entry.details["finished_at"] in ("", "2026-03-01T10:05:00Z")
    assert entry.details["exit_code"] in (None, 137)


@pytest.mark.parametrize("count", [-5, "3", True, 2**40, None])
async def test_a_forged_restart_count_is_read_as_none(settings, runtime, registry, count):
    """A restart count that is not a count: no restart is made up (and no crash loop), no error."""
    spawner, manifest = await started_alice(settings)
    pod = _raw_status(notebook_pod(spawner, manifest, restarted(1, oom())), restartCount=count)
    for _ in range(3):
        assert await poll_seeing(spawner, pod) is None
    assert not entries(runtime, "workspace.stop") and not entries(runtime, "workspace.restart")


async def test_the_same_pod_name_with_a_new_uid_does_not_hide_a_restart(settings, runtime, registry):
    """The pod re-created under the same name (its uid changes, its count starts at 0 again): its
    first restart (count 1 again) is a new restart, audited, and counts toward the crash loop."""
    spawner, manifest = await started_alice(settings)
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, oom()))) is None
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(2, oom()))) is None
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, oom()), uid=NEW_UID)) == 1
    assert [e.details["pod_uid"] for e in entries(runtime, "workspace.restart")][-1] == NEW_UID
    assert len(entries(runtime, "workspace.restart")) == 3
    (stop,) = entries(runtime, "workspace.stop")
    assert stop.details["cause"] == "restarted repeatedly"


async def test_a_count_that_goes_back_down_is_no_new_restart_nor_a_lost_one(settings, runtime, registry):
    spawner, manifest = await started_alice(settings)
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(2, killed(1)))) is None
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, killed(1)))) is None
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(2, killed(1)))) is None
    (entry,) = entries(runtime, "workspace.restart")  # one entry: its count, two restarts seen once
    assert entry.details["restarts"] == 2


async def test_a_flood_of_restarts_writes_a_bounded_number_of_entries(settings, runtime, registry):
    """A notebook made to crash as fast as it can, polled after each restart: one entry per
    restart until the crash loop stops the server, then nothing more, whatever the pod says."""
    spawner, manifest = await started_alice(settings)
    answers = [await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(n, killed(1)))) for n in range(1, 60)]
    assert answers[:2] == [None, None] and set(answers[2:]) == {1}
    assert len(entries(runtime, "workspace.restart")) == 3 and len(entries(runtime, "workspace.stop")) == 1


async def test_a_count_jumping_by_a_million_is_one_entry_and_a_stop(settings, runtime, registry):
    """The hub missed restarts between two polls (or the status lies): one entry saying how many it
    did not see, the crash loop acted on, no loop of a million entries."""
    spawner, manifest = await started_alice(settings)
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1_000_000, killed(1)))) == 1
    (entry,) = entries(runtime, "workspace.restart")
    assert entry.details["unseen_restarts"] == 999_999
    assert len(entries(runtime, "workspace.stop")) == 1


async def test_the_researchers_message_never_reaches_the_home_page(settings, runtime, registry, tmp_path):
    """The notice the hub writes after a restart is built from validated fields only; the real home
    page (Jinja, autoescaped) shows it and none of the message the researcher wrote."""
    from tests.k8s.k8s_hub import Hub, start_hub, start_notebook_stand_in

    notebook, url = start_notebook_stand_in()
    app, server, api_url = await start_hub(settings, f"sqlite:///{tmp_path}/hub.sqlite", tmp_path, url)
    try:
        alice = Hub(app, api_url, app.services).sign_in("alice", ["alpha-study"])
        spawner, manifest = await started_alice(settings)
        spawner.context = app.authenticator.context  # the hub's (its notices are what its pages show)
        pod = notebook_pod(spawner, manifest, restarted(1, terminated(137, FORGED, reason="OOMKilled")))
        assert await poll_seeing(spawner, pod) is None
        page = (await AsyncHTTPClient().fetch(api_url.replace("/hub/api", "/hub/home"), follow_redirects=False,
                                              headers={"Cookie": signed_in_cookie(app, alice)})).body.decode()
        assert 'id="notice-alpha-study"' in page and "out of memory (limit 4 GiB)" in page
        assert "alert(1)" not in page and "onerror" not in page and "workspace.start" not in page
    finally:
        server.stop()
        notebook.stop()
        app.db.close()
