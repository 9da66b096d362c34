"""Kubernetes: a running workspace's ``/data`` is compared with its pod's check every few seconds.

The notebook container's liveness probe (``python -I -m pds_kernel.extract.pod_watch``) as
KubeSpawner's own pod generation with the PDS hooks makes it, from the chart rendered by the real
helm; the chart's values that set it, and their bounds; and the module itself run for real against
plain directories (the attacks on a pod's claim: tests/security/test_k8s_extract_changed_while_running.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
from traitlets.config import Config

from pds_kernel.errors import InvalidInput
from pds_kernel.hub.kube_spawner import PdsKubeSpawner
from pds_kernel.hub.kubernetes import configure
from pds_kernel.k8s.config import K8sConfig, parse_k8s_config

from .conftest import HUB_HOST_VALUES, chart_without_dependencies, helm_available, write_fingerprint_record
from .test_chart import helm, merged_values, render
from .test_spawner import FakeHub, FakeOrmSpawner, FakeUser, hub_db, make_spawner, spawn_manifest

PROBE = ["python", "-I", "-m", "pds_kernel.extract.pod_watch", "/data", "--record", "/srv/pds/extract-check/fingerprint",
         "--deadline", "25"]
#: the chart's oldest Kubernetes (Chart.yaml kubeVersion)
OLDEST = "1.28.0"


def _chart_spawner(tmp_path, settings, *helm_args: str) -> tuple[PdsKubeSpawner, Config]:
    from .test_lockdown_parity import z2jh_spawner_config

    chart = chart_without_dependencies(tmp_path / "chart")
    cm = next(d for d in render(chart, [], *helm_args)
              if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pds-config")
    c = z2jh_spawner_config(merged_values())
    configure(c, settings=settings, k8s=parse_k8s_config(json.loads(cm["data"]["k8s.json"])))
    spawner = PdsKubeSpawner(_mock=True, config=c, user=FakeUser("alice@alpha-study", [], hub_db({"alice": ["alpha-study"]})), hub=FakeHub(),
                             orm_spawner=FakeOrmSpawner("alpha-study"))
    return spawner, c


@pytest.mark.asyncio
@pytest.mark.skipif(not helm_available(), reason="helm missing")
@pytest.mark.parametrize("helm_args,period", [((), 10), (("--set", "workspace.extractWatchSeconds=5"), 5)])
async def test_chart_pods_notebook_is_watched_by_its_liveness_probe(settings, runtime, registry, kubeconfig,
                                                                   tmp_path, helm_args, period):
    spawner, c = _chart_spawner(tmp_path, settings, *helm_args)
    pod = await spawn_manifest(spawner)
    spec = pod["spec"]
    (notebook,) = spec["containers"]
    assert notebook["livenessProbe"] == {
        "exec": {"command": PROBE}, "initialDelaySeconds": 0, "periodSeconds": period, "timeoutSeconds": 30,
        "failureThreshold": 1, "successThreshold": 1, "terminationGracePeriodSeconds": 1}
    assert "startupProbe" not in notebook and "readinessProbe" not in notebook
    # no container more, nothing shared, the notebook's security unchanged: the probe runs in it
    assert [x["name"] for x in spec["initContainers"]] == ["verify-extract"]
    assert spec["shareProcessNamespace"] is False
    assert notebook["securityContext"]["readOnlyRootFilesystem"] is True
    assert notebook["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # the record it compares with: the pod's emptyDir, read-only here
    assert {"name": "extract-check", "mountPath": "/srv/pds/extract-check", "readOnly": True} in notebook["volumeMounts"]
    # the hub polls as often (a poll reads KubeSpawner's pod cache)
    assert spawner.poll_interval == period
    # the build its verify-extract checks: the hub tells a newer publication from a change by it
    published = runtime.audit.entries(project="alpha-study", action="extract.build")[-1].details["build_id"]
    assert pod["metadata"]["annotations"]["pds.extract-build"] == published
    # a pod the chart's oldest Kubernetes accepts as it is (the probe's own grace period included)
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **pod}, OLDEST, strict=True)


@pytest.mark.skipif(not helm_available(), reason="helm missing")
@pytest.mark.parametrize("value", ["workspace.extractWatchSeconds=0", "workspace.extractWatchSeconds=301",
                                   "workspace.extractWatchTimeoutSeconds=601"])
def test_chart_refuses_a_watch_that_is_off_in_all_but_name(tmp_path, value):
    chart = chart_without_dependencies(tmp_path / "chart")
    done = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "--namespace", "pds", "--set", value)
    assert done.returncode != 0 and "extractWatch" in done.stderr, done.stderr


@pytest.mark.parametrize("data,why", [
    ({"extract_watch_seconds": 0}, "positive integer"),
    ({"extract_watch_seconds": "10"}, "positive integer"),
    ({"extract_watch_seconds": 301}, "at most 300"),
    ({"extract_watch_timeout_seconds": 601}, "at most 600"),
])
def test_k8s_config_bounds_the_watch(data, why):
    with pytest.raises(InvalidInput, match=why):
        parse_k8s_config(data)


@pytest.mark.asyncio
async def test_probes_from_configuration_cannot_hold_the_watch_back(settings, runtime, registry, kubeconfig):
    """A startup probe would keep the liveness probe from running until it succeeds (never, or after
    hours); a liveness probe of the configuration's would replace ours: the hook sets its own, and
    the build annotation the hub reads."""
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study", k8s=K8sConfig(extract_watch_seconds=7))
    never = {"exec": {"command": ["false"]}, "periodSeconds": 3600, "failureThreshold": 1000}
    spawner.extra_container_config = {"startupProbe": never, "readinessProbe": never,
                                      "livenessProbe": {"exec": {"command": ["true"]}}}
    spawner.extra_annotations = {"pds.extract-build": "20200101T000000Z-forged"}
    pod = await spawn_manifest(spawner)
    assert pod["metadata"]["annotations"]["pds.extract-build"] != "20200101T000000Z-forged"
    (notebook,) = pod["spec"]["containers"]
    assert notebook["livenessProbe"]["exec"]["command"] == PROBE and notebook["livenessProbe"]["periodSeconds"] == 7
    assert "startupProbe" not in notebook and "readinessProbe" not in notebook


# ---- the module, run for real against a directory --------------------------------------------------
def _watch(data: Path, record: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-m", "pds_kernel.extract.pod_watch", str(data), "--record",
                           str(record)], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def checked(tmp_path) -> tuple[Path, Path]:
    """A tree and the record of its fingerprint (what ``verify-extract`` writes)."""
    data = tmp_path / "data"
    (data / "ER_PRS_F").mkdir(parents=True)
    (data / "ER_PRS_F" / "part-0.parquet").write_bytes(b"PAR1" + b"\1" * 100)
    (data / "COHORT.parquet").write_bytes(b"PAR1" + b"\2" * 100)
    (data / "manifest.json").write_text("{}")
    os.symlink("COHORT.parquet", data / "link")  # no build has one: here to re-point it
    record = tmp_path / "fingerprint"
    write_fingerprint_record(data, record)
    return data, record


def _rewrite(p: Path) -> None:
    info = p.stat()
    p.write_bytes(bytes(reversed(p.read_bytes())))
    os.utime(p, ns=(info.st_atime_ns, info.st_mtime_ns))


def _replace(p: Path) -> None:
    (p.parent / ".new").write_bytes(b"\0" * p.stat().st_size)
    os.rename(p.parent / ".new", p)


def _repoint(p: Path) -> None:
    p.unlink()
    os.symlink("manifest.json", p)


CHANGES = {
    "rewritten": lambda d: _rewrite(d / "ER_PRS_F" / "part-0.parquet"),
    "replaced by a same-size file": lambda d: _replace(d / "COHORT.parquet"),
    "added": lambda d: (d / "ER_PRS_F" / "part-1.parquet").write_bytes(b"PAR1"),
    "removed": lambda d: (d / "COHORT.parquet").unlink(),
    "folder removed": lambda d: shutil.rmtree(d / "ER_PRS_F"),
    "link re-pointed": lambda d: _repoint(d / "link"),
    "mode changed": lambda d: (d / "manifest.json").chmod(0o600),
}


@pytest.mark.parametrize("how", sorted(CHANGES))
def test_pod_watch_finds_every_change(checked, how):
    data, record = checked
    assert _watch(data, record).returncode == 0  # untouched: the notebook keeps running ...
    assert _watch(data, record).returncode == 0  # ... at every check
    CHANGES[how](data)
    done = _watch(data, record)
    assert done.returncode == 3 and "changed while the workspace ran" in done.stderr, done.stderr


@pytest.mark.parametrize("record_is", ["missing", "empty", "another tree's", "a directory", "not text"])
def test_pod_watch_without_its_pods_record_refuses(checked, record_is):
    data, record = checked
    if record_is == "missing":
        record.unlink()
    elif record_is == "empty":
        record.write_text("")
    elif record_is == "another tree's":
        record.write_text("0" * 64)
    elif record_is == "a directory":
        record.unlink()
        record.mkdir()
    else:
        record.write_bytes(b"\xff" * 64)
    done = _watch(data, record)
    assert done.returncode == 3 and "the project's extract is refused" in done.stderr, done.stderr


def test_pod_watch_reaches_data_without_following_a_link(checked, tmp_path):
    """``/data`` itself a symbolic link to the checked tree: refused, not followed."""
    data, record = checked
    os.symlink(data, tmp_path / "via-link")
    done = _watch(tmp_path / "via-link", record)
    assert done.returncode == 3 and "cannot be compared" in done.stderr, done.stderr
