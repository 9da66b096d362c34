"""Where the gate's rebuilt copies live, and the child process that makes them.

At submission, each Parquet file, workbook and PNG, JPEG or PDF figure of a request is rebuilt from its
cells or pixels (:mod:`.rebuild_formats`, docs/adr/0010-release-rebuilt-copies.md) and the copy
takes the staged file's place: the checks read it, the checkers see and approve it (by its
SHA-256), the release copies it out. The submitted bytes move to the request's staging folder
``submitted/``, for the record and for the ``embedded-data`` check of what was submitted; they are
never shown or released.

The rebuild runs in a child process with a memory and a CPU-time limit (:func:`rebuild_all`): the
formats' own bounds come from the files' declared sizes, which a crafted file can forge, and a
child that exhausts its limits refuses the files instead of taking the gate down. Where the child
runs is ``airlock.rebuild_runner`` (:func:`rebuild_sandbox`): a sandbox of the project on one
machine (:mod:`.rebuild_sandbox`), a Job of the project on Kubernetes (:mod:`.rebuild_job`), or a
plain child process of the gate (``process``: no confinement beyond the limits).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from ..errors import InvalidInput, PdsError
from ..hashing import sha256_file
from ..sandbox.drain import Drain
from .inputs import brief
from .rebuild_formats import MAX_PIXELS, rebuild, rebuilt_kind
from .rebuild_job import RebuildJob
from .rebuild_notebook import needs_rebuild
from .rebuild_sandbox import MAX_COPY_BYTES, OverBound, RebuildSandbox, rebuild_sandbox
from .staging import RefusedFiles, StagedFile, fsync_path

__all__ = ["MAX_PIXELS", "SUBMITTED", "rebuild", "rebuild_all", "rebuild_sandbox", "rebuilt_kind", "release_copies",
           "submitted_path", "to_rebuild"]

log = logging.getLogger(__name__)

#: the folder of a request's staging directory holding the submitted bytes of rebuilt files
SUBMITTED = "submitted"
#: the address space of the rebuild's child process: a 40-megapixel figure or a 5M-cell table
#: needs well under it
MEMORY_BYTES = 3 * 1024**3
#: the CPU time of the rebuild's child process (a workbook at the 1M-cell limit takes about 30 s)
CPU_SECONDS = 300
#: rebuild children one gate process runs at once (each may take a core and up to
#: :data:`MEMORY_BYTES`, and a small PDF can hold one until its wall limit): a submission waits
#: for a free one, at most the wall limit
MAX_CONCURRENT = 2
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT)
#: who has a rebuild running or waiting for a slot (at most one each: one researcher submitting
#: busy files over and over holds one slot, never every slot)
_HOLDERS: set[str] = set()
_TURNS = threading.Condition()
#: the wall time of the rebuild's child process: a library short of memory can wait forever
#: (pyarrow whose threads cannot start), using no CPU
WALL_SECONDS = 180
#: the most the gate reads of the child's standard output (its results: a name and a reason of at
#: most a few hundred characters a file) and keeps of its standard error (the end: the last error's
#: kind); the rest is read and dropped, so a child writing gigabytes never fills the gate's memory
MAX_RESULTS_BYTES = 1024 * 1024
MAX_ERRORS_BYTES = 4096
#: the most of one file's reason (from the child) the gate keeps
MAX_REASON_CHARS = 500
#: the child's command line (a test replaces it by a child that misbehaves)
CHILD = [sys.executable, "-m", "pds_kernel.airlock.rebuild_formats"]


def to_rebuild(path: Path, name: str) -> bool:
    """True when the gate rebuilds the file ``name`` at ``path``: a table, workbook, figure or PDF
    by its name, a notebook when it holds a figure or gives a key twice (:mod:`.rebuild_notebook`)."""
    kind = rebuilt_kind(name)
    return kind is not None and (kind != "notebook" or needs_rebuild(path))


def submitted_path(directory: Path, stored_name: str) -> Path:
    """Where the submitted bytes of a rebuilt staged file are kept."""
    return directory / SUBMITTED / stored_name


def _partial(directory: Path, sf: StagedFile) -> Path:
    return directory / f".rebuilt-{sf.stored_name}"


def _replace_with_rebuilt(directory: Path, sf: StagedFile) -> StagedFile:
    """Put the rebuilt copy (at :func:`_partial`) in place of the staged file, which moves to
    ``submitted/``."""
    staged, partial = directory / sf.stored_name, _partial(directory, sf)
    kept = submitted_path(directory, sf.stored_name)
    fsync_path(partial)
    os.chmod(partial, 0o444)
    kept.parent.mkdir(exist_ok=True)
    if kept.exists():
        partial.unlink()
        raise InvalidInput(f"{sf.stored_name} was rebuilt before: staged bytes are never replaced")
    os.rename(staged, kept)
    os.rename(partial, staged)
    fsync_path(directory)
    return replace(sf, sha256=sha256_file(staged), size=staged.stat().st_size)


def release_copies(directory: Path, staged: list[StagedFile],
                   sandbox: RebuildSandbox | RebuildJob | None = None, holder: str = "") -> list[StagedFile]:
    """Replace each staged Parquet file, workbook, image, PDF and notebook with figures by its rebuilt copy (the submitted bytes
    move to ``submitted/``); the staged files with their new SHA-256 and size. Raises
    :class:`RefusedFiles` naming every file that cannot be rebuilt (the caller discards the round:
    :func:`.submission.discard` removes both copies)."""
    todo = [sf for sf in staged if to_rebuild(directory / sf.stored_name, sf.name)]
    for sf in todo:
        _partial(directory, sf).unlink(missing_ok=True)
    reasons = rebuild_all([(directory / sf.stored_name, _partial(directory, sf), sf.name) for sf in todo],
                          sandbox=sandbox, holder=holder)
    if any(reasons.values()):
        for sf in todo:
            _partial(directory, sf).unlink(missing_ok=True)
        raise RefusedFiles({name: why for name, why in reasons.items() if why})
    try:
        done = {sf.index: _replace_with_rebuilt(directory, sf) for sf in todo}
    finally:
        for sf in todo:
            _partial(directory, sf).unlink(missing_ok=True)
    return [done.get(sf.index, sf) for sf in staged]


def rebuild_all(items: list[tuple[Path, Path, str]], memory_bytes: int = MEMORY_BYTES,
                cpu_seconds: int = CPU_SECONDS, wall_seconds: float = WALL_SECONDS,
                sandbox: RebuildSandbox | RebuildJob | None = None, holder: str = "") -> dict[str, str | None]:
    """Rebuild each (source, target, name) in one child process bounded in memory, CPU and wall
    time, confined in ``sandbox`` when given (:mod:`.rebuild_sandbox`, or a Job of the project:
    :mod:`.rebuild_job`): ``{name: None, or why it cannot be rebuilt}``. A child that runs out of
    any, or dies, refuses every file of the batch with the reason; the gate itself never holds what
    a crafted file unpacks. ``holder`` (the submitter) has at most one rebuild running or waiting
    at a time."""
    if not items:
        return {}
    names = {n for _, _, n in items}
    deadline = time.monotonic() + wall_seconds
    if not _take_turn(holder, wall_seconds):
        log.warning("rebuild of %s: %s has another rebuild running", sorted(names), holder)
        return {n: f"the gate is still rebuilding the files of {holder}'s previous submission: submit "
                   "again when it is done" for n in names}
    try:
        if not _SLOTS.acquire(timeout=max(deadline - time.monotonic(), 0)):
            log.warning("rebuild of %s: no free slot in %g s", sorted(names), wall_seconds)
            return {n: f"the gate is rebuilding {MAX_CONCURRENT} other submissions' files and none finished "
                       f"within {wall_seconds:g} s: submit again in a few minutes" for n in names}
        try:
            done = _rebuild_in_child(items, sandbox, memory_bytes, cpu_seconds, wall_seconds)
        except OverBound as exc:
            log.warning("rebuild of %s: %s", sorted(names), exc)
            return {n: f"the gate cannot rebuild it: {exc}; save it again smaller, or export the table as CSV"
                    for n in names}
        except (OSError, PdsError) as exc:  # no bubblewrap, no sandbox account, no API server...
            log.warning("rebuild of %s could not start: %s", sorted(names), exc)
            return {n: f"the gate cannot start the rebuild of this file ({type(exc).__name__}); an administrator "
                       "sees why in its log (airlock.rebuild_runner)" for n in names}
        finally:
            _SLOTS.release()
    finally:
        _end_turn(holder)
    if done is not None and done.returncode == 0:
        results, why = _results(done.stdout, items)
        if results is not None:
            return results
    else:
        why = (f"the rebuild took longer than {wall_seconds:g} s" if done is None else
               f"the rebuild stopped ({_ending(done)})")
    log.warning("rebuild of %s: %s", sorted(names), why)
    return {n: f"the gate cannot rebuild it from its cells or pixels: {why}, within {memory_bytes >> 20} MiB "
               f"of memory and {cpu_seconds} s of CPU; save it again smaller, or export the table as CSV"
            for n in names}


def _take_turn(holder: str, timeout: float) -> bool:
    """Wait at most ``timeout`` s until ``holder`` has no other rebuild running or waiting, then
    take the turn (an anonymous caller, ``pds airlock check`` in a workspace, always may)."""
    if not holder:
        return True
    with _TURNS:
        if not _TURNS.wait_for(lambda: holder not in _HOLDERS, timeout):
            return False
        _HOLDERS.add(holder)
        return True


def _end_turn(holder: str) -> None:
    if holder:
        with _TURNS:
            _HOLDERS.discard(holder)
            _TURNS.notify_all()


def _results(stdout: bytes, items: list[tuple[Path, Path, str]]) -> tuple[dict | None, str]:
    """The child's results when they answer for exactly its files, each with a reason or a copy
    written (a regular file, not a link): else None and what was wrong. The child is not trusted
    beyond its exit code: a flaw of a parser it runs can make it write anything."""
    try:
        results = json.loads(stdout)
    except ValueError:
        return None, "the rebuild gave no results"
    if not isinstance(results, dict) or set(results) != {n for _, _, n in items}:
        return None, "the rebuild's results do not name its files"
    for _, target, name in items:
        why = results[name]
        if why is None:
            try:
                written = os.lstat(target)
            except OSError:
                return None, "the rebuild wrote no copy"
            if not stat.S_ISREG(written.st_mode) or written.st_size == 0:
                return None, "the rebuild wrote no copy"
        elif not isinstance(why, str) or not why.strip():
            return None, "the rebuild's results do not name its files"
    # a reason is the child's text (a parser it runs may be taken over): audited and logged, so bounded
    return {name: why if why is None else brief(why, MAX_REASON_CHARS) for name, why in results.items()}, ""


def _rebuild_in_child(items: list[tuple[Path, Path, str]], sandbox: RebuildSandbox | RebuildJob | None,
                      memory_bytes: int, cpu_seconds: int, wall_seconds: float) -> subprocess.CompletedProcess | None:
    """Run the child over ``items``, in ``sandbox``, as a Job or as a plain process; its copies end
    at the items' targets."""
    if isinstance(sandbox, RebuildJob):
        # the Job's pod bounds its memory (its limit) and its time (its deadline, one CPU: less
        # CPU time than cpu_seconds)
        prepared_job = sandbox.prepare(items, memory_bytes, wall_seconds)
        try:
            return sandbox.run(prepared_job, items)
        finally:
            sandbox.finish(prepared_job)
    if sandbox is None:
        payload = json.dumps([[str(s), str(t), n] for s, t, n in items]).encode()
        # the gate's environment stays behind (its secrets, and settings such as an allocator's or
        # a thread count that other code of the process set, which changed what the child could do)
        return _run_child(CHILD, {"PATH": os.environ.get("PATH", os.defpath)}, payload,
                          (memory_bytes, cpu_seconds), wall_seconds)
    prepared = sandbox.prepare(items, memory_bytes, CHILD[1:])
    try:
        payload = json.dumps([[str(s), str(t), n] for s, t, n in prepared.inside]).encode()
        # the sandbox bounds its own memory (a control group, or its address-space limit)
        done = _run_child(prepared.argv, prepared.env, payload, None, wall_seconds)
        sandbox.check_bound(prepared)
        if done is not None and done.returncode == 0:
            try:
                sandbox.collect(prepared, items, json.loads(done.stdout))
            except ValueError:
                pass  # no results: _results says so
        return done
    finally:
        sandbox.finish(prepared)


