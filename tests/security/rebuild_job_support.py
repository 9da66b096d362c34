"""Support of tests/k8s/test_rebuild_job.py and tests/security/test_rebuild_job_attacks.py: real files
to rebuild, and the rebuild Job's exact commands (the rebuild, then the copy to the claim) run in an
emulated pod (bubblewrap as
tests/k8s/test_model_check_job.py emulates the check pod: the manifest's mounts at their paths,
read-only where it says, its uid, no network), the pod's staging claim being the platform's.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from pds_kernel.k8s.config import K8sConfig
from pds_kernel.k8s.jobs import JobOutcome

REPO = Path(__file__).resolve().parents[2]
PROJECT = "diab-2024"
CFG = K8sConfig(namespace="pds", rebuild_image="registry.example.org/pds/hub:0.1.0")


def table_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"region": ["N", "S", "E", "W"], "persons": [120, 85, 64, 230]}), buffer)
    return buffer.getvalue()


def png_bytes() -> bytes:
    from PIL import Image, PngImagePlugin

    picture = Image.new("RGB", (64, 48), "white")
    for x in range(10, 54):
        for y in range(8, 8 + x % 30):
            picture.putpixel((x, y), (30, 90, 200))
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "made by the tests (the copy does not keep it)")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=text)
    return buffer.getvalue()


def pdf_bytes() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(3, 2))
    axes.bar(["N", "S", "E", "W"], [120, 85, 64, 230])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="pdf")
    plt.close(figure)
    return buffer.getvalue()


FILES = {"table.parquet": table_bytes, "figure.png": png_bytes, "figure.pdf": pdf_bytes}


@cache
def _imported_package() -> Path:
    """Where this interpreter, isolated (``-I``, as the Job runs it), imports ``pds_kernel`` from."""
    done = subprocess.run([sys.executable, "-I", "-c", "import pds_kernel; print(pds_kernel.__path__[0])"],
                          capture_output=True, text=True, check=True, timeout=60)
    return Path(done.stdout.strip())


def run_in_pod(staging: Path, job: dict, scratch: Path, argv_tail: list[str] | None = None,
               timeout: float = 240) -> subprocess.CompletedProcess:
    """The Job's pod in an emulation whose claim pds-staging is ``staging``: its init container (the
    rebuild: its exact command, or ``argv_tail`` after ``python``), then, if that succeeded, its
    container, as the kubelet runs them; each emptyDir a folder of ``scratch``. How the rebuild
    ended (its output: the log the gate reads), failed when either container failed. The pod's
    image holds the gate's code: this checkout's ``pds_kernel`` is mounted where the interpreter
    imports it from (a worktree of a checkout whose environment imports the checkout's)."""
    pod = job["spec"]["template"]["spec"]
    (rebuild,) = pod["initContainers"]
    (collect,) = pod["containers"]
    done = _run_container(staging, pod, rebuild, scratch, argv_tail, timeout)
    if done.returncode == 0:
        collected = _run_container(staging, pod, collect, scratch, None, timeout)
        if collected.returncode != 0:
            return subprocess.CompletedProcess(done.args, collected.returncode, done.stdout,
                                               done.stderr + collected.stderr)
    return done


def _run_container(staging: Path, pod: dict, container: dict, scratch: Path, argv_tail: list[str] | None,
                   timeout: float) -> subprocess.CompletedProcess:
    from tests.k8s.test_model_check_job import pod_argv

    volumes = {v["name"]: v for v in pod["volumes"]}
    binds = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            source = scratch / mount["name"]
            source.mkdir(parents=True, exist_ok=True)
        else:
            assert volume["persistentVolumeClaim"]["claimName"] == "pds-staging"
            source = staging / mount.get("subPath", "")
        binds.append((source, mount["mountPath"], bool(mount.get("readOnly"))))
    package = _imported_package()
    if package != REPO / "pds_kernel":
        binds.append((REPO / "pds_kernel", str(package), True))
    env = {e["name"]: e["value"] for e in container.get("env") or []}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", LANG="C.UTF-8")
    security = pod["securityContext"]
    return subprocess.run(pod_argv(binds, env, security["runAsUser"], security["runAsGroup"])
                          + [sys.executable, *(argv_tail if argv_tail is not None else container["command"][1:])],
                          capture_output=True, text=True, timeout=timeout, check=False)


def outcome_of(done: subprocess.CompletedProcess) -> JobOutcome:
    """The Job's outcome as :func:`pds_kernel.k8s.jobs.run_job` gives it: the pod's log (output and
    errors, as the kubelet keeps them) and whether it succeeded."""
    return JobOutcome(done.stdout + done.stderr, done.returncode == 0, None)


def bwrap_available() -> bool:
    from tests.k8s.test_chart_jobs import _bwrap_works

    return shutil.which("bwrap") is not None and _bwrap_works()


def emulated_cluster(monkeypatch, staging: Path, scratch: Path, argv_tail: list[str] | None = None) -> list[dict]:
    """Make :func:`pds_kernel.airlock.rebuild_job.run_job` run the Job's pod in the emulation (its
    command, or ``argv_tail`` after ``python``: a child taken over by a file) and answer as the API
    server does: the pod's log cut at ``limit_bytes``, whether it succeeded. The manifests it was
    given are returned (the Jobs the gate created)."""
    from pds_kernel.airlock import rebuild_job

    created: list[dict] = []

    async def run_job(manifest: dict, *, container: str, timeout: int, limit_bytes: int,
                      poll_seconds: float = 2.0) -> JobOutcome:
        created.append(manifest)
        assert container == manifest["spec"]["template"]["spec"]["initContainers"][0]["name"]  # the rebuild's log
        done = run_in_pod(staging, manifest, scratch, argv_tail, timeout=timeout + 60)
        log = (done.stdout + done.stderr).encode()[:limit_bytes].decode("utf-8", "ignore")
        return JobOutcome(log, done.returncode == 0, None)

    monkeypatch.setattr(rebuild_job, "run_job", run_job)
    return created
