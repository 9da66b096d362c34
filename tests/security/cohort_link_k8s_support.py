"""Support of tests/security/test_cohort_link_k8s.py and tests/k8s/test_cohort_link_job.py: a platform
with a project key, the synthetic correspondence and cohort list, and the cohort-link Job's exact
command run in an emulated pod (bubblewrap as tests/k8s/test_model_check_job.py emulates the check
pod: the manifest's mounts at their paths, read-only where it says, its uid, no network).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import polars as pl

from pds_kernel.airlock.cohort_link_job import build_link_job
from pds_kernel.extract.linkage import person_map
from pds_kernel.k8s.config import K8sConfig
from pds_kernel.pseudo import KeyStore
from pds_kernel.sandbox.spec import extract_volume_name
from pds_kernel.snds.cohort_list import generate_cohort_list
from pds_kernel.snds.generator import generate

REPO = Path(__file__).resolve().parents[2]
PROJECT = "diab-2024"
STORED = "0-r1-recruited.csv"
CFG = K8sConfig(namespace="pds", cohort_link_image="registry.example.org/pds/hub:0.1.0")


def make_platform(root: Path):
    """(settings, cohort list): a key for PROJECT, the correspondence, an extract holding 15 of the
    30 matched people, and a list of 30 matched, 8 unmatched, 2 people listed twice, 3 invalid NIRs."""
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
    return settings, cohort


def stage(settings, request: str, content: bytes) -> Path:
    """``staging/<project>/<request>/raw/<STORED>`` holding ``content``, as the gate stages it."""
    directory = settings.paths.staging / PROJECT / request
    (directory / "raw").mkdir(parents=True)
    (directory / "raw" / STORED).write_bytes(content)
    return directory


def output_bound(raw_bytes: int) -> int:
    """The bound of the output the gate gives a list of ``raw_bytes`` (cohort_link.link_staged)."""
    return 8 * raw_bytes + 64 * 1024 + 4096


def link_job(request: str, raw: str | None = None, project: str = PROJECT, max_output_bytes: int = 4 << 20) -> dict:
    return build_link_job(CFG, name=f"pds-cohort-link-{request[:20]}-ff00ff", project=project, request_id=request,
                          raw=raw if raw is not None else f"{project}/{request}/raw/{STORED}", timeout_seconds=300,
                          max_output_bytes=max_output_bytes)


def run_in_pod(settings, job: dict, scratch: Path, argv_tail: list[str] | None = None) -> subprocess.CompletedProcess:
    """The Job's pod in an emulation whose claims are this platform's directories: pds-keys = the
    parent of ``paths.keys``, pds-ttp = ``paths.ttp``, pds-staging = ``paths.staging``,
    extract-<project> = ``paths.projects/<project>``; each emptyDir a folder of ``scratch``. Its init
    container (the linker: its exact command, or ``argv_tail`` after ``python``), then, if that
    succeeded, its container (the copy to the claim), as the kubelet runs them. The linker's run
    (its output: the log the gate reads), failed when either container failed."""
    pod = job["spec"]["template"]["spec"]
    (link,) = pod["initContainers"]
    (collect,) = pod["containers"]
    done = _run_container(settings, job, link, scratch, argv_tail)
    if done.returncode == 0:
        copied = _run_container(settings, job, collect, scratch, None)
        if copied.returncode != 0:
            return subprocess.CompletedProcess(done.args, copied.returncode, done.stdout, done.stderr + copied.stderr)
    return done


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
