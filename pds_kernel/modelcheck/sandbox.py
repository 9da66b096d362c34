"""Run the model check in a fresh sandbox of the project (host side, called by the gate).

The sandbox is built by the same :func:`~pds_kernel.sandbox.bwrap.sandbox_command` as every
workspace (own user, mount, PID and network namespaces, loopback only, no capability, seccomp,
the project's CPU and memory limits, the unprivileged sandbox account), with three differences:

- its Python is the check environment's (``.venv-modelcheck``), not the workspace's; the
  launcher outside still runs the platform's own interpreter;
- it sees the project's extract (``/data``, read-only), the request's check directory
  (``/check``, read-only: the staged model, the snapshot of the declared files, ``job.json``)
  and a fresh empty home (the only writable place, where the report is written; bounded in bytes
  and files: ``model_check.scratch_mb``, ``model_check.scratch_files``, as its ``/tmp`` and
  ``/dev/shm`` are in bytes); never the author's home, and no socket: no hub, no gate;
- its control group is the project's ``0model-check`` group (no user name starts with a digit,
  so it is never a workspace's).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import PdsError
from ..extract.mount_check import WHO_FIXES
from ..sandbox.bwrap import host_facts, launch_env, prepare_runtime_dir, sandbox_command
from ..sandbox.cgroup import group_name, release
from ..sandbox.drain import Drain
from ..sandbox.identity import ensure_sandbox_account, hand_over
from ..sandbox.launch import EXTRACT_REFUSED
from ..sandbox.scratch import is_full, mount_scratch, unmount_scratch
from ..sandbox.spec import DATA_MOUNT, HOME_MOUNT, Mount, WorkspaceSpec, extract_volume_name

log = logging.getLogger(__name__)

#: the user part of the check sandbox's control group and labels (not a valid user name)
CHECK_USER = "0model-check"
#: Where the request's check directory is mounted (read-only). A path no installation uses: a mount
#: over a parent of the interpreter or the package (an installation under /check, say) would hide it.
CHECK_MOUNT = "/pds-model-check"
OUT_DIR = f"{HOME_MOUNT}/out"
#: the folder of the work folder the check may write (its home and its runtime folder), bounded
SCRATCH = "scratch"
#: what the gate reads back from the sandbox, at most
MAX_REPORT_BYTES = 1024 * 1024
MAX_PLOT_BYTES = 512 * 1024
#: of what the check prints (standard output, standard error), the gate keeps the last bytes only
MAX_OUTPUT_TAIL = 64 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def default_python() -> Path:
    """The check environment's interpreter in this checkout (``make venv-modelcheck``)."""
    return Path(__file__).resolve().parents[2] / ".venv-modelcheck" / "bin" / "python"


def check_python(settings) -> Path:
    configured = settings.model_check.python
    return Path(configured) if configured else default_python()


@dataclass(frozen=True)
class Output:
    """What the gate kept of a check's output: its last bytes (at most :data:`MAX_OUTPUT_TAIL`,
    standard error then standard output) and how many bytes it wrote in all."""

    kept: bytes
    total: int


@dataclass(frozen=True)
class CheckRun:
    """What one run of the check left: its exit code, the report (parsed, not yet validated), the
    plot bytes, its wall time, and why nothing usable came out (``problem``)."""

    exit_code: int | None
    report: dict[str, Any] | None
    plot: bytes | None
    seconds: float
    problem: str | None = None
    output: Output | None = None  #: the tail of what the check printed (for the log)


def check_spec(settings, project_info, check_dir: Path, home: Path) -> WorkspaceSpec:
    project = project_info.id
    return WorkspaceSpec(
        user=CHECK_USER, project=project,
        mounts=(Mount(extract_volume_name(project), DATA_MOUNT, True, settings.paths.projects / project / "extract"),
                Mount("model-check", CHECK_MOUNT, True, check_dir),
                Mount("model-check-home", HOME_MOUNT, False, home)),
        cpu_limit=project_info.cpu_limit, mem_limit_mb=project_info.mem_limit_mb, dask_workers=1, gpu=False,
        labels={"pds.project": project, "pds.component": "model-check"},
        tmp_mb=settings.model_check.scratch_mb, max_file_mb=settings.model_check.scratch_mb)


def check_host(python: Path):
    """The host facts of the check sandbox: the check environment inside, our launcher outside."""
    if not python.exists():
        raise FileNotFoundError(f"the model check environment is not installed ({python}): run make venv-modelcheck")
    venv = python.parent.parent.resolve()
    base = Path(os.path.realpath(python)).parents[1]
    import pds_kernel

    host = host_facts()
    return replace(host, python=str(python), launcher=sys.executable,
                   python_roots=tuple(dict.fromkeys([str(base), str(venv)])),
                   package_dir=str(Path(pds_kernel.__file__).resolve().parent))


def build_check_command(settings, project_info, check_dir: Path, work: Path, argv: list[str], *,
                        extract) -> tuple[list[str], dict]:
    """(argv, env) that run ``argv`` in a fresh check sandbox over ``check_dir``; ``work/scratch``
    holds its home (created empty, handed to the sandbox account) and its runtime folder: a bounded
    file system of ``model_check.scratch_mb`` MiB and ``model_check.scratch_files`` inodes when
    this process is root (:mod:`pds_kernel.sandbox.scratch`; :func:`finish_check` unmounts it)."""
    account = ensure_sandbox_account()
    scratch = work / SCRATCH
    unmount_scratch(scratch)
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True, mode=0o700)
    mount_scratch(scratch, settings.model_check.scratch_mb, settings.model_check.scratch_files, account)
    home = scratch / "home"
    home.mkdir(mode=0o700)
    hand_over(home, account)
    runtime = prepare_runtime_dir(scratch / "run")  # bounded with the home
    hand_over(runtime, account)
    spec = check_spec(settings, project_info, check_dir, home)
    host = check_host(check_python(settings))
    return (sandbox_command(spec, argv, env={}, runtime_dir=runtime, host=host, extract=extract),
            launch_env({}))


