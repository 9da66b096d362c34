"""The chart gives the gate its connection bounds (``airlock.connections`` -> settings ``gate.*``),
rendered with the real ``helm``; the schema and the template refuse values the gate would refuse."""

from __future__ import annotations

import json

import pytest

from pds_kernel.settings import Gate, load_settings

from .conftest import HUB_HOST_VALUES
from .test_chart import helm, render

PROJECT = {"id": "diab-2024", "title": "Diabetes", "start": "2025-01-01", "end": "2030-12-31"}


def _values(tmp_path, connections: dict | None) -> object:
    path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.json"
    airlock = {"connections": connections} if connections is not None else {}
    path.write_text(json.dumps({"projects": [PROJECT], "airlock": airlock}))
    return path


def _gate_env(docs: list[dict]) -> dict[str, str]:
    (airlock,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "pds-airlock"]
    env = airlock["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in env if e["name"].startswith("PDS_GATE__")}


def test_the_chart_defaults_are_the_settings_defaults(chart, tmp_path):
    env = _gate_env(render(chart, [_values(tmp_path, None)]))
    assert load_settings(environ=env).gate == Gate()
    assert env["PDS_GATE__MAX_CONNECTIONS"] == "512"


def test_chart_values_reach_the_gate_as_its_settings(chart, tmp_path):
    env = _gate_env(render(chart, [_values(tmp_path, {"idleSeconds": 30, "bodyMinBytesPerSecond": 1073741824,
                                                      "max": 4096, "maxPerPeer": 2048})]))
    gate = load_settings(environ=env).gate
    assert (gate.idle_seconds, gate.body_min_bytes_per_second) == (30, 1073741824)  # never 1.07e+09
    assert (gate.max_connections, gate.max_connections_per_peer, gate.body_grace_seconds) == (4096, 2048, 10)


@pytest.mark.parametrize("bad", [{"idleSeconds": 0}, {"idleSeconds": 7200}, {"bodyGraceSeconds": 0.5},
                                 {"bodyMinBytesPerSecond": 100}, {"max": 0}, {"maxPerPeer": "many"},
                                 {"typo": 1}])
def test_the_schema_refuses_bounds_the_gate_would_refuse(chart, tmp_path, bad):
    result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(_values(tmp_path, bad)))
    assert result.returncode != 0
    assert "schema" in result.stderr.lower() or "values don't meet" in result.stderr.lower(), result.stderr


def test_a_per_peer_cap_over_the_total_is_refused(chart, tmp_path):
    result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(_values(tmp_path, {"max": 100, "maxPerPeer": 200})))
    assert result.returncode != 0 and "maxPerPeer must be at most" in result.stderr
