"""Kubernetes: a workspace pod starts only on the extract its publication recorded.

The hub (KubeSpawner's real pod generation with the PDS hooks, the chart rendered by the real
helm) refuses a project whose extract was never published or failed its last full verification,
and gives every other pod the ``verify-extract`` init container, with the notebook container's
very mount of the extract. The container's command is then run for real over a published extract
laid out as on the project's claim, in bubblewrap with ``/data`` bound where the kubelet binds the
``extract`` sub-path: it passes the published extract and refuses a tampered one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from published import publish_by_hand
from tornado import web

from pds_kernel.audit import AuditEvent, Outcome
from pds_kernel.k8s.config import parse_k8s_config

from .conftest import PUBLISHED_MANIFEST, REPO, chart_without_dependencies, helm_available
from .test_chart import merged_values, render
from .test_spawner import FakeHub, FakeOrmSpawner, FakeUser, denied, hub_db, make_spawner, spawn_manifest

pytestmark = pytest.mark.asyncio


def init_container(pod: dict) -> dict:
    (container,) = pod["spec"]["initContainers"]
    return container


async def test_pod_verifies_the_published_extract_with_the_notebooks_mount(settings, runtime, registry, kubeconfig):
    pod = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study"], "alpha-study"))
    check, notebook = init_container(pod), pod["spec"]["containers"][0]
    assert check["name"] == "verify-extract" and check["image"] == notebook["image"]
    extract = {"name": "extract", "mountPath": "/data", "readOnly": True, "subPath": "extract"}
    assert [m for m in notebook["volumeMounts"] if m["mountPath"] == "/data"] == [extract]
    # it records what it verified for the notebook's start, which reads it, read-only
    record = {"name": "extract-check", "mountPath": "/srv/pds/extract-check"}
    assert check["volumeMounts"] == [extract, record]
    assert {**record, "readOnly": True} in notebook["volumeMounts"]
    assert {"name": "PDS_EXTRACT_CHECKED", "value": "/srv/pds/extract-check/fingerprint"} in notebook["env"]
    argv = check["command"]
    assert argv[:5] == ["python", "-I", "-m", "pds_kernel.extract.tree", "/data"]
    assert argv[argv.index("--manifest-sha256") + 1] == PUBLISHED_MANIFEST["alpha-study"]
    assert argv[argv.index("--hash-max-bytes") + 1] == str(settings.hub.extract_hash_max_bytes)
    assert argv[argv.index("--fingerprint") + 1] == "1" * 64
    assert argv[argv.index("--record") + 1] == "/srv/pds/extract-check/fingerprint"
    assert check["securityContext"] == notebook["securityContext"]
    assert not check.get("env") and not check.get("envFrom")


async def test_init_containers_from_configuration_are_replaced(settings, runtime, registry, kubeconfig):
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    spawner.init_containers = [{"name": "verify-extract", "image": "busybox", "command": ["true"]},
                               {"name": "copy", "image": "busybox", "command": ["cp", "-r", "/x", "/data"]}]
    pod = await spawn_manifest(spawner)
    assert init_container(pod)["command"][3] == "pds_kernel.extract.tree"


async def test_never_published_extract_is_refused_before_the_pod(settings, runtime, registry, kubeconfig):
    registry.upsert_project("admin", "gamma-study", title="Gamma", start_date=registry.get_project("alpha-study")
                            .start_date, end_date=registry.get_project("alpha-study").end_date,
                            cpu_limit=1.0, mem_limit_mb=1024, dask_workers=1)
    registry.add_member("admin", "gamma-study", "alice", "researcher", registry.get_project("alpha-study").end_date)
    spawner = make_spawner(settings, "alice", ["gamma-study"], "gamma-study")
    with pytest.raises(web.HTTPError) as err:
        spawner.run_pre_spawn_hook()
    assert err.value.status_code == 403 and "never published" in err.value.log_message
    assert "data manager" in err.value.log_message
    refusal = [e for e in denied(runtime) if e.action == "workspace.refused"][-1]
    assert refusal.details["stage"] == "extract" and "never published" in refusal.details["reason"]
    pod = await spawner.get_pod_manifest()
    with pytest.raises(web.HTTPError):  # the last word checks again
        await spawner.modify_pod_hook(spawner, pod)


async def test_failed_verification_is_refused_before_the_pod(settings, runtime, registry, kubeconfig):
    build = runtime.audit.entries(project="alpha-study", action="extract.build")[-1].details["build_id"]
    runtime.audit.record(AuditEvent(actor="admin", action="extract.verify", target="project:alpha-study",
                                    project="alpha-study", outcome=Outcome.FAILED,
                                    details={"build_id": build, "reason": "ER_PRS_F.parquet is not the published file"}))
    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    with pytest.raises(web.HTTPError) as err:
        spawner.run_pre_spawn_hook()
    assert "last full verification" in err.value.log_message and "ER_PRS_F.parquet" in err.value.log_message


# ---- the chart's pod, its init container run for real -------------------------------------------
def _chart_spawner(tmp_path, settings):
    from pds_kernel.hub.kube_spawner import PdsKubeSpawner
    from pds_kernel.hub.kubernetes import configure

    from .test_lockdown_parity import z2jh_spawner_config

    chart = chart_without_dependencies(tmp_path / "chart")
    cm = next(d for d in render(chart, []) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pds-config")
    c = z2jh_spawner_config(merged_values())
    configure(c, settings=settings, k8s=parse_k8s_config(json.loads(cm["data"]["k8s.json"])))
    return PdsKubeSpawner(_mock=True, config=c, user=FakeUser("alice@alpha-study", [], hub_db({"alice": ["alpha-study"]})), hub=FakeHub(),
                       orm_spawner=FakeOrmSpawner("alpha-study"))


def _run_as_kubelet(container: dict, claim: Path, record: Path | None = None,
                    argv: list[str] | None = None) -> subprocess.CompletedProcess:
    """The container's command (or ``argv``) with the claim's ``subPath`` bound at its mount path,
    read-only, the way the kubelet resolves it (the ``extract`` link followed inside the claim),
    and the folder ``record`` as the pod's ``extract-check`` emptyDir; this environment's Python
    stands for the image's."""
    return subprocess.run(kubelet_argv(container, claim, record, argv), capture_output=True, text=True,
                          timeout=120, check=False)