def run_check(settings, project_info, check_dir: Path, work: Path, *, extract) -> CheckRun:
    """Run :mod:`pds_kernel.modelcheck.run` over ``check_dir/job.json`` in a fresh sandbox, with the
    project's extract ``extract`` (checked against its publication,
    :func:`pds_kernel.extract.mount_check.check_for_workspace`: the sandbox mounts exactly it)."""
    try:
        return _run_check(settings, project_info, check_dir, work, extract)
    finally:
        finish_check(work)


def finish_check(work: Path) -> None:
    """Unmount the bounded folder :func:`build_check_command` made in ``work`` (when it did)."""
    unmount_scratch(work / SCRATCH)


def _run_check(settings, project_info, check_dir: Path, work: Path, extract) -> CheckRun:
    python = str(check_python(settings))
    start = time.monotonic()
    try:
        argv, env = build_check_command(settings, project_info, check_dir, work,
                                        [python, "-I", "-m", "pds_kernel.modelcheck.run",
                                         f"{CHECK_MOUNT}/job.json", OUT_DIR], extract=extract)
    except (OSError, PdsError) as exc:  # no bubblewrap, no sandbox account, no check environment
        return CheckRun(None, None, None, 0.0, f"the check sandbox could not be prepared: {exc}")
    timeout = settings.model_check.timeout_seconds
    try:
        code, errors = run_bounded(argv, env, timeout)
    except subprocess.TimeoutExpired:
        return CheckRun(None, None, None, time.monotonic() - start,
                        f"the check did not finish within {timeout} s")
    except OSError as exc:
        return CheckRun(None, None, None, time.monotonic() - start, f"the check sandbox could not start: {exc}")
    finally:
        release(group_name(project_info.id, CHECK_USER))
    seconds = time.monotonic() - start
    if errors.total > len(errors.kept):
        log.info("the model check printed %d bytes; the gate kept the last %d", errors.total, len(errors.kept))
    if code != 0:
        log.warning("model check exited %s (its output: %d bytes, %d kept): %s", code, errors.total,
                    len(errors.kept), errors.kept[-2000:].decode("utf-8", "replace"))
    if code == EXTRACT_REFUSED:  # the launcher's: the tree is no longer the one checked; nothing ran
        return CheckRun(code, None, None, seconds, "the project's extract changed between the gate's check and the "
                                                   f"check sandbox's mount; {WHO_FIXES}", output=errors)
    if is_full(work / SCRATCH):
        limits = settings.model_check
        return CheckRun(code, None, None, seconds,
                        f"the check wrote more than the {limits.scratch_mb} MiB or {limits.scratch_files} files it "
                        "may write (model_check.scratch_mb, model_check.scratch_files)")
    report, plot, problem = read_outputs(work / SCRATCH / "home" / "out")
    return CheckRun(code, report, plot, seconds,
                    problem or (None if code == 0 else f"the check exited with code {code}"), output=errors)


def run_bounded(argv: list[str], env: dict, timeout: float) -> tuple[int, Output]:
    """Run ``argv`` (the check's sandbox) until it exits or ``timeout`` (then it is killed and
    :class:`subprocess.TimeoutExpired` raised): its exit code and the tail of its output, read as
    it comes within :data:`MAX_OUTPUT_TAIL` bytes a stream (:class:`~pds_kernel.sandbox.drain.Drain`):
    a check printing gigabytes does not fill the gate's memory."""
    child = subprocess.Popen(argv, env=env, cwd=os.path.sep, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    out = Drain(child.stdout, MAX_OUTPUT_TAIL, tail=True)  # each closes its pipe at its end
    err = Drain(child.stderr, MAX_OUTPUT_TAIL, tail=True)
    try:
        code = child.wait(timeout=timeout)
    except BaseException:
        child.kill()
        child.wait()
        raise
    kept = err.result() + out.result()
    return code, Output(kept, out.total + err.total)


def _read_limited(path: Path, limit: int) -> bytes | None:
    """At most ``limit`` bytes of a regular file written by the sandbox (no link followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not os.path.stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = fh.read(limit + 1)
    return data if len(data) <= limit else None


def read_outputs(out: Path) -> tuple[dict | None, bytes | None, str | None]:
    """The report (a JSON object of at most :data:`MAX_REPORT_BYTES`) and the plot (a PNG of at
    most :data:`MAX_PLOT_BYTES`) the sandbox wrote; anything else is ignored."""
    raw = _read_limited(out / "report.json", MAX_REPORT_BYTES)
    if raw is None:
        return None, None, "the check wrote no readable report"
    try:
        report = json.loads(raw)
    except ValueError:
        return None, None, "the check's report is not JSON"
    if not isinstance(report, dict):
        return None, None, "the check's report is not a JSON object"
    plot = _read_limited(out / "roc.png", MAX_PLOT_BYTES)
    if plot is not None and not plot.startswith(PNG_MAGIC):
        plot = None
    return report, plot, None
