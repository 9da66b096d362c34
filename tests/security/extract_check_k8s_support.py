"""Support of tests/security/test_extract_check_k8s.py: a published extract changed on its claim after
the hub (or the gate) read the audit trail, the pod's ``verify-extract`` container run for real on
it (bubblewrap, the claim's ``extract`` sub-path bound at ``/data`` as the kubelet binds it:
tests/k8s/test_extract_mount_k8s.py), and the pod's status as the API server then reports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.k8s.api_stand_in import container_status, pod_json, terminated, waiting
from tests.k8s.test_extract_mount_k8s import _run_as_kubelet

#: how the claim is changed, and what the init container then says
TAMPERS = {
    "replace": "SHA-256 differs",
    "extra": "is not listed in the manifest",
    "link": "not a regular file (a symbolic link)",
}


def published_claim(settings, runtime, tmp_path: Path, monkeypatch, people: int = 2) -> tuple[Path, Path]:
    """alpha-study's claim (alice and bob its members), laid out as a publication leaves it, with a
    table of ``people`` rows; clients of the Kubernetes API contact nothing: (claim, published build)."""
    import polars as pl
    from published import publish_by_hand

    from pds_kernel.registry import Registry
    from tests.k8s.conftest import two_projects, use_dummy_kubeconfig

    use_dummy_kubeconfig(tmp_path, monkeypatch)
    two_projects(Registry.from_runtime(runtime))
    claim = settings.paths.projects / "alpha-study"  # laid out as the extract-alpha-study claim
    (claim / "extract").mkdir(parents=True)
    pl.DataFrame({"PERSON_ID": ["a", "b"][:people], "n": [1, 2][:people]}).write_parquet(
        claim / "extract" / "ER_PRS_F.parquet")
    return claim, publish_by_hand(runtime, "alpha-study")


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def tamper(build: Path, how: str) -> None:
    """Change the published build ``build`` on its claim (its owner may: the files are 0444)."""
    os.chmod(build, 0o755)
    target = next(p for p in sorted(build.iterdir()) if p.suffix == ".parquet")
    if how == "replace":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 1
        target.chmod(0o644)
        target.write_bytes(bytes(data))
    elif how == "extra":
        (build / "EXTRA.parquet").write_bytes(b"PAR1")
    elif how == "link":
        target.unlink()
        os.symlink("/etc/passwd", target)
    else:
        raise ValueError(how)


def run_init_container(pod_spec: dict, claim: Path, record: Path | None = None) -> subprocess.CompletedProcess:
    """The pod's ``verify-extract`` container, its exact command, on the project's claim ``claim``
    (``record``: the pod's ``extract-check`` folder, where it records what it verified)."""
    (check,) = [c for c in pod_spec["initContainers"] if c["name"] == "verify-extract"]
    return _run_as_kubelet(check, claim, record)


def workspace_pod_after(name: str, done: subprocess.CompletedProcess, *, restarted: bool) -> dict:
    """The workspace pod as KubeSpawner's reflector keeps it once ``done`` (the init container's run)
    ended: ``Pending``, the notebook waiting; the init container terminated (its message as the
    kubelet reports it), or, once the kubelet restarted it (``restartPolicy: OnFailure``), back-off
    waiting with the failure in ``lastState``."""
    ended = terminated(done.returncode, done.stderr.strip())
    check = (container_status("verify-extract", waiting("CrashLoopBackOff"), last_state=ended, restarts=3)
             if restarted else container_status("verify-extract", ended))
    return pod_json(name, "pds", "Pending", [check], [container_status("notebook", waiting("PodInitializing"))],
                    labels={"component": "singleuser-server"})


def repoint(claim: Path, build: Path) -> Path:
    """Re-point the claim's ``extract`` link to a copy of the published build (a consistent build,
    its manifest the published one: only not the files that were checked)."""
    copy = build.parent / "20260101T000000Z-c0ffee"
    shutil.copytree(build, copy)
    (claim / "extract").unlink()
    os.symlink(f"builds/{copy.name}", claim / "extract")
    return copy


def check_then_change(pod_spec: dict, claim: Path, build: Path, record: Path, how: str) -> None:
    """The pod's ``verify-extract`` run on the published claim (it passes, recording in the folder
    ``record``), then the claim changed before the next container starts: the ``extract`` link
    re-pointed (``how`` = ``"repoint"``, :func:`repoint`) or the build changed (:func:`tamper`)."""
    record.mkdir()
    checked = run_init_container(pod_spec, claim, record)
    assert checked.returncode == 0, checked.stderr
    if how == "repoint":
        repoint(claim, build)
    else:
        tamper(build, how)


def run_notebook_start(pod_spec: dict, claim: Path, record: Path, monkeypatch) -> subprocess.CompletedProcess:
    """The notebook container's exact command with its ``/data`` (the claim's ``extract`` sub-path,
    resolved now, as the kubelet does when this container starts), its read-only view of the
    ``extract-check`` folder ``record`` and its ``$PDS_EXTRACT_CHECKED``."""
    (notebook,) = pod_spec["containers"]
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    monkeypatch.setenv("PDS_EXTRACT_CHECKED", env["PDS_EXTRACT_CHECKED"])
    return _run_as_kubelet(notebook, claim, record)


def notebook_refused_pod(name: str, done: subprocess.CompletedProcess) -> dict:
    """The workspace pod once its notebook container's start ended as ``done`` (restarted by the
    kubelet since: the failure in ``lastState``), its ``verify-extract`` container having passed."""
    check = container_status("verify-extract", terminated(0, reason="Completed"))
    notebook = container_status("notebook", waiting("CrashLoopBackOff"), restarts=2,
                                last_state=terminated(done.returncode, done.stderr.strip()))
    return pod_json(name, "pds", "Running", [check], [notebook], labels={"component": "singleuser-server"},
                    pod_ip="10.0.0.7")


def job_pod_after(job: dict, done: subprocess.CompletedProcess, main: str) -> tuple[dict, dict]:
    """(the Job's status, its pod) once the pod's init container ran as ``done``: with
    ``restartPolicy: Never`` a failed init container fails the pod, and the Job (``backoffLimit: 0``)."""
    name = job["metadata"]["name"]
    ok = done.returncode == 0
    check = container_status("verify-extract", terminated(done.returncode, done.stderr.strip(),
                                                          reason="Completed" if ok else "Error"))
    main_status = container_status(main, terminated(0, reason="Completed") if ok else waiting("PodInitializing"))
    pod = pod_json(f"{name}-x7k2p", "pds", "Succeeded" if ok else "Failed", [check], [main_status],
                   labels={"job-name": name})
    return ({"succeeded": 1} if ok else {"failed": 1}), pod