def kubelet_argv(container: dict, claim: Path, record: Path | None = None, argv: list[str] | None = None) -> list[str]:
    """The bubblewrap command line of :func:`_run_as_kubelet`."""
    mount = next(m for m in container["volumeMounts"] if m["name"] == "extract")
    checked = [m for m in container["volumeMounts"] if m["name"] == "extract-check"]
    argv = argv or [sys.executable, *container["command"][1:]]
    if checked:
        record = record or Path(tempfile.mkdtemp(prefix="extract-check-"))
        argv = ["--bind" if not checked[0].get("readOnly") else "--ro-bind", str(record), checked[0]["mountPath"],
                "--", *argv]
    else:
        argv = ["--", *argv]
    python = [Path(sys.prefix), Path(os.path.realpath(sys.executable)).parents[1], REPO]
    binds = [w for p in dict.fromkeys(map(str, python)) for w in ("--ro-bind", p, p)]
    return ["bwrap", "--tmpfs", "/", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin", "--dev", "/dev", "--proc", "/proc", *binds,
            "--ro-bind", str(claim / mount["subPath"]), mount["mountPath"], *argv]


@pytest.mark.skipif(not helm_available() or shutil.which("bwrap") is None, reason="helm or bubblewrap missing")
@pytest.mark.parametrize("tamper,why", [
    (None, None),
    ("replace", "SHA-256 differs"),
    ("extra", "is not listed in the manifest"),
    ("link", "not a regular file (a symbolic link)"),
])
async def test_chart_pods_init_container_checks_the_claim(settings, runtime, registry, kubeconfig, tmp_path, tamper, why):
    import polars as pl
    claim = settings.paths.projects / "alpha-study"  # laid out as the extract-alpha-study claim
    (claim / "extract").mkdir(parents=True)
    pl.DataFrame({"PERSON_ID": ["a", "b"], "n": [1, 2]}).write_parquet(claim / "extract" / "ER_PRS_F.parquet")
    build = publish_by_hand(runtime, "alpha-study")
    pod = await spawn_manifest(_chart_spawner(tmp_path, settings))
    os.chmod(build, 0o755)
    if tamper == "replace":
        data = bytearray((build / "ER_PRS_F.parquet").read_bytes())
        data[len(data) // 2] ^= 1
        (build / "ER_PRS_F.parquet").write_bytes(bytes(data))
    elif tamper == "extra":
        (build / "EXTRA.parquet").write_bytes(b"PAR1")
    elif tamper == "link":
        (build / "ER_PRS_F.parquet").unlink()
        os.symlink("/etc/passwd", build / "ER_PRS_F.parquet")
    done = _run_as_kubelet(init_container(pod), claim)
    if tamper is None:
        assert done.returncode == 0 and "the published one" in done.stdout, done.stderr
    else:
        assert done.returncode == 3, done.stdout + done.stderr
        assert why in done.stderr and "data manager" in done.stderr


# ---- Dask workers (dask-gateway) ----------------------------------------------------------------
def test_dask_worker_pods_verify_the_extract_too(runtime, registry):
    """dask-gateway's own pod generation from the gateway's overrides: each worker pod verifies the
    extract it mounts before the worker starts; the scheduler mounts no extract and verifies none."""
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
    from dask_gateway_server.backends.kubernetes.controller import KubeController
    from dask_gateway_server.models import User

    from .test_gateway import options_for

    _, overrides = options_for(runtime, User("alice/alpha-study", groups=["alpha-study"]), {"project": "alpha-study"})
    controller = KubeController(gateway_instance="dask-gateway", api_url="http://api-dask-gateway.pds:8000/api")
    worker = controller.make_pod("pds", "c1", KubeClusterConfig(**overrides), is_worker=True)
    (check,) = worker["spec"]["initContainers"]
    (container,) = worker["spec"]["containers"]
    assert check["name"] == "verify-extract" and check["image"] == container["image"]
    extract = {"name": "extract", "mountPath": "/data", "readOnly": True, "subPath": "extract"}
    record = {"name": "extract-check", "mountPath": "/srv/pds/extract-check"}
    assert check["volumeMounts"] == [extract, record]
    assert [m for m in container["volumeMounts"] if m["name"] in ("extract", "extract-check")] == [
        extract, {**record, "readOnly": True}]
    assert {"name": "extract-check", "emptyDir": {"sizeLimit": "1Mi"}} in worker["spec"]["volumes"]
    assert check["command"][check["command"].index("--manifest-sha256") + 1] == PUBLISHED_MANIFEST["alpha-study"]
    assert check["command"][check["command"].index("--record") + 1] == "/srv/pds/extract-check/fingerprint"
    # the worker starts dask-gateway's own command, after the comparison with that record
    assert container["command"] == ["python", "-I", "-m", "pds_kernel.extract.checked_start"]
    # and, while it runs, it is watched as the notebook is (tests/k8s/test_extract_watch_k8s.py)
    assert container["livenessProbe"]["exec"]["command"][3:] == [
        "pds_kernel.extract.pod_watch", "/data", "--record", "/srv/pds/extract-check/fingerprint", "--deadline", "25"]
    assert container["livenessProbe"]["failureThreshold"] == 1
    assert container["args"][:3] == ["dask", "worker", "--no-dashboard"]
    assert {"name": "PDS_EXTRACT_CHECKED", "value": "/srv/pds/extract-check/fingerprint"} in container["env"]
    assert {"name": "DASK_GATEWAY_WORKER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} \
        in container["env"]  # dask-gateway's own variables kept
    scheduler = controller.make_pod("pds", "c1", KubeClusterConfig(**overrides), is_worker=False)
    assert not scheduler["spec"].get("initContainers")
    (main,) = scheduler["spec"]["containers"]
    assert "command" not in main and "extract-check" not in str(scheduler)


def test_dask_cluster_of_a_never_published_extract_is_refused(runtime, registry):
    from dask_gateway_server.models import User

    from pds_kernel.errors import PermissionDenied

    from .test_gateway import options_for

    registry.upsert_project("admin", "gamma-study", title="Gamma", start_date=registry.get_project("alpha-study")
                            .start_date, end_date=registry.get_project("alpha-study").end_date,
                            cpu_limit=1.0, mem_limit_mb=1024, dask_workers=1)
    registry.add_member("admin", "gamma-study", "alice", "researcher", registry.get_project("alpha-study").end_date)
    with pytest.raises(PermissionDenied, match="never published"):
        options_for(runtime, User("alice/gamma-study", groups=["gamma-study"]), {"project": "gamma-study"})
    assert [e for e in denied(runtime) if "never published" in e.details.get("reason", "")]


def test_who_could_read_a_dask_workers_refusal_in_the_release(tmp_path_factory, settings):
    """Who reads a Dask worker pod's refused extract in the released chart (the real upstream
    dask-gateway and z2jh charts; docs/projects-and-extracts.md, "What stays open"): not the gateway's
    API server, where the platform's gateway code runs (pds_kernel.k8s.gateway, cluster_watch), which
    may not read pods (a grant would show it every workspace pod's environment, $JUPYTERHUB_API_TOKEN
    included); not dask-gateway's controller, which watches the worker pods but runs dask-gateway's
    own image and configuration (no platform code, no audit key). The hub does: z2jh's hub Role reads
    pods in the release's namespace, where the worker pods are made, and the hub holds the audit key
    and runs pds_kernel.hub.worker_watch (configured from hub.membership_check_seconds)."""
    from traitlets.config import Config

    from pds_kernel.hub.kubernetes import configure_watcher

    from .test_chart import chart_with_upstream, render, upstream_charts_available

    if not helm_available() or not upstream_charts_available():
        pytest.skip("helm or the offline upstream charts missing")
    docs = render(chart_with_upstream(tmp_path_factory.mktemp("release")), [])
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("Role", "ClusterRole")}

    def bindings_of(account: str) -> list[dict]:
        return [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
                and {"kind": "ServiceAccount", "name": account} in [
                    {k: s.get(k) for k in ("kind", "name")} for s in d.get("subjects") or []]]

    def rules_of(account: str) -> list[dict]:
        return [rule for d in bindings_of(account) for rule in roles[(d["roleRef"]["kind"], d["roleRef"]["name"])]["rules"]]

    def reads_pods(rule: dict) -> bool:
        return rule.get("apiGroups") == [""] and "pods" in rule.get("resources", []) and "list" in rule.get("verbs", [])

    assert rules_of("api-dask-gateway")  # the gateway's own rules (secrets, daskclusters) ...
    assert not [r for r in rules_of("api-dask-gateway") if "pods" in r.get("resources", [])]  # ... no pods
    assert [r for r in rules_of("controller-dask-gateway") if "pods" in r.get("resources", [])]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    (main,) = deployments["controller-dask-gateway"]["spec"]["template"]["spec"]["containers"]
    assert not main.get("env") and "dask-gateway-server" in main["image"]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "controller-dask-gateway")
    assert "pds_kernel" not in str(config["data"])
    # the hub: its service account lists pods, through a Role (its namespace only), not a ClusterRole
    hub_account = deployments["hub"]["spec"]["template"]["spec"]["serviceAccountName"]
    assert [r for r in rules_of(hub_account) if reads_pods(r)]
    assert {d["kind"] for d in bindings_of(hub_account)} == {"RoleBinding"}
    c = Config()
    configure_watcher(c, replace(settings, hub=replace(settings.hub, membership_check_seconds=7)), [])
    assert c.PdsOAuthenticator.worker_refusal_interval == 7.0
