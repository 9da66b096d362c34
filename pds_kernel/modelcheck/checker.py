"""The gate's side of the model check: one call per model file of a submitted request.

:class:`ModelChecker` is built by the airlock service for one (project, author, request) and
called by :func:`pds_kernel.airlock.gate.run_gate` for each file of kind ``model``. It snapshots
the declared files (:mod:`.inputs`), writes the job, runs the check in a fresh sandbox of the
project (:mod:`.sandbox`) or, with ``model_check.runner: kubernetes``, in a Job of the project
that snapshots the declared files itself (:mod:`.k8s_job`), both on the extract the audit trail
says was published last, checked as a workspace's is (:mod:`pds_kernel.extract.mount_check`: locally
the gate's one check of the submission, which the sandbox's launcher compares with the tree it
mounts; a refused extract sends the model to a checker, the check unrun), and turns what the
sandbox wrote
into findings (:mod:`.verdict`). The
request's check directory (the model copy, the snapshot, the sandbox's home) is deleted when the
check ends: only the cleaned report and its plot stay, in the file's stored check result.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..airlock.checks.models import model_format
from ..airlock.checks.result import Finding, Status
from ..extract.mount_check import CheckedMount, ExtractRefused, check_for_workspace, expected_mount
from ..k8s.pod_status import ExtractMismatch
from . import ATTACKED_FORMATS, verdict
from .inputs import snapshot
from .k8s_job import run_check_job
from .sandbox import CHECK_MOUNT, run_check

NO_DECLARATION = ("no declaration of the training and test rows: the platform cannot attack this model; "
                  "send context={'models': {name: {'data', 'target', 'train', 'test'}}} "
                  "(ws.request_export(..., models=...))")


def attack_job(fmt: str, declaration: Mapping[str, Any], limits) -> dict[str, Any]:
    """What :func:`.run.attack` needs besides the file paths (the model, data, train, test)."""
    return {"format": fmt, "target": declaration["target"], "features": declaration.get("features"),
            "cohort": "/data/COHORT.parquet", "shadow_models": limits.shadow_models,
            "worst_case_reps": limits.worst_case_reps, "low_fprs": sorted({0.001, limits.low_fpr, 0.1})}


@dataclass(frozen=True)
class ModelChecker:
    settings: Any
    project: Any  #: the registry's ProjectInfo (limits of the sandbox)
    home: Path  #: the author's home in the project (declared paths are relative to it)
    root: Path  #: this request's check directory (deleted after each check)
    author: str = ""  #: the request's author (whose home claim a Kubernetes check Job mounts)
    request_id: str = ""
    #: the audit trail: the extract the check mounts must be the one published (deny by default)
    audit: Any = None
    #: the project's extract as the gate checked it for this submission
    #: (:func:`pds_kernel.airlock.extract_reads.gate_extract`): the local check mounts it without
    #: re-hashing it, its launcher comparing the tree's fingerprint with this one; None: checked here
    extract: CheckedMount | None = None

    def __call__(self, index: int, name: str, staged: Path, declaration: Mapping[str, Any] | None
                 ) -> tuple[list[Finding], dict[str, Any] | None]:
        limits = self.settings.model_check
        if declaration is None:
            return [Finding("model-check", Status.REVIEW, NO_DECLARATION)], None
        size = staged.stat().st_size
        if size > limits.max_model_bytes:
            return [Finding("model-check", Status.REVIEW, f"a model of {size} bytes is larger than the check loads "
                                                          f"({limits.max_model_bytes}): a checker judges it")], None
        with open(staged, "rb") as fh:
            head = fh.read(4096)
        fmt = model_format(staged, Path(name).suffix.lower(), head, size)
        if fmt not in ATTACKED_FORMATS:
            return [Finding("model-check", Status.REVIEW, f"the platform does not attack {fmt} models (it attacks "
                                                          f"{', '.join(sorted(ATTACKED_FORMATS))}): a checker "
                                                          "judges it")], {"status": "unsupported", "format": fmt}
        job = attack_job(fmt, declaration, limits)
        model_name = f"model{Path(name).suffix.lower()}"
        if limits.runner not in ("kubernetes", "sandbox"):
            return [Finding("model-check", Status.REVIEW, f"model_check.runner is {limits.runner!r} (sandbox or "
                                                          "kubernetes): the check did not run; a checker judges "
                                                          "the model")], {"status": "error"}
        try:
            run = self._run(index, staged, model_name, declaration, job)
        except ExtractRefused as exc:
            return [Finding("model-check", Status.REVIEW, f"the check did not run: {exc}; a checker judges the "
                                                          "model")], {"status": "error", "reason": str(exc)}
        if run.report is None:
            return [Finding("model-check", Status.REVIEW, f"{run.problem}: a checker judges the model")], \
                {"status": "error", "reason": run.problem, "wall_seconds": round(run.seconds, 1)}
        report = verdict.clean_report(run.report)
        report["wall_seconds"] = round(run.seconds, 1)
        report["thresholds"] = {"max_auc": limits.max_auc, "p_value": limits.p_value,
                                "max_tpr_at_low_fpr": limits.max_tpr_at_low_fpr, "low_fpr": limits.low_fpr,
                                "shadow_models": limits.shadow_models}
        if run.plot is not None:
            report["plot_png"] = base64.b64encode(run.plot).decode("ascii")
        return verdict.findings(report, limits), report

    def _run(self, index: int, staged: Path, model_name: str, declaration: Mapping[str, Any],
             job: dict[str, Any]):
        """Run the check where ``model_check.runner`` says, on the extract the audit trail says was
        published last (:mod:`pds_kernel.extract.mount_check`; raises :class:`ExtractRefused`)."""
        if self.audit is None:
            raise ExtractRefused("the project's extract cannot be checked against its publication here "
                                 "(no audit trail given to the model check)")
        if self.settings.model_check.runner == "kubernetes":
            expected = expected_mount(self.settings, self.audit, self.project.id)
            try:
                return run_check_job(self.settings, self.project, self.author, self.request_id, index,
                                     str(staged.relative_to(self.settings.paths.staging)), model_name,
                                     {**job, "declaration": dict(declaration),
                                      "max_input_bytes": self.settings.model_check.max_input_bytes},
                                     expected=expected)
            except ExtractMismatch as exc:  # the Job's verify-extract container refused it
                self.audit.record(exc.audit_event(self.author, workload="model-check", request=self.request_id,
                                                  file_index=index))
                raise
        extract = self.extract or check_for_workspace(self.settings, self.audit, self.project.id)
        return self._run_in_sandbox(index, staged, model_name, declaration, job, extract)

    def _run_in_sandbox(self, index: int, staged: Path, model_name: str, declaration: Mapping[str, Any],
                        job: dict[str, Any], extract):
        """Snapshot the declared files and run the check in a fresh bubblewrap sandbox of the project."""
        limits = self.settings.model_check
        work = self.root / str(index)
        check_dir = work / "check"
        try:
            files = snapshot(self.home, declaration, check_dir, limits.max_input_bytes)
            model = check_dir / model_name
            shutil.copyfile(staged, model)
            model.chmod(0o644)
            job = {**job, "model": f"{CHECK_MOUNT}/{model.name}",
                   **{key: f"{CHECK_MOUNT}/{path.name}" for key, path in files.items()}}
            (check_dir / "job.json").write_text(json.dumps(job))
            for path in (check_dir / "job.json", check_dir):
                path.chmod(0o755 if path.is_dir() else 0o644)
            return run_check(self.settings, self.project, check_dir, work, extract=extract)
        finally:
            shutil.rmtree(work, ignore_errors=True)
