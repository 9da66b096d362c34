"""Support of tests/security/test_cohort_link_k8s.py and tests/k8s/test_cohort_link_job.py: a platform
with a project key, the synthetic correspondence and cohort list, and the cohort-link Job's exact
command run in an emulated pod (bubblewrap as tests/k8s/test_model_check_job.py emulates the check
pod: the manifest's mounts at their paths, read-only where it says, its uid, no network).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from pds_kernel.airlock.cohort_link_job import build_link_job
from pds_kernel.extract.build import published_state
from pds_kernel.extract.linkage import person_map
from pds_kernel.extract.mount_check import ExpectedMount
from pds_kernel.k8s.config import K8sConfig
from pds_kernel.pseudo import KeyStore
from pds_kernel.runtime import Runtime
from pds_kernel.sandbox.spec import extract_volume_name
from pds_kernel.snds.cohort_list import generate_cohort_list
from pds_kernel.snds.generator import generate

REPO = Path(__file__).resolve().parents[2]
PROJECT = "diab-2024"
STORED = "0-r1-recruited.csv"
CFG = K8sConfig(namespace="pds", cohort_link_image="registry.example.org/pds/hub:0.1.0")


def make_platform(root: Path):
    """(settings, cohort list): a key for PROJECT, the correspondence, an extract holding 15 of the
    30 matched people (published: :func:`expected_of` is what its publication recorded), and a list
    of 30 matched, 8 unmatched, 2 people listed twice, 3 invalid NIRs."""
    from tests.conftest import make_settings

    settings = make_settings(root / "pds")
    generate(root / "delivery", patients=200, years=(2022, 2022), seed=7)
    cohort = generate_cohort_list(root / "delivery", root / "outside" / "recruited.csv", settings.paths.ttp,
                                  matched=30, unmatched=8, duplicated=2, invalid=3, seed=11)
    key = KeyStore(settings.paths.keys).ensure(PROJECT, "setup")
    extract = settings.paths.projects / PROJECT / "extract"
    extract.mkdir(parents=True)
    ids = person_map(key, pl.DataFrame({"BEN_NIR_PSA": list(cohort.matched_keys[:15])}))
    ids.select("PERSON_ID").write_parquet(extract / "COHORT.parquet")
    _publish(settings.paths.projects / PROJECT)
    return settings, cohort


def _publish(project_dir: Path) -> None:
    """``extract/`` of ``project_dir`` made a published build, as tests/security/published.py does
    (here without an audit trail: :func:`expected_of` stands for its record)."""
    from published import new_build_id, write_manifest

    build_id = new_build_id()
    final = project_dir / "builds" / build_id
    final.parent.mkdir(parents=True)
    write_manifest(project_dir / "extract", PROJECT, build_id)
    os.rename(project_dir / "extract", final)
    for path in [final, *final.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    os.symlink(f"builds/{build_id}", project_dir / "extract")


def expected_of(settings, project: str = PROJECT) -> ExpectedMount:
    """What the publication of ``project``'s extract recorded (the gate reads it from the audit
    trail: pds_kernel.extract.mount_check.expected_mount): the build, its manifest and its state."""
    build = (settings.paths.projects / project / "extract").resolve()
    manifest = hashlib.sha256((build / "manifest.json").read_bytes()).hexdigest()
    return ExpectedMount(project, build.name, manifest, published_state(build).fingerprint,
                         settings.hub.extract_hash_max_bytes)


@contextmanager
def published_audit(settings):
    """The audit trail of ``settings`` recording the publication of PROJECT's extract as a build
    records it (:func:`expected_of`): what the gate's local linkage checks the extract against
    before it counts the linked people in it."""
    from published import record_publication

    runtime = Runtime(settings)
    try:
        published = expected_of(settings)
        record_publication(runtime.audit, PROJECT, build_id=published.build_id,
                           manifest_sha256=published.manifest_sha256, fingerprint=published.fingerprint)
        yield runtime.audit
    finally:
        runtime.close()


def stage(settings, request: str, content: bytes) -> Path:
    """``staging/<project>/<request>/raw/<STORED>`` holding ``content``, as the gate stages it."""
    directory = settings.paths.staging / PROJECT / request
    (directory / "raw").mkdir(parents=True)
    (directory / "raw" / STORED).write_bytes(content)
    return directory


def output_bound(raw_bytes: int) -> int:
    """The bound of the output the gate gives a list of ``raw_bytes`` (cohort_link.link_staged)."""
    return 8 * raw_bytes + 64 * 1024 + 4096


#: a publication's record for a Job only built, never run
RECORDED = ExpectedMount(PROJECT, "20260101T000000Z-abcdef", "a" * 64, "1" * 64, 1 << 30)


def link_job(request: str, raw: str | None = None, project: str = PROJECT, max_output_bytes: int = 4 << 20,
             settings=None) -> dict:
    """The Job of ``request``; with ``settings``, checking the extract against its publication there."""
    return build_link_job(CFG, name=f"pds-cohort-link-{request[:20]}-ff00ff", project=project, request_id=request,
                          raw=raw if raw is not None else f"{project}/{request}/raw/{STORED}", timeout_seconds=300,
                          max_output_bytes=max_output_bytes,
                          expected=expected_of(settings) if settings is not None else RECORDED)


def run_in_pod(settings, job: dict, scratch: Path, argv_tail: list[str] | None = None) -> subprocess.CompletedProcess:
    """The Job's pod in an emulation whose claims are this platform's directories: pds-keys = the
    parent of ``paths.keys``, pds-ttp = ``paths.ttp``, pds-staging = ``paths.staging``,
    extract-<project> = ``paths.projects/<project>``; each emptyDir a folder of ``scratch``. Its init
    containers (``verify-extract``, then the linker: its exact command, or ``argv_tail`` after
    ``python``), then, if they succeeded, its container (the copy to the claim), as the kubelet runs
    them. The linker's run (its output: the log the gate reads), failed when any container failed
    (a failed ``verify-extract``'s run when the linker never ran)."""
    runs = run_pod(settings, job, scratch, argv_tail)
    done = runs.get("cohort-link") or runs["verify-extract"]
    failed = [run for run in runs.values() if run.returncode != 0]
    if failed and failed[0] is not done:
        return subprocess.CompletedProcess(done.args, failed[0].returncode, done.stdout, done.stderr + failed[0].stderr)
    return done


def run_pod(settings, job: dict, scratch: Path, argv_tail: list[str] | None = None,
            between=None) -> dict[str, subprocess.CompletedProcess]:
    """Each container of the Job's pod that ran (:func:`run_in_pod`), by name, in order; ``between``
    (if given) is called with the name of each init container that passed, before the next starts."""
    pod = job["spec"]["template"]["spec"]
    runs = {}
    for container in [*pod["initContainers"], *pod["containers"]]:
        tail = argv_tail if container["name"] == "cohort-link" else None
        runs[container["name"]] = done = _run_container(settings, job, container, scratch, tail)
        if done.returncode != 0:
            break
        if between is not None:
            between(container["name"])
    return runs


def job_pod(job: dict, runs: dict[str, subprocess.CompletedProcess]) -> tuple[dict, dict]:
    """(the Job's status, its pod as the API server's JSON) once its containers ran as ``runs``
    (``restartPolicy: Never``: the first failure fails the pod; the containers after it never start)."""
    from tests.k8s.api_stand_in import container_status, pod_json, terminated, waiting

    pod = job["spec"]["template"]["spec"]

    def status(container: dict):
        run = runs.get(container["name"])
        if run is None:
            return container_status(container["name"], waiting("PodInitializing"))
        return container_status(container["name"], terminated(run.returncode, run.stderr.strip()[-400:],
                                                              reason="Completed" if run.returncode == 0 else "Error"))

    ok = all(run.returncode == 0 for run in runs.values()) and len(runs) == len(pod["initContainers"]) + 1
    name = job["metadata"]["name"]
    return ({"succeeded": 1} if ok else {"failed": 1}), pod_json(
        f"{name}-x7k2p", "pds", "Succeeded" if ok else "Failed", [status(c) for c in pod["initContainers"]],
        [status(c) for c in pod["containers"]], labels={"job-name": name})


def _run_container(settings, job: dict, container: dict, scratch: Path,
                   argv_tail: list[str] | None) -> subprocess.CompletedProcess:
    from tests.k8s.test_model_check_job import pod_argv

    assert settings.paths.keys.name == "keys"  # the claim's layout: keys/<project>.key
    pod = job["spec"]["template"]["spec"]
    project = job["metadata"]["labels"]["pds.project"]
    claims = {"pds-keys": settings.paths.keys.parent, "pds-ttp": settings.paths.ttp,
              "pds-staging": settings.paths.staging, extract_volume_name(project): settings.paths.projects / project}
    volumes = {v["name"]: v for v in pod["volumes"]}
    binds = []
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            source = scratch / mount["name"]
            source.mkdir(parents=True, exist_ok=True)
        else:
            source = claims[volume["persistentVolumeClaim"]["claimName"]] / mount.get("subPath", "")
        binds.append((source, mount["mountPath"], bool(mount.get("readOnly"))))
    env = {e["name"]: e["value"] for e in container.get("env") or []}
    env.update(PATH=f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", LANG="C.UTF-8")
    security = pod["securityContext"]
    python = str(REPO / ".venv" / "bin" / "python")
    return subprocess.run(pod_argv(binds, env, security["runAsUser"], security["runAsGroup"])
                          + [python, *(argv_tail if argv_tail is not None else container["command"][1:])],
                          capture_output=True, text=True, timeout=120, check=False)


def prepare_output(directory: Path) -> Path:
    """The empty ``link/`` directory the gate makes before it creates the Job."""
    out = directory / "link"
    out.mkdir()
    out.chmod(0o770)
    return out


def bwrap_available() -> bool:
    from tests.k8s.test_chart_jobs import _bwrap_works

    return shutil.which("bwrap") is not None and _bwrap_works()
