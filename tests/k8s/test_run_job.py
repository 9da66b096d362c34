"""pds_kernel.k8s.jobs.run_job with the real kubernetes_asyncio client against a loopback stand-in of
the API server (tests/k8s/api_stand_in.py): how it reads a Job's end from its pod's status."""

from __future__ import annotations

import asyncio

import pytest

from pds_kernel.k8s.jobs import run_job

from .api_stand_in import JobApi, container_status, pod_json, terminated, waiting

MANIFEST = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pds-model-check-abc-0-ff00ff",
                                                                    "namespace": "pds"},
            "spec": {"template": {"spec": {"containers": [{"name": "model-check", "image": "x"}]}}}}


def _pod(job: dict, check, main, phase: str) -> dict:
    return pod_json(f"{job['metadata']['name']}-x7k2p", "pds", phase, [container_status("verify-extract", check)],
                    [container_status("model-check", main)], labels={"job-name": job["metadata"]["name"]})


def _run(tmp_path, monkeypatch, pod_of, logs=None):
    with JobApi(pod_of, logs) as api:
        api.kubeconfig(tmp_path, monkeypatch)
        outcome = asyncio.run(run_job(MANIFEST, container="model-check", timeout=600, limit_bytes=4096,
                                      poll_seconds=0.05))
    assert api.deleted == [MANIFEST["metadata"]["name"]]  # deleted whatever happened
    return outcome, api


def test_a_job_that_ran_gives_its_containers_log(tmp_path, monkeypatch):
    def pod_of(job):
        return {"succeeded": 1}, _pod(job, terminated(0, reason="Completed"), terminated(0, reason="Completed"),
                                      "Succeeded")

    outcome, api = _run(tmp_path, monkeypatch, pod_of, {"model-check": "PDS-RESULT {}\n"})
    assert outcome.succeeded and outcome.log == "PDS-RESULT {}\n" and outcome.extract_refused is None
    assert api.log_reads == ["model-check"]


@pytest.mark.parametrize("job_status", [{}, {"failed": 1}], ids=["job-still-active", "job-failed"])
def test_a_refused_extract_is_the_jobs_outcome_without_reading_a_log(tmp_path, monkeypatch, job_status):
    """Whether the Job controller has marked the Job failed yet or not: the pod's status says it."""
    def pod_of(job):
        return job_status, _pod(job, terminated(3, "the project's extract is refused: COHORT.parquet: SHA-256 "
                                                   "differs"), waiting("PodInitializing"), "Failed")

    outcome, api = _run(tmp_path, monkeypatch, pod_of)
    assert not outcome.succeeded and outcome.log is None and api.log_reads == []
    assert outcome.extract_refused["exitCode"] == 3 and "SHA-256 differs" in outcome.extract_refused["message"]
