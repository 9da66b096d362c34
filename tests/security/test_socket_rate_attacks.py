"""Floods of the host's services through the sockets a workspace is served (``hub.sock`` to the
hub API, ``gate.sock`` to the airlock gate, ``packages.sock`` to the package index), from a kernel
of a real workspace (bubblewrap) behind a real hub and gate, while an honest client of the same
hub and gate measures how long it waits for its answers.

The world's sockets are limited to :data:`~socket_rate_support.RATE` requests a second beyond a
burst of :data:`~socket_rate_support.BURST` (the defaults are 20 and 200: pds_kernel/settings.py).
"""

from __future__ import annotations

import shutil
import time

import pytest
import requests
from hub_identity_support import started_world
from hub_kernel import delete_kernel
from project_end_support import execute, start_workspace
from revocation_support import wait_for_gate
from socket_rate_support import (
    AGAIN,
    BUFFER_HOLD,
    BURST,
    CONNECTIONS,
    FLOOD,
    RATE,
    REQUESTS,
    SECONDS,
    LatencyProbe,
    answered,
    flood_result,
    gate_pid,
    make_rate_world,
    most_served,
    rss_bytes,
)

from pds_kernel.hub.local import airlock_port

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

SOCKETS = ("hub.sock", "gate.sock", "packages.sock")
#: The honest client's 90th percentile of waiting under a flood (idle: 0.01 s).
HONEST_P90 = 0.25


@pytest.fixture(scope="module")
def scene():
    """(hub, alice's client, her workspace's URL, the time the first flood started)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PDS_HUB_AIRLOCK", "on")
        with started_world(make_rate_world) as (hub, secret):
            wait_for_gate(hub)
            alice, url = start_workspace(hub, secret)
            yield hub, alice, url, time.monotonic()


def _flood(scene, ways: tuple[str, ...]) -> tuple[dict, LatencyProbe, LatencyProbe, float]:
    """Run a flood of ``ways`` in alice's kernel while honest clients ask the hub's API and the
    gate (not through her sockets): (what the flood got, the two probes, seconds it took)."""
    hub, alice, url, _ = scene
    time.sleep(BURST / RATE)  # the buckets refill after an earlier flood (the notebook server uses them too)
    gate = f"http://127.0.0.1:{airlock_port(hub.settings)}/services/airlock/api/openapi.json"
    with (LatencyProbe(lambda: requests.get(f"{hub.url}/hub/api/", timeout=30)) as honest_hub,
          LatencyProbe(lambda: requests.get(gate, timeout=30)) as honest_gate):
        started = time.monotonic()
        result = execute(url, alice.token, FLOOD.format(seconds=SECONDS, ways=ways), timeout=180)
        took = time.monotonic() - started
    return flood_result(result["stdout"]), honest_hub, honest_gate, took


def _responsive(*probes: LatencyProbe) -> None:
    for probe in probes:
        summary = probe.summary()
        assert not summary["failures"] and summary["p90"] < HONEST_P90, summary


def _audited_once_a_minute(scene) -> list:
    hub, *_, first = scene
    entries = hub.actions("workspace.socket.throttled")
    assert entries, "the refusals were not audited"
    assert len(entries) <= 1 + (time.monotonic() - first) // 60, [e.details for e in entries]
    assert all(e.outcome == "denied" and e.actor == "alice" and e.details["socket"] in SOCKETS for e in entries)
    return entries


def test_a_kernel_floods_the_hosts_services_with_requests(scene):
    """Got through before the fix: in 8 s, 2,814 requests answered by the hub API through
    ``hub.sock`` (350 a second), 2,184 by the gate and 6,390 by the package index, from one kernel,
    on kept-alive connections and on a new connection each; nothing but the sandbox's CPU quota
    bounded them. Now each socket serves its burst and its rate, then answers ``429`` with a
    ``Retry-After``, and the refusals are audited once."""
    result, honest_hub, honest_gate, took = _flood(scene, REQUESTS)
    for name in SOCKETS:
        assert answered(result, name) <= most_served(took), (name, result[name])
        kept = result[name]["keep"]
        assert kept["throttled"] > 0 and int(kept["retry_after"]) >= 1, (name, result[name])
    _responsive(honest_hub, honest_gate)
    _audited_once_a_minute(scene)


def test_a_kernel_floods_the_hosts_services_with_connections(scene):
    """Got through before the fix: a kernel opening and closing connections in a loop (14,000 in
    8 s on each socket) kept the hub's event loop busy accepting them and connecting each to the
    hub API: the hub's own API answered an honest client in 0.11 s (median) and 0.44 s (90th
    percentile), up to 0.88 s, instead of 0.01 s. Now a connection past the socket's rate is
    closed at once (the gate socket) or answered ``429`` without reaching the service behind it,
    and the workspace may use its sockets again once the burst has refilled."""
    _result, honest_hub, honest_gate, _took = _flood(scene, CONNECTIONS)
    _responsive(honest_hub, honest_gate)
    entries = _audited_once_a_minute(scene)
    assert sum(sum(e.details["refused"].values()) for e in entries) >= 1
    hub, alice, url, _ = scene
    time.sleep(BURST / RATE)
    again = execute(url, alice.token, AGAIN.format(wait=1), timeout=120)
    assert "AGAIN [200, 200, 200]" in again["stdout"], again


def test_a_kernel_makes_the_host_buffer_what_it_sends_and_never_reads(scene):
    """On each socket, 32 connections send a request head of 1 MiB that never ends and 32 send
    4 MiB of pipelined requests without reading an answer. The host side reads a head up to 16 KiB
    and refuses it, forwards one request at a time and stops reading while an answer waits
    (asyncio's flow control), and past the rate it refuses: what it buffers stays bounded (the
    hub, which serves the hub and package-index sockets, and the gate grow by less than 64 MiB
    together; 2 MiB here). Did not get through before this round either (11 MiB with 16
    connections of each kind), though the gate, then behind a byte forwarder, read 75 MB of
    pipelined requests from 16 connections (its server reads ahead): the request flood above."""
    hub, alice, url, _ = scene
    time.sleep(BURST / RATE)
    gate = gate_pid(hub.proc.pid)
    before = rss_bytes(hub.proc.pid) + rss_bytes(gate)
    result = execute(url, alice.token, BUFFER_HOLD.format(n=32), timeout=300, keep=True)
    try:
        assert "HOLDING" in result["stdout"], result
        time.sleep(2)
        grown = rss_bytes(hub.proc.pid) + rss_bytes(gate) - before
    finally:
        delete_kernel(url, alice.token, result["kernel_id"])
    assert grown < 64 * 1024 * 1024, f"the hub and the gate grew by {grown >> 20} MiB ({result['stdout'].strip()})"
