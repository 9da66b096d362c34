"""The model check on Kubernetes: the Job the gate creates, the chart's RBAC and policies, and the
gate choosing the Job (pds_kernel.modelcheck.k8s_job; docs/deploy-kubernetes.md, "Model checks").

No cluster here: the manifest is validated against the Kubernetes schema the chart tests use and
its Job's exact command is run in an emulated pod (bubblewrap: the pod's mounts at their paths,
read-only where the manifest says, its uid, no network) with the check environment standing for
the model-check image; the chart is rendered with the real ``helm``; the gate's Kubernetes path
is run against an API server that does not answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest

from pds_kernel.extract.mount_check import ExpectedMount
from pds_kernel.k8s.config import K8sConfig, parse_k8s_config
from pds_kernel.modelcheck.checker import attack_job
from pds_kernel.modelcheck.in_pod import RESULT_MARKER
from pds_kernel.modelcheck.k8s_job import build_check_job, parse_pod_log
from pds_kernel.sandbox.spec import extract_volume_name, home_volume_name
from pds_kernel.settings import ModelCheck

from .conftest import REPO
from .test_chart import K8S_VERSION, mounts_token, render
from .test_chart_jobs import BWRAP, _bwrap_works

sys.path.insert(0, str(REPO / "tests" / "ai"))  # the model-check fixtures
from model_check_support import (
    PROJECT,
    home,
    people,
    publish_cohort,
    reasonable_xgboost,
    submit,
    write_rows,
)

CFG = K8sConfig(namespace="pds", model_check_image="registry.example.org/pds/model-check:0.1.0")
#: what the audit trail says the project published (the hub's and the gate's reading of it)
EXPECTED = ExpectedMount(PROJECT, "20261205T120000Z-abcdef", "a" * 64, "b" * 64, hash_max_bytes=4 << 30)
CHECK_PYTHON = REPO / ".venv-modelcheck" / "bin" / "python"
FAST = replace(ModelCheck(), shadow_models=0, worst_case_reps=1)  # structural and worst case: seconds


def _job(staged: str = "diab-2024/abc/0-r1-model.ubj", author: str = "alice") -> dict:
    declaration = {"data": "results/model_data.parquet", "target": "outcome", "train": "results/model_train.csv",
                   "test": "results/model_test.csv"}
    return build_check_job(CFG, name="pds-model-check-abc-0-ff00ff", project=PROJECT, author=author, cpu=2.0,
                           mem_mb=4096, staged=staged, model_name="model.ubj",
                           job={**attack_job("xgboost-ubj", declaration, FAST), "declaration": declaration,
                                "max_input_bytes": FAST.max_input_bytes},
                           timeout_seconds=600, scratch_mb=1024, expected=EXPECTED)


def assert_isolated_job(job: dict, component: str, image: str, deadline: int, *, init: bool = False) -> tuple[dict, dict]:
    """``job`` is valid Kubernetes and has the isolation of a workspace pod (the gate's Jobs share
    it: pds_kernel.k8s.jobs.isolated_job): (its pod's spec, its one container, or with ``init``
    its one init container, which runs before it)."""
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, deadline)
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == {"pds.project": PROJECT, "pds.component": component}
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert not (pod["hostNetwork"] or pod["hostPID"] or pod["hostIPC"]) and pod["enableServiceLinks"] is False
    assert pod["dnsPolicy"] == "None" and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    firsts = pod.get("initContainers") or []
    assert len(firsts) == int(init)
    for one in [*firsts, container]:
        assert one["image"] == image
        sc = one["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        assert sc["runAsUser"] != 0 and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    return pod, (firsts[0] if init else container)


def test_check_job_is_valid_kubernetes_with_the_isolation_of_a_workspace_pod():
    pod, first = assert_isolated_job(_job(), "model-check", CFG.model_check_image, 600, init=True)
    # the extract is checked against its publication before the check reads it, as in a workspace pod
    assert first["name"] == "verify-extract"
    assert first["command"][4:] == ["/data", "--manifest-sha256", "a" * 64, "--hash-max-bytes", str(4 << 30),
                                    "--fingerprint", "b" * 64]
    assert first["volumeMounts"] == [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "extract"]
    (container,) = pod["containers"]
    scratch = int(pod["volumes"][-1]["emptyDir"]["sizeLimit"].removesuffix("Mi"))
    assert container["resources"]["limits"] == container["resources"]["requests"] == {
        "cpu": "2000m", "memory": "4096Mi", "ephemeral-storage": f"{scratch + 256}Mi"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["extract"]["persistentVolumeClaim"] == {"claimName": extract_volume_name(PROJECT), "readOnly": True}
    assert volumes["home"]["persistentVolumeClaim"] == {"claimName": home_volume_name(PROJECT, "alice"), "readOnly": True}
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "pds-staging", "readOnly": True}
    assert set(volumes) == {"extract", "home", "model", "scratch"} and "emptyDir" in volumes["scratch"]
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/tmp"]  # the emptyDir: the only writable place
    model = next(m for m in container["volumeMounts"] if m["name"] == "model")
    assert model["subPath"] == "diab-2024/abc/0-r1-model.ubj"  # one staged file, not the claim


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        if expr["operator"] == "Exists" and expr["key"] not in labels:
            return False
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.fixture(scope="module")
def release(chart, tmp_path_factory) -> list[dict]:
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(json.dumps({
        "projects": [{"id": PROJECT, "title": "Diabetes", "start": "2025-01-01", "end": "2030-12-31"}],
        "airlock": {"modelCheck": {"apiServerPeers": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}}}))
    return render(chart, [values])


def test_chart_lets_no_traffic_in_or_out_of_a_check_pod(release):
    labels = _job()["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in release if d["kind"] == "NetworkPolicy" and _selects(d["spec"]["podSelector"], labels)]
    assert [p["metadata"]["name"] for p in policies] == ["pds-projects-default-deny"]
    deny = policies[0]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and not deny.get("ingress") and not deny.get("egress")
    # nobody else's policy names the check pod as a peer
    for doc in release:
        if doc["kind"] == "NetworkPolicy":
            assert "model-check" not in json.dumps(doc)


def test_chart_grants_the_airlock_only_its_namespaces_check_jobs(release):
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in release}
    assert not [k for k in kinds if k[0] in {"ClusterRole", "ClusterRoleBinding"}]
    role = kinds[("Role", "pds-airlock")]
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "delete"]},
                             {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
                             {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    binding = kinds[("RoleBinding", "pds-airlock")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pds-airlock"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pds-airlock", "namespace": "pds"}]
    for doc in (role, binding, kinds[("ServiceAccount", "pds-airlock")]):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    pod = kinds[("Deployment", "pds-airlock")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pds-airlock" and mounts_token(pod["containers"][0])
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["PDS_MODEL_CHECK__RUNNER"] == "kubernetes" and env["PDS_K8S_CONFIG_FILE"] == "/etc/pds/k8s.json"
    # the gate rebuilds submitted tables and figures in a Job of the project (ADR 10, tests/k8s/test_rebuild_job.py);
    # the pod keeps the room the process runner needs (airlock.rebuildRunner: process)
    assert env["PDS_AIRLOCK__REBUILD_RUNNER"] == "job"
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "2Gi"
    config = json.loads(kinds[("ConfigMap", "pds-config")]["data"]["k8s.json"])
    assert parse_k8s_config(config).model_check_image == "registry.example.org/pds/model-check:0.1.0"
    egress = kinds[("NetworkPolicy", "pds-airlock")]["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 443, "protocol": "TCP"}]} in egress


def test_chart_without_model_checks_cohort_links_nor_rebuild_jobs_gives_the_airlock_no_token(chart, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"airlock": {"modelCheck": {"enabled": False}, "cohortLink": {"enabled": False},
                                              "rebuildRunner": "process"}}))
    docs = render(chart, [values])
    assert not [d for d in docs if d["kind"] in {"Role", "RoleBinding", "ServiceAccount"}]
    airlock = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "pds-airlock")
    pod = airlock["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and not any(mounts_token(c) for c in pod["containers"])


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """(service, settings, rows, alice's home) on a fresh platform, model checks on Kubernetes."""
    sys.path.insert(0, str(REPO / "tests" / "security"))
    from model_format_support import airlock

    with airlock(tmp_path_factory.mktemp("k8s-check")) as (service, settings):
        rows = people(PROJECT, 600, seed=5)
        publish_cohort(settings, PROJECT, rows)
        yield service, settings, rows, home(settings, PROJECT, "alice")


def test_gate_on_kubernetes_runs_a_job_and_sends_the_model_to_review_when_none_can_run(platform, tmp_path,
                                                                                     monkeypatch):
    from .conftest import use_dummy_kubeconfig

    service, settings, rows, alice = platform
    use_dummy_kubeconfig(tmp_path, monkeypatch)  # an API server that refuses connections
    service.settings = replace(settings, model_check=replace(FAST, runner="kubernetes"))
    try:
        declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
        view = submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
    finally:
        service.settings = settings
    f = service.get_request("olga", view.id).files[0]
    assert f.check_status == "review"
    assert any(x["rule"] == "model-check" and "could not run on Kubernetes" in x["message"] for x in f.check["findings"])
    assert not (settings.paths.state / "model-checks").exists() or not list((settings.paths.state / "model-checks").rglob("*.csv"))


def pod_argv(binds: list[tuple[Path, str, bool]], env: dict, uid: int, gid: int) -> list[str]:
    """bubblewrap as the pod: the host's root read-only (standing for the image), the pod's mounts at
    their exact paths (``/data`` included, so the root is a tmpfs of read-only binds of the host's
    top-level entries but those the mounts live in, made read-only again), the pod's user, no
    network, only its environment."""
    argv = [BWRAP, "--tmpfs", "/"]
    mounted = {Path(target).parts[1] for _, target, _ in binds}  # made in the tmpfs, not the host's
    for entry in sorted(Path("/").iterdir()):
        if entry.name in {"proc", "dev", "tmp"} | mounted:
            continue
        argv += ["--symlink", os.readlink(entry), str(entry)] if entry.is_symlink() else ["--ro-bind", str(entry), str(entry)]
    argv += ["--dev", "/dev", "--proc", "/proc", "--unshare-user", "--unshare-net", "--unshare-pid",
             "--die-with-parent", "--clearenv"]
    for source, target, read_only in binds:
        argv += ["--ro-bind" if read_only else "--bind", str(source), target]
    # the interpreter and this checkout stay visible when they live where the pod gets nothing of
    # the host's (a checkout cloned under /tmp, as into `mktemp -d`)
    for keep in sorted({REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}):
        if keep.parts[1] in {"proc", "dev", "tmp"} | mounted:
            argv += ["--ro-bind", str(keep), str(keep)]
    argv += ["--remount-ro", "/"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--uid", str(uid), "--gid", str(gid), "--chdir", "/"]


@pytest.mark.slow
@pytest.mark.skipif(not _bwrap_works() or not CHECK_PYTHON.exists(),
                    reason="bubblewrap and the check environment (make venv-modelcheck) emulate the pod")
def test_check_job_command_run_in_an_emulated_pod_attacks_the_model(platform, tmp_path):
    service, settings, rows, alice = platform
    write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    staging = tmp_path / "claims" / "pds-staging"
    (staging / PROJECT / "r1").mkdir(parents=True)
    (staging / PROJECT / "r1" / "0-r1-model.ubj").write_bytes(reasonable_xgboost(rows, 300))
    job = _job(staged=f"{PROJECT}/r1/0-r1-model.ubj")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sources = {"extract": settings.paths.projects / PROJECT, "home": alice, "model": staging}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    binds = []
    for mount in container["volumeMounts"]:
        source = scratch if mount["name"] == "scratch" else sources[mount["name"]] / mount.get("subPath", "")
        binds.append((source, mount["mountPath"], bool(mount.get("readOnly"))))
    for path in [alice, *alice.rglob("*"), *settings.paths.projects.rglob("*"), *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # as fsGroup makes them readable in a pod
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(PATH=f"{CHECK_PYTHON.parent}:/usr/bin:/bin", LANG="C.UTF-8")
    security = pod["securityContext"]
    done = subprocess.run(pod_argv(binds, env, security["runAsUser"], security["runAsGroup"])
                          + [str(CHECK_PYTHON), *container["command"][1:]],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report, plot, problem = parse_pod_log(done.stdout)
    assert problem is None and report["status"] == "ok", report
    assert (report["foreign_persons"], report["n_train"], report["n_test"]) == (0, 300, 300)
    assert "worst_case" in report and plot is not None and plot.startswith(b"\x89PNG")
    assert sorted(p.name for p in (scratch / "pds-model-check" / "inputs").iterdir()) == \
        ["data.parquet", "test.csv", "train.csv"]  # the snapshot was made in the pod's scratch


@pytest.mark.parametrize("log,problem", [
    ("no marker at all\n", "wrote no readable report"),
    (RESULT_MARKER + "{not json\n", "not JSON"),
    (RESULT_MARKER + json.dumps({"report": ["a", "list"]}) + "\n", "not a JSON object"),
])
def test_pod_log_without_a_usable_result_is_no_report(log, problem):
    assert parse_pod_log(log)[2] is not None and problem in parse_pod_log(log)[2]


def test_pod_log_plot_that_is_not_a_png_is_dropped_and_the_last_result_wins():
    import base64

    first = RESULT_MARKER + json.dumps({"report": {"status": "ok", "lira": {"auc": 0.5}}}) + "\n"
    last = RESULT_MARKER + json.dumps({"report": {"status": "ok", "lira": {"auc": 0.9}},
                                       "plot_png": base64.b64encode(b"GIF89a not a png").decode()}) + "\n"
    report, plot, problem = parse_pod_log(first + "noise\n" + last)
    assert problem is None and report["lira"]["auc"] == 0.9 and plot is None
