"""The gate's connection bounds as plain functions (the attacks on a served gate:
tests/security/test_redteam11_gate_connections.py)."""

from __future__ import annotations

import logging

from pds_kernel.airlock.web import connections
from pds_kernel.settings import Gate


def test_a_body_has_the_grace_then_its_size_at_the_minimum_rate():
    gate = Gate()
    assert connections.body_seconds(gate, 0) == 10
    assert round(connections.body_seconds(gate, 100 * 1024 * 1024)) == 10 + 1600  # 100 MiB: 27 min


def test_a_peer_is_its_tcp_address_and_the_unix_socket_one_peer():
    assert connections.peer_of(("10.0.0.7", 51234)) == "10.0.0.7"
    assert connections.peer_of(("::1", 51234, 0, 0)) == "::1"
    assert connections.peer_of("") == connections.peer_of(b"") == "unix"


def test_the_gate_warns_when_it_may_open_fewer_files_than_its_cap(monkeypatch, caplog):
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _which: (256, 4096))
    with caplog.at_level(logging.WARNING, logger=connections.__name__):
        connections.check_descriptors(Gate())
    assert "may open 256 files" in caplog.text and "gate.max_connections" in caplog.text
    caplog.clear()
    monkeypatch.setattr(connections.resource, "getrlimit", lambda _which: (65536, 65536))
    connections.check_descriptors(Gate())
    assert not caplog.text
