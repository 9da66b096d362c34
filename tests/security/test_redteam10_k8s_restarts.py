"""Red team, tenth round: Kubernetes notebook restarts and the extract watch's own deadline.

The researcher's processes share the notebook container with the extract watch (its liveness probe,
``pds_kernel.extract.pod_watch``): they may write ``/dev/termination-log`` after the probe (the
kubelet gives the container a second after SIGTERM), slow the probe's walk past its ``--deadline``
(load the node), or stop it. What an adversary tries with that: to have a real change of the
extract recorded as a mere restart (the probe's refusal overwritten with the deadline's message)
and go on serving; to make the probe pass on a changed tree by making its deadline fire; to keep
a notebook that keeps ending alive past ``restartLimit``; to make the hub's home page show another
user's notice, or to grow the hub's memory with notices. Each test asserts the attack fails.

The pods are KubeSpawner's own (the PDS hooks) with kubelet-shaped statuses (tests/k8s/restart_pods.py),
read by the hub's real ``PdsKubeSpawner.poll``; the probe and the launcher's comparison are the
real modules run on real trees.
"""

from __future__ import annotations

import os
import subprocess
import sys

import k8s_restarts_support
import pytest

from pds_kernel.audit import AuditTrail
from pds_kernel.extract.pod_watch import UNFINISHED_PREFIX
from pds_kernel.extract.tree import CHECKED_ENV, REFUSED_EXIT
from pds_kernel.hub.kube_spawner import RESTARTED_EXIT
from pds_kernel.hub.notices import MAX_LENGTH, MAX_NOTICES, WorkspaceNotices
from pds_kernel.k8s.pod_status import REFUSAL_PREFIX
from tests.k8s.api_stand_in import terminated
from tests.k8s.conftest import write_fingerprint_record
from tests.k8s.restart_pods import entries, killed, notebook_pod, poll_seeing, restarted, started_alice

#: what the launcher writes when its restart finds the tree changed (tree.refuse_to_start)
LAUNCHER_REFUSAL = (REFUSAL_PREFIX + ": the extract mounted in this container is not the one its pod's "
                    "verify-extract container checked (it changed in between); the data manager must "
                    "re-publish it (pds extract build)")
#: the probe's deadline message, as the researcher's own process writes it over the probe's refusal
FAKE_UNFINISHED = (UNFINISHED_PREFIX + " comparing /data with its pod's check within 25 s (its own limit, "
                   "below the liveness probe's timeout): the notebook is ended unverified")


registry = k8s_restarts_support.registry


def _stops(runtime) -> list:
    return [e for e in AuditTrail(runtime.sessions).entries() if e.action == "workspace.stop"]


# ---- a change dressed as a restart ------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("code", [137, 143, 3], ids=["sigkill", "sigterm", "refused-exit"])
async def test_a_change_dressed_as_an_unfinished_walk_is_stopped_at_its_restart(settings, runtime, registry, code):
    """The probe found the tree changed; in the second before the kill the researcher's process
    wrote the deadline's message over its refusal: the hub reads a restart (audited as one), but the
    restart's launcher compares the tree again and refuses it; the next poll stops the server with
    the cause ``extract changed``. The notebook served nothing after its kill."""
    spawner, manifest = await started_alice(settings)
    first = notebook_pod(spawner, manifest, restarted(1, killed(code, FAKE_UNFINISHED)))
    assert await poll_seeing(spawner, first) is None
    (restart,) = entries(runtime, "workspace.restart")
    assert restart.details["cause"].startswith("the extract watch could not finish")
    # the restart: the launcher refuses before it serves; the kubelet backs off
    second = notebook_pod(spawner, manifest, restarted(2, terminated(REFUSED_EXIT, LAUNCHER_REFUSAL), back_off=True))
    assert await poll_seeing(spawner, second) == REFUSED_EXIT
    (stop,) = _stops(runtime)
    assert stop.details["cause"] == "extract changed" and stop.details["checked_at"] == "pod"


@pytest.mark.asyncio
async def test_the_launchers_refusal_seen_before_its_restart_stops_the_server_too(settings, runtime, registry):
    """The same, when the hub polls while the refused run is still the container's ``state``."""
    from tests.k8s.api_stand_in import container_status

    spawner, manifest = await started_alice(settings)
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, killed(137, FAKE_UNFINISHED)))) is None
    ended = container_status("notebook", terminated(REFUSED_EXIT, LAUNCHER_REFUSAL), last_state=killed(137, FAKE_UNFINISHED),
                             restarts=1)
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, ended)) == REFUSED_EXIT
    assert [e.details["cause"] for e in _stops(runtime)] == ["extract changed"]


