"""The chart's clamd beside the gate (``airlock.clamd``, with ``airlock.clamavDatabaseClaim``),
rendered with the real ``helm``: the gate scans through its socket, clamd is configured as the
gate expects (:func:`pds_kernel.airlock.clamav.clamd_config`) and holds nothing of the gate's
(no token, no staging, outbox, imports, audit key nor database secret). The daemon itself runs for
real in tests/security/test_redteam18_clamd.py."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from pds_kernel.airlock.clamav import clamd_config
from pds_kernel.settings import Airlock

from .test_chart import K8S_VERSION, mounts_token, render

SOCKET = "/run/clamd/clamd.sock"


def airlock_release(chart, tmp_path, **airlock) -> dict:
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"airlock": airlock}))
    return {(d["kind"], d["metadata"]["name"]): d for d in render(chart, [values])}


def test_the_gate_scans_through_the_clamd_beside_it(chart, tmp_path):
    docs = airlock_release(chart, tmp_path, clamavDatabaseClaim="clamav-signatures")
    pod = docs[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    gate, clamd = pod["containers"]
    assert (gate["name"], clamd["name"]) == ("airlock", "clamd")
    env = {e["name"]: e.get("value") for e in gate["env"]}
    assert env["PDS_AIRLOCK__CLAMD_SOCKET"] == SOCKET
    assert clamd["command"] == ["clamd", "--config-file=/etc/clamd/clamd.conf"]
    assert clamd["image"] == gate["image"]  # the platform's image (images/hub/Dockerfile: clamav-daemon)
    config = docs[("ConfigMap", "pds-clamd")]["data"]["clamd.conf"]
    defaults = Airlock()
    assert config == clamd_config(SOCKET, "/srv/pds/clamav", defaults.import_max_file_bytes,
                                  defaults.import_max_unpacked_bytes)
    assert clamd["readinessProbe"]["exec"]["command"] == ["test", "-S", SOCKET]
    kubernetes_validate.validate(docs[("Deployment", "pds-airlock")], K8S_VERSION, strict=True)
    kubernetes_validate.validate(docs[("ConfigMap", "pds-clamd")], K8S_VERSION, strict=True)


def test_clamd_holds_nothing_of_the_gates(chart, tmp_path):
    """clamd parses what researchers import (ClamAV's parsers are its attack surface): a compromised
    clamd must find no token to create Jobs with, no project data, no key, no secret."""
    docs = airlock_release(chart, tmp_path, clamavDatabaseClaim="clamav-signatures")
    pod = docs[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    gate, clamd = pod["containers"]
    assert pod["serviceAccountName"] == "pds-airlock" and pod["automountServiceAccountToken"] is False
    assert mounts_token(gate) and not mounts_token(clamd)
    assert {m["mountPath"]: m.get("readOnly", False) for m in clamd["volumeMounts"]} == {
        "/srv/pds/clamav": True, "/run/clamd": False, "/etc/clamd": True, "/tmp": False}
    assert "env" not in clamd and "envFrom" not in clamd
    assert clamd["securityContext"] == gate["securityContext"]  # non-root, read-only root, no capability
    assert "ephemeral-storage" in clamd["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["clamd-socket"]["emptyDir"]["medium"] == "Memory"
    token_sources = volumes["kube-api-access"]["projected"]["sources"]
    assert token_sources[0]["serviceAccountToken"]["path"] == "token"


@pytest.mark.parametrize("airlock", [{}, {"clamavDatabaseClaim": "clamav-signatures", "clamd": {"enabled": False}}])
def test_without_signatures_or_when_disabled_the_gate_runs_clamscan(chart, tmp_path, airlock):
    docs = airlock_release(chart, tmp_path, **airlock)
    pod = docs[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["airlock"]
    assert "PDS_AIRLOCK__CLAMD_SOCKET" not in {e["name"] for e in pod["containers"][0]["env"]}
    assert ("ConfigMap", "pds-clamd") not in docs
