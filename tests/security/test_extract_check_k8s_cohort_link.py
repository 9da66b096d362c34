"""Attacks on the extract the cohort-link Job reads (ADR 0011): the Job counts the linked people in the
project's extract (``in_extract`` of the match report, which checkers read), so it mounts the extract
at ``/data``. The extract is changed on its claim after the gate read its publication: before the
Job's pod starts, or between the pod's ``verify-extract`` init container and its linker.

Each test runs the gate's whole cohort import (the real gate, ClamAV, ``cohort_link.runner:
kubernetes``) with ``run_job`` against a loopback stand-in of the API server
(tests/k8s/api_stand_in.py); the Job's containers (``verify-extract``, the linker, the copy to the
claim) run for real, their exact commands, in an emulated pod over the platform's directories
(tests/security/cohort_link_k8s_support.py). The attack fails when no count of the changed extract
reaches the import and the gate refuses it at once, clearly, audited (``extract.mount_refused``).
Before: the Job had no ``verify-extract`` and its linker no comparison; the import was created with
the changed extract's count.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import polars as pl
import pytest
from cohort_link_k8s_support import PROJECT, bwrap_available, job_pod, run_pod
from imports_support import (  # noqa: F401  (fixtures)
    gate_registry_fixture,
    import_gate_fixture,
    settings_fixture,
)
from published import publish_by_hand

from pds_kernel.audit import AuditTrail
from pds_kernel.extract.linkage import person_map
from pds_kernel.k8s.pod_status import MISMATCH
from pds_kernel.pseudo import KeyStore
from pds_kernel.settings import CohortLink
from pds_kernel.snds.cohort_list import generate_cohort_list
from pds_kernel.snds.generator import generate
from tests.k8s.api_stand_in import JobApi

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (user namespaces) emulates the pod")


def _platform(service, tmp_path):
    """The project's key, a cohort list of 20 matched people, and a published extract holding 5 of them;
    (the list, the published build, every matched person's PERSON_ID)."""
    settings = service.settings
    generate(tmp_path / "delivery", patients=120, years=(2022, 2022), seed=3)
    key = KeyStore(settings.paths.keys).ensure(PROJECT, "setup")
    cohort = generate_cohort_list(tmp_path / "delivery", tmp_path / "outside" / "list.csv", settings.paths.ttp,
                                  matched=20, unmatched=5, seed=5)
    ids = person_map(key, pl.DataFrame({"BEN_NIR_PSA": list(cohort.matched_keys)})).select("PERSON_ID")
    extract = settings.paths.projects / PROJECT / "extract"
    extract.mkdir(parents=True)
    ids.head(5).write_parquet(extract / "COHORT.parquet")
    return cohort, publish_by_hand(service.runtime, PROJECT), ids


def _rewrite_cohort(build, ids: pl.DataFrame) -> None:
    """The build's COHORT.parquet rewritten in place to hold every matched person (its owner may)."""
    os.chmod(build, 0o755)
    (build / "COHORT.parquet").chmod(0o644)
    ids.write_parquet(build / "COHORT.parquet")


def _import_on_kubernetes(import_gate, tmp_path, monkeypatch, cohort, change):
    """Upload ``cohort`` as a cohort import; each Job's pod runs for real, ``change(runs, name)``
    called before the pod starts (name None) and after each of its init containers passes."""
    service = import_gate.service
    settings = service.settings
    runs = {}

    def pod_of(job: dict):
        name = job["metadata"]["name"]
        if name not in runs:
            change(None)
            runs[name] = run_pod(settings, job, tmp_path / name, between=change)
            if "cohort-link" in runs[name]:
                api.logs["cohort-link"] = runs[name]["cohort-link"].stdout
        return job_pod(job, runs[name])

    api = JobApi(pod_of)
    with api:
        api.kubeconfig(tmp_path, monkeypatch)
        service.settings = replace(settings, cohort_link=CohortLink(runner="kubernetes", timeout_seconds=60))
        import_gate.imports.settings = service.settings
        try:
            started = time.monotonic()
            answer = import_gate.upload("alice", "list.csv", cohort.path.read_bytes(), kind="cohort")
            seconds = time.monotonic() - started
        finally:
            service.settings = import_gate.imports.settings = settings
    return answer, api, runs, seconds


def _report(service, answer) -> dict:
    """The match report of the import ``answer`` created (what a checker reads)."""
    return service.get_request("olga", answer.json()["id"]).context["import"]["report"]


def _refusals(service) -> list:
    return [e for e in AuditTrail(service.runtime.sessions).entries() if e.action == "extract.mount_refused"]


@pytest.mark.parametrize("when", ["before-the-pod", "between-its-containers"])
def test_cohort_link_job_does_not_count_an_extract_changed_after_the_gate_read_it(import_gate, tmp_path,
                                                                                 monkeypatch, when):
    cohort, build, ids = _platform(import_gate.service, tmp_path)
    done = []

    def change(after: str | None) -> None:
        if not done and (after is None) == (when == "before-the-pod") and after in (None, "verify-extract"):
            _rewrite_cohort(build, ids)  # 20 of the list "in the extract" instead of 5
            done.append(after)

    answer, api, runs, seconds = _import_on_kubernetes(import_gate, tmp_path, monkeypatch, cohort, change)
    assert done  # the extract was changed
    # before: the import was made, its report counting the changed extract's 20 people
    assert answer.status_code >= 400, _report(import_gate.service, answer)
    assert MISMATCH in answer.text  # what is wrong and who puts it right
    (run,) = runs.values()
    refused = run["verify-extract"] if when == "before-the-pod" else run["cohort-link"]
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "PDS-COHORT-LINK-RESULT" not in refused.stdout
    assert "collect" not in str(api.log_reads) and "cohort-link" not in api.log_reads  # no log read
    assert api.deleted == [api.created[0]["metadata"]["name"]]
    assert seconds < 60  # at once, not the Job's deadline
    assert not import_gate.staged_anything()  # no raw list, no output left in staging
    (entry,) = _refusals(import_gate.service)
    assert entry.outcome == "denied" and entry.actor == "alice" and entry.project == PROJECT
    assert entry.details["workload"] == "cohort-link" and entry.details["pod"] == api.created[0]["metadata"]["name"]
    assert entry.details["exit_code"] == 3
    created = [e for e in import_gate.service.runtime.audit.entries(action="airlock.import.create")]
    assert created and created[-1].outcome != "ok" and MISMATCH in created[-1].details["reason"]


def test_cohort_link_job_on_the_published_extract_counts_it(import_gate, tmp_path, monkeypatch):
    """The control: the extract untouched, the import is made with its count."""
    cohort, _, _ = _platform(import_gate.service, tmp_path)
    answer, api, runs, _ = _import_on_kubernetes(import_gate, tmp_path, monkeypatch, cohort, lambda after: None)
    assert answer.status_code in (200, 201), answer.text
    (run,) = runs.values()
    assert [name for name in run] == ["verify-extract", "cohort-link", "collect"]
    assert all(one.returncode == 0 for one in run.values())
    assert _report(import_gate.service, answer)["in_extract"] == 5
    assert not _refusals(import_gate.service)
