"""The rebuild's child as a Kubernetes Job of the project (``airlock.rebuild_runner: job``, set by
the chart; docs/adr/0010-release-rebuilt-copies.md).

The child parses what researchers submit with PDFium, Pillow, openpyxl and pyarrow
(:mod:`.rebuild_formats`): a file that exploits a flaw of one of them runs code as the child. On
Kubernetes the gate cannot start a bubblewrap sandbox (its own pod is restricted), and a child
process of its pod would be the gate, with every project's staging area and outbox. So the gate
runs each submission's rebuild as a Job of the project (:func:`build_rebuild_job`, the only place
its manifest is written) with the isolation of the model check's Job
(:func:`pds_kernel.k8s.jobs.isolated_job`):

- the project's labels with ``pds.component: airlock-rebuild``: the chart's
  ``pds-projects-default-deny`` NetworkPolicy selects it and no other policy opens anything for
  that component, so the pod has no ingress and no egress at all; no DNS resolver either;
- no service-account token, no service links, no host namespaces; non-root (the gate's uid), no
  privilege escalation, all capabilities dropped, seccomp ``RuntimeDefault``, read-only root
  filesystem; requests = limits = one CPU and the rebuild's memory (:data:`.rebuild.MEMORY_BYTES`);
- ``backoffLimit: 0``, ``activeDeadlineSeconds`` = the rebuild's wall limit; the gate deletes the
  Job when it has its result (``ttlSecondsAfterFinished`` cleans up after a gate that died);
- the gate's own image (:attr:`~pds_kernel.k8s.config.K8sConfig.rebuild_image`, the chart's
  ``images.pds``): the same code and parsers as the gate.

What the pod sees: the gate copies the files to rebuild into a fresh work folder of the staging
claim, ``.rebuilds/<project>-<random>/`` (no project's folder starts with a dot), with ``in/``
(the copies and :data:`ITEMS`) mounted read-only by sub-path at :data:`IN_DIR`. The child (the
pod's init container, :data:`CONTAINER`) writes its copies in a pod-local ``out/`` at
:data:`OUT_DIR` (an emptyDir of ``airlock.rebuild_scratch_mb``) and has a size-limited emptyDir
``/tmp``; it has nothing of the staging claim it may write: a child that writes without bound
fills its own pod's folders, bounded by their sizes and the pod's ``ephemeral-storage``, never
the claim every project's staging area is on. Once it has ended, the pod's second container
(:data:`.rebuild_collect.COLLECT_CONTAINER`, the gate's code, :func:`.rebuild_collect.copy_out`) copies the files
it was asked for, regular files only, no link followed, each bounded and all within the size of
``out/``, to the work folder's ``out/`` on the claim (mounted by sub-path at :data:`COPIES_DIR`,
in that container only). Nothing else of the staging claim, no other claim.

The results come back as the last :data:`.rebuild_formats.RESULT_MARKER` line of the pod's log,
read with a byte limit (:data:`MAX_LOG_BYTES`) and validated as the other runners' output is
(:func:`.rebuild._results`); the copies are taken back from ``out/`` by
:func:`.rebuild_collect.collect_copies` (no link followed, regular files only, bounded) into the
targets the gate gave. The work folder is removed whatever happens (:meth:`RebuildJob.finish`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InvalidInput, Unavailable
from ..k8s.config import K8sConfig, load_k8s_config
from ..k8s.jobs import JobOutcome, isolated_job, run_job
from ..k8s.pods import build_resources
from ..registry.names import check_project_id
from ..trees import DIRECTORY
from .rebuild_collect import collect_container, collect_copies
from .rebuild_formats import RESULT_MARKER

log = logging.getLogger(__name__)

CONTAINER = "rebuild"
COMPONENT = "airlock-rebuild"
#: the claim the airlock stages submitted files on (the chart's ``pds-staging``)
STAGING_CLAIM = "pds-staging"
#: the folder of the staging claim holding the rebuilds' work folders (not a project id: no dot)
WORK_ROOT = ".rebuilds"
#: where the pod sees the copies to rebuild (read-only) and writes the rebuilt copies
IN_DIR = PurePosixPath("/srv/pds/rebuild/in")
OUT_DIR = PurePosixPath("/srv/pds/rebuild/out")
#: where the second container sees the work folder's ``out/`` on the staging claim
COPIES_DIR = PurePosixPath("/srv/pds/rebuild/copies")
#: the file of ``in/`` listing ``[[source, target, name], ...]`` as the pod sees them
ITEMS = "items.json"
#: what the gate reads of the pod's log, at most: the results (the process runner's bound on its
#: child's output, :data:`.rebuild.MAX_RESULTS_BYTES`) and room for the errors before them
MAX_LOG_BYTES = 1024 * 1024 + 64 * 1024
#: what the gate keeps of the log's other lines (their end: the kind of the last error)
MAX_ERRORS_BYTES = 4096
#: the pod's ``/tmp`` (openpyxl writes a workbook's sheets there before it zips them)
SCRATCH_MB = 1024
#: the pod-local ``out/`` the child writes its copies in (``airlock.rebuild_scratch_mb``): all the
#: second container takes to the claim, at most
OUT_MB = 1024
_COPY = re.compile(r"^[0-9]{1,4}(\.[a-z0-9]{1,8})?$")
_WORK = re.compile(r"^\.rebuilds/(?P<project>[a-z][a-z0-9-]{1,38}[a-z0-9])-[A-Za-z0-9_]{4,32}$")


def job_name(project: str) -> str:
    """``pds-rebuild-<project>-<random>``, at most 63 characters."""
    return f"pds-rebuild-{check_project_id(project)[:30]}-{secrets.token_hex(6)}"


def build_rebuild_job(cfg: K8sConfig, *, name: str, project: str, work: str, memory_bytes: int,
                      timeout_seconds: int, copies: list[str], cpu: float = 1.0, scratch_mb: int = SCRATCH_MB,
                      out_mb: int = OUT_MB) -> dict[str, Any]:
    """The Job that rebuilds the files of the work folder ``work`` (relative to the staging claim:
    ``.rebuilds/<project>-<random>``, made by :meth:`RebuildJob.prepare`) into the copies named
    ``copies`` (``<index><suffix>``)."""
    check_project_id(project)
    match = _WORK.fullmatch(work)
    if match is None or match["project"] != project:
        raise InvalidInput(f"{work[:120]!r} is not a rebuild work folder of {project}")
    if not all(_COPY.fullmatch(copy) for copy in copies):
        raise InvalidInput("a rebuild copy is named <index><suffix>")
    python = ["python", "-I", "-m"]
    rebuild = {
        "name": CONTAINER,
        "image": cfg.rebuild_image,
        "imagePullPolicy": cfg.pull_policy,
        "command": [*python, "pds_kernel.airlock.rebuild_formats", "--items-file", str(IN_DIR / ITEMS)],
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "TMPDIR", "value": "/tmp"}],
        "resources": build_resources(cpu, max(1, memory_bytes >> 20)),
        "volumeMounts": [
            {"name": "in", "mountPath": str(IN_DIR), "subPath": f"{work}/in", "readOnly": True},
            {"name": "out", "mountPath": str(OUT_DIR)},
            {"name": "scratch", "mountPath": "/tmp"},
        ],
    }
    collect = collect_container(cfg.rebuild_image, cfg.pull_policy, source=OUT_DIR, dest=COPIES_DIR,
                                dest_path=f"{work}/out", names=copies, max_bytes=int(out_mb) << 20)
    volumes = [
        {"name": "in", "persistentVolumeClaim": {"claimName": STAGING_CLAIM, "readOnly": True}},
        {"name": "copies", "persistentVolumeClaim": {"claimName": STAGING_CLAIM}},
        {"name": "out", "emptyDir": {"sizeLimit": f"{int(out_mb)}Mi"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": f"{int(scratch_mb)}Mi"}},
    ]
    return isolated_job(cfg, name=name, project=project, component=COMPONENT, init_containers=[rebuild],
                        container=collect, volumes=volumes, timeout_seconds=timeout_seconds)


def parse_rebuild_log(text: str) -> tuple[bytes, str]:
    """(results, errors) of the pod's log as the gate reads it: at most :data:`MAX_LOG_BYTES` of it
    (the API server cuts there; cut again here), the JSON after its last :data:`RESULT_MARKER` line
    (``b""`` when there is none: no results) and the end of its other lines. The results are not
    trusted: :func:`.rebuild._results` checks them as it checks a child process's output."""
    kept = (text or "").encode("utf-8", "replace")[:MAX_LOG_BYTES].decode("utf-8", "ignore")
    lines = kept.splitlines()
    marked = [line for line in lines if line.startswith(RESULT_MARKER)]
    others = "\n".join(line for line in lines if not line.startswith(RESULT_MARKER))
    results = marked[-1][len(RESULT_MARKER):].encode() if marked else b""
    return results, others[-MAX_ERRORS_BYTES:]


