"""``pds sandbox probe``: run the escape probes in exactly the sandbox a workspace gets.

The access check, the spec and the command line are those of :func:`~.exec.prepare_sandbox`
(the builder the spawner uses); only the command differs: the sandbox's Python runs the source
of :mod:`.probes`. The host adds the checks only it can make:

* while the probes wait, every process of the sandbox is inspected from outside: its host uids
  (real, effective, saved) and the host uid its user namespace maps to must not be 0;
* after the run: no file of the home is setuid and owned by host root, and the host's
  ``core_pattern`` is unchanged.

The probes' files left in the home are removed afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..audit import AuditEvent, Outcome
from ..registry import Registry
from . import probes
from .exec import finish_sandbox, prepare_sandbox
from .spec import HOME_MOUNT

log = logging.getLogger(__name__)

#: Seconds the whole probe run may take (the fork probe needs a few).
PROBE_TIMEOUT = 120
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
#: Files the probes leave in the home (removed after the run).
PROBE_FILES = (".pds-probe-setuid", ".pds-probe-chown")


@dataclass(frozen=True)
class ProbeResult:
    name: str
    succeeded: bool
    detail: str


def forbidden_paths(runtime, user: str, project: str) -> dict[str, str]:
    """Host paths the sandbox of (user, project) must never reach: label -> path."""
    paths = runtime.settings.paths
    found: dict[str, str] = {
        "the key store": str(paths.keys), "the lake": str(paths.lake), "raw deliveries": str(paths.raw),
        "the airlock staging": str(paths.staging), "the outbox": str(paths.outbox),
        "the hub state": str(paths.state / "hub"), "the homes": str(paths.homes),
        "the projects": str(paths.projects),
    }
    for key in sorted(paths.keys.glob("*"))[:20] if paths.keys.is_dir() else []:
        found[f"key file {key.name}"] = str(key)
    hub = paths.state / "hub"
    for secret in sorted(hub.glob("*"))[:20] if hub.is_dir() else []:
        found[f"hub file {secret.name}"] = str(secret)
    for other in Registry.from_runtime(runtime).projects():
        if other.id != project:
            found[f"project {other.id}'s extract"] = str(paths.projects / other.id / "extract")
            found[f"project {other.id}'s homes"] = str(paths.homes / other.id)
    for home in sorted((paths.homes / project).glob("*"))[:50] if (paths.homes / project).is_dir() else []:
        if home.name != user:
            found[f"{home.name}'s home in {project}"] = str(home)
    database = runtime.settings.database_url
    if database.startswith("sqlite:///"):
        found["the database"] = database.removeprefix("sqlite:///")
    return found


def probe_config(runtime, user: str, project: str, max_processes: int, own: list[Path]) -> dict:
    """The probes' config. ``own``: the host paths mounted into this sandbox (its extract, home and
    runtime directory), which the sandbox's mount table names; their parents are not leaks."""
    forbidden = forbidden_paths(runtime, user, project)
    strings = sorted({p for p in forbidden.values()
                      if not any(str(mine) == p or str(mine).startswith(p.rstrip("/") + "/") for mine in own)})
    return {"forbidden_paths": forbidden, "forbidden_strings": strings, "max_processes": max_processes}


def _host_uid_checks(launcher_pid: int) -> list[ProbeResult]:
    """From outside: the sandbox's processes and the host uid their namespace maps to."""
    try:
        tree = [psutil.Process(launcher_pid), *psutil.Process(launcher_pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return [ProbeResult("sandbox runs as an unprivileged host uid", True, "the sandbox is gone")]
    uids, maps = set(), set()
    host_userns = os.stat("/proc/self/ns/user").st_ino
    for proc in tree:
        try:
            if os.stat(f"/proc/{proc.pid}/ns/user").st_ino == host_userns:
                continue  # bubblewrap's monitor on the host side, not in the sandbox
            uids.update(proc.uids())
            for line in Path(f"/proc/{proc.pid}/uid_map").read_text().splitlines():
                inside, outside, count = (int(x) for x in line.split())
                maps.update(range(outside, outside + min(count, 4)))
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            continue
    return [
        ProbeResult("sandbox processes run as host root", 0 in uids, f"host uids {sorted(uids)}"),
        ProbeResult("sandbox uid maps to host root (uid_map seen from the host)", 0 in maps,
                    f"host uids mapped {sorted(maps)[:8]}"),
    ]


def _home_checks(home: Path) -> list[ProbeResult]:
    planted = []
    for name in PROBE_FILES:
        path = home / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if info.st_uid == 0 and info.st_mode & 0o6000:
            planted.append(name)
        path.unlink()
    return [ProbeResult("setuid-root file planted in the home (seen from the host)", bool(planted),
                        f"setuid root files: {planted}")]


def parse_output(stdout: str) -> list[ProbeResult]:
    results = []
    for line in stdout.splitlines():
        if line.startswith(probes.RESULT):
            item = json.loads(line[len(probes.RESULT):])
            results.append(ProbeResult(item["name"], bool(item["succeeded"]), item["detail"]))
    return results


def run_probes(runtime, user: str, project: str, *, actor: str, only: list[str] | None = None) -> list[ProbeResult]:
    """Run every probe (or those named in ``only``, see :func:`.probes.probes_for`) in ``user``'s
    workspace sandbox of ``project``; one result per attempt, the host's checks included."""
    from .bwrap import MAX_PROCESSES

    source = Path(probes.__file__).read_text()
    prepared = prepare_sandbox(runtime, user, project, ["python", "-I", "-c", source],
                               actor=actor, action="sandbox.probe")
    config = probe_config(runtime, user, project, MAX_PROCESSES,
                          [m.host_path for m in prepared.spec.mounts] + [prepared.runtime_dir])
    if only is not None:
        config["only"] = list(only)
    core_before = CORE_PATTERN.read_text() if CORE_PATTERN.exists() else ""
    results: list[ProbeResult] = []
    proc = subprocess.Popen(prepared.argv, env=prepared.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=os.path.sep)
    deadline = time.monotonic() + PROBE_TIMEOUT
    try:
        proc.stdin.write(json.dumps(config) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if line.strip() != probes.READY:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"the probe did not start in the sandbox: {(line + err).strip()[-500:]}")
        results += _host_uid_checks(proc.pid)
        stdout, stderr = proc.communicate("go\n", timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        finish_sandbox(prepared)
    results += parse_output(stdout)
    if not any(line.strip() == probes.END for line in stdout.splitlines()):
        results.append(ProbeResult("the probe run completed", True, f"stopped early: {stderr.strip()[-300:]}"))
    results += _home_checks(next(m.host_path for m in prepared.spec.mounts if m.target == HOME_MOUNT))
    core_after = CORE_PATTERN.read_text() if CORE_PATTERN.exists() else ""
    results.append(ProbeResult("host core_pattern changed", core_after != core_before, repr(core_after.strip())))
    succeeded = sum(r.succeeded for r in results)
    runtime.audit.record(AuditEvent(
        actor=actor, action="sandbox.probe", target=f"user:{user}", project=project,
        outcome=Outcome.OK if succeeded == 0 else Outcome.FAILED,
        details={"attempts": len(results), "succeeded": succeeded,
                 "escaped": [r.name for r in results if r.succeeded][:20]}))
    return results