def _run_child(command: list[str], env: dict[str, str] | None, payload: bytes, limits: tuple[int, int] | None,
               wall_seconds: float) -> subprocess.CompletedProcess | None:
    """Run ``command`` on ``payload`` within ``limits`` (address space, CPU seconds) and the wall
    time: how it ended, with at most :data:`MAX_RESULTS_BYTES` of its output (more: none) and the
    last :data:`MAX_ERRORS_BYTES` of its errors; None when it ran out of wall time (it is killed)."""
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, cwd=os.path.sep if env is not None else None) as child:
        try:
            # The limits are set on the child once it runs, not in a preexec_fn (unsafe in a
            # process with threads, as the gate's service is): the child reads its files' names
            # from its input, so it touches no file before the limits hold.
            if limits is not None:
                resource.prlimit(child.pid, resource.RLIMIT_AS, _within(resource.RLIMIT_AS, limits[0]))
                resource.prlimit(child.pid, resource.RLIMIT_CPU, _within(resource.RLIMIT_CPU, limits[1]))
                resource.prlimit(child.pid, resource.RLIMIT_CORE, (0, 0))  # a crash dumps nothing it read
                # no file it writes larger than a copy the gate takes back
                resource.prlimit(child.pid, resource.RLIMIT_FSIZE, _within(resource.RLIMIT_FSIZE, MAX_COPY_BYTES))
            out = Drain(child.stdout, MAX_RESULTS_BYTES, tail=False)
            err = Drain(child.stderr, MAX_ERRORS_BYTES, tail=True)
            try:
                child.stdin.write(payload)
                child.stdin.close()
            except BrokenPipeError:
                pass
            try:
                child.wait(timeout=wall_seconds)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                return None
            finally:
                results, errors = out.result(), err.result()
        except BaseException:
            child.kill()
            raise
    return subprocess.CompletedProcess(command, child.returncode, results, errors.decode("utf-8", "replace"))