@dataclass
class PreparedJob:
    """A rebuild Job ready to run: its manifest, the work folder, and the file names of the copies
    in ``out/`` (one an item, in order)."""

    manifest: dict[str, Any]
    work: Path
    copies: list[str]


@dataclass(frozen=True)
class RebuildJob:
    """The rebuilds of ``project``'s submissions as Jobs; ``staging`` is the staging claim as the gate
    mounts it (``paths.staging``)."""

    project: str
    staging: Path
    cfg: K8sConfig | None = None
    #: the pod-local ``out/`` of its Jobs, MiB (``airlock.rebuild_scratch_mb``)
    out_mb: int = OUT_MB

    def prepare(self, items: list[tuple[Path, Path, str]], memory_bytes: int, wall_seconds: float) -> PreparedJob:
        """Copy the files of ``items`` into a fresh work folder of the staging claim and write the
        Job's manifest; ``OSError`` or ``PdsError`` when it cannot be prepared."""
        cfg = self.cfg or load_k8s_config()
        root = self.staging / WORK_ROOT
        root.mkdir(mode=0o750, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{check_project_id(self.project)}-", dir=root))
        try:
            # the pod runs as the gate's uid with its group (fsGroup): it traverses the folder,
            # reads in/ and writes out/, nothing else
            os.chmod(work, 0o750)
            folder, out = work / "in", work / "out"
            folder.mkdir(mode=0o750)
            out.mkdir(mode=0o770)
            out.chmod(0o770)
            inside, copies = [], []
            for index, (source, _, name) in enumerate(items):
                copy = f"{index}{PurePosixPath(name).suffix.lower()}"
                shutil.copyfile(source, folder / copy)
                (folder / copy).chmod(0o440)
                inside.append([str(IN_DIR / copy), str(OUT_DIR / copy), name])
                copies.append(copy)
            (folder / ITEMS).write_text(json.dumps(inside), encoding="utf-8")
            (folder / ITEMS).chmod(0o440)
            manifest = build_rebuild_job(cfg, name=job_name(self.project), project=self.project,
                                         work=work.relative_to(self.staging).as_posix(), memory_bytes=memory_bytes,
                                         timeout_seconds=max(1, math.ceil(wall_seconds)), copies=copies,
                                         out_mb=self.out_mb)
            return PreparedJob(manifest, work, copies)
        except BaseException:
            remove_work(work)
            raise

    def run(self, prepared: PreparedJob, items: list[tuple[Path, Path, str]]) -> subprocess.CompletedProcess:
        """Run the Job to its end (deleted whatever happens) and take its copies back: how it ended,
        as a child process's ending (its results as output). :class:`Unavailable` when it could
        not run: no API server, no permission, a pod that cannot start or be scheduled."""
        timeout = prepared.manifest["spec"]["activeDeadlineSeconds"]
        try:
            outcome = asyncio.run(run_job(prepared.manifest, container=CONTAINER, timeout=timeout,
                                          limit_bytes=MAX_LOG_BYTES))
        except Exception as exc:
            raise Unavailable(f"the rebuild Job could not run on Kubernetes ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from exc
        if outcome.log is None:
            raise Unavailable(f"the rebuild Job could not run on Kubernetes: {outcome.problem}")
        return self.collect(prepared, items, outcome)

    def collect(self, prepared: PreparedJob, items: list[tuple[Path, Path, str]],
                outcome: JobOutcome) -> subprocess.CompletedProcess:
        """The Job's ending from its pod's log, after copying the copies its results say it wrote
        (a regular file of ``out/``, no link followed, bounded) to their targets."""
        results, errors = parse_rebuild_log(outcome.log or "")
        if outcome.succeeded and results:
            try:
                said = json.loads(results)
            except ValueError:
                said = None  # no results: rebuild._results says so
            collect_copies(prepared.work / "out", [(copy, target, name) for copy, (_, target, name) in
                                                   zip(prepared.copies, items, strict=True)], said)
        return subprocess.CompletedProcess(prepared.manifest["metadata"]["name"], 0 if outcome.succeeded else 1,
                                           results, errors)

    def finish(self, prepared: PreparedJob) -> None:
        """Remove the work folder."""
        remove_work(prepared.work)


def remove_work(work: Path) -> None:
    """Remove a work folder, with what the pod left in ``out/`` (it runs as the gate's uid: it may
    have left folders without permissions, which are opened up first, following no link)."""
    shutil.rmtree(work, ignore_errors=True)
    if not os.path.lexists(work):
        return
    try:
        parent = os.open(work, DIRECTORY)
    except OSError:
        parent = None
    if parent is not None:
        try:
            _open_up(parent, "out", 0)
        finally:
            os.close(parent)
    shutil.rmtree(work, ignore_errors=True)
    if os.path.lexists(work):
        log.warning("rebuild work folder %s could not be removed", work)


def _open_up(parent: int, name: str, depth: int) -> None:
    """Give the folder ``name`` of ``parent`` (and its folders, to a depth) its owner's permissions."""
    try:
        os.chmod(name, 0o700, dir_fd=parent, follow_symlinks=False)
        fd = os.open(name, DIRECTORY, dir_fd=parent)
    except (OSError, ValueError, NotImplementedError):  # a link, or not a folder
        return
    try:
        if depth < 32:
            with os.scandir(fd) as entries:
                folders = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
            for folder in folders:
                _open_up(fd, folder, depth + 1)
    finally:
        os.close(fd)