@pytest.mark.asyncio
async def test_a_notebook_that_keeps_ending_is_stopped_whatever_it_says(settings, runtime, registry):
    """restartLimit restarts (3 in 10 minutes), each dressed as something else (the deadline's
    message, an exit 0 in the message, no message): the third stops the server."""
    spawner, manifest = await started_alice(settings)
    messages = [FAKE_UNFINISHED, "exit code 0: a normal end", ""]
    answers = []
    for run, message in enumerate(messages, start=1):
        answers.append(await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(run, killed(137, message)))))
    assert answers == [None, None, RESTARTED_EXIT]
    (stop,) = _stops(runtime)
    assert stop.details["cause"] == "restarted repeatedly"
    # polled again with the count going back down (a forged status): it stays stopped
    assert await poll_seeing(spawner, notebook_pod(spawner, manifest, restarted(1, killed(137, "")))) == RESTARTED_EXIT


# ---- the probe's deadline, run for real ----------------------------------------------------------------
def _checked_tree(tmp_path, entries_count: int):
    data = tmp_path / "data"
    (data / "many").mkdir(parents=True)
    for i in range(entries_count):
        (data / "many" / f"{i:05d}").write_text("1")
    record = tmp_path / "fingerprint"
    write_fingerprint_record(data, record)
    return data, record


def _probe(data, record, deadline: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-m", "pds_kernel.extract.pod_watch", str(data), "--record",
                           str(record), "--deadline", deadline], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("deadline", ["0.001", "0.01", "60"])
def test_a_changed_tree_never_passes_the_probe_whatever_its_deadline(tmp_path, deadline):
    """A walk made to outlast its deadline (the researcher loads the node) ends the probe with its
    own message and a failure, never a pass; the launcher's comparison at the restart, which has no
    deadline, refuses the changed tree."""
    data, record = _checked_tree(tmp_path, 20_000)
    (data / "many" / "00042").write_text("2")  # a file of the build replaced
    os.utime(data / "many" / "00042", (1, 1))
    done = _probe(data, record, deadline)
    assert done.returncode == REFUSED_EXIT, (done.returncode, done.stderr)
    launcher = subprocess.run(
        [sys.executable, "-I", "-c", "import os, sys; from pds_kernel.extract.tree import refuse_unless_checked; "
         f"refuse_unless_checked(os.environ, {str(data)!r}); print('served')"],
        env={**os.environ, CHECKED_ENV: str(record)}, capture_output=True, text=True, timeout=120)
    assert launcher.returncode == REFUSED_EXIT and "served" not in launcher.stdout, launcher.stderr
    assert REFUSAL_PREFIX in launcher.stderr


def test_a_stopped_probe_never_passes(tmp_path):
    """The researcher's process (same user) stops the probe with SIGSTOP, then lets it go on after
    its deadline: it ends in a failure, never 0 (the kubelet would have killed it meanwhile)."""
    import signal
    import time

    data, record = _checked_tree(tmp_path, 2_000)
    (data / "many" / "00001").unlink()
    proc = subprocess.Popen([sys.executable, "-I", "-m", "pds_kernel.extract.pod_watch", str(data), "--record",
                             str(record), "--deadline", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=60) == REFUSED_EXIT
    finally:
        proc.kill()
        proc.wait()


# ---- notices ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("other", ["al_ice", "al-ice", "alice2", "ALICE", "alice ", ""])
def test_a_notice_is_only_its_owners(other):
    """User names that look alike, or a server named like a user: each sees only their own."""
    notices = WorkspaceNotices()
    notices.tell("alice", "alpha-study", "alice's notice")
    notices.tell(other, "alpha-study", f"{other}'s notice")
    notices.tell(other, "alice", "a server named alice")
    assert notices.for_user("alice") == {"alpha-study": "alice's notice"}
    assert "alice's notice" not in notices.for_user(other).values()


def test_a_flood_of_notices_keeps_the_hubs_memory_bounded():
    """Notices for ever new (user, server) pairs, each text huge: at most MAX_NOTICES are kept, each
    cut to MAX_LENGTH characters; the newest are kept."""
    notices = WorkspaceNotices()
    huge = "x" * 1_000_000
    for i in range(MAX_NOTICES + 2_500):
        notices.tell(f"user{i}", "alpha-study", huge)
    kept = notices._notices
    assert len(kept) == MAX_NOTICES
    assert max(len(t) for t in kept.values()) == MAX_LENGTH
    assert notices.for_user(f"user{MAX_NOTICES + 2_499}") and not notices.for_user("user0")