def _within(kind: int, wanted: int) -> tuple[int, int]:
    """``wanted`` as soft and hard limit, or this process's hard limit when lower (a workspace
    sandbox without control groups runs under its own address-space limit: ``pds airlock check``
    there must lower its child's limits, never try to raise them)."""
    hard = resource.getrlimit(kind)[1]
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return limit, limit


_SIGNALS = {signal.SIGXCPU: "out of CPU time", signal.SIGKILL: "killed, short of memory or stopped",
            signal.SIGSEGV: "a parser crashed", signal.SIGABRT: "a parser gave up",
            signal.SIGXFSZ: "a file it wrote grew past the size a rebuild may write"}


def _ending(done: subprocess.CompletedProcess) -> str:
    """How the child ended: its signal, or its exit code and the kind of its last error (never the
    error's text, which a library may have filled with the file's bytes)."""
    if done.returncode < 0:
        try:
            return f"{signal.Signals(-done.returncode).name}: {_SIGNALS.get(-done.returncode, 'killed')}"
        except ValueError:
            return f"signal {-done.returncode}"
    last = (done.stderr or "").strip().splitlines()[-1:] or [""]
    kind = last[0].split(":", 1)[0].strip()
    return f"exit {done.returncode}" + (f", {kind[:60]}" if kind.isidentifier() else "")
