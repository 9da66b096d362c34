"""Run one command in the sandbox a (user, project) workspace gets: ``pds sandbox exec``.

The access check is the same as for a workspace start (registry, audited, refused before anything
is started), the spec is the same, and the command line is built by the same
:func:`~.bwrap.sandbox_command`; only the command differs. Admins use it to debug a workspace,
tests use it to probe the isolation.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..audit import AuditEvent, Outcome
from ..errors import NotFound
from ..extract.mount_check import ExtractRefused, check_for_workspace
from ..registry import Registry, Role
from ..registry.names import check_project_id, check_user_name
from ..settings import Settings
from .bwrap import launch_env, prepare_runtime_dir, sandbox_command
from .cgroup import group_name, release
from .identity import SandboxAccount, ensure_sandbox_account, hand_over
from .scratch import bound_runtime_dir, unmount_scratch
from .spec import IMPORTS_MOUNT, Mount, WorkspaceSpec, build_workspace_spec

log = logging.getLogger(__name__)


def workspace_runtime_dir(settings: Settings, user: str, project: str) -> Path:
    """The host directory mounted at ``/run/pds`` for this (user, project): one per workspace."""
    return settings.paths.state / "run" / check_project_id(project) / check_user_name(user)


def prepare_imports_mount(mount: Mount) -> None:
    """Create the project's imports folder (0755, owned by the platform) if no import was released
    yet: it is mounted read-only, and releases add folders to it while workspaces run."""
    mount.host_path.mkdir(parents=True, exist_ok=True)
    os.chmod(mount.host_path, 0o755)


def check_mount_sources(spec: WorkspaceSpec, account: SandboxAccount | None = None) -> None:
    """Refuse to start without the extract (bwrap would fail obscurely); create the home (0700),
    owned by the sandbox account when sandboxes run as one (see :mod:`.identity`), and the imports
    folder (:func:`prepare_imports_mount`)."""
    for mount in spec.mounts:
        if mount.target == IMPORTS_MOUNT:
            prepare_imports_mount(mount)
        elif mount.read_only:
            if not mount.host_path.is_dir():
                raise NotFound(f"project {spec.project} has no extract at {mount.host_path}: "
                               "build it first (pds extract build)")
        else:
            mount.host_path.mkdir(parents=True, exist_ok=True, mode=0o700)
            hand_over(mount.host_path, account)


@dataclass(frozen=True)
class PreparedSandbox:
    spec: WorkspaceSpec
    argv: list[str]
    env: dict[str, str]
    runtime_dir: Path
    #: whether :func:`prepare_sandbox` mounted the runtime folder's bounded file system
    bounded_here: bool = False


def prepare_sandbox(runtime, user: str, project: str, argv: list[str], *, actor: str,
                    action: str = "sandbox.exec", env: dict[str, str] | None = None,
                    sockets: dict[str, Path] | None = None) -> PreparedSandbox:
    """Check access (audited; raises PermissionDenied) and the extract (:mod:`pds_kernel.extract.mount_check`;
    a refusal is audited and raises ExtractRefused), then build the command. Starts nothing."""
    registry = Registry.from_runtime(runtime)
    info = registry.check_access(user, project, Role.RESEARCHER, action=action, actor=actor)
    spec = build_workspace_spec(runtime.settings, info, user)
    try:
        extract = check_for_workspace(runtime.settings, runtime.audit, spec.project)
    except ExtractRefused as exc:
        runtime.audit.record(AuditEvent(actor=actor, action=action, target=f"user:{user}", project=project,
                                        outcome=Outcome.DENIED, details={"reason": str(exc), "stage": "extract"}))
        raise
    account = ensure_sandbox_account()
    check_mount_sources(spec, account)
    runtime_dir = prepare_runtime_dir(workspace_runtime_dir(runtime.settings, user, project))
    # a running workspace of the pair has it bounded already (and keeps it so)
    bounded_here = not os.path.ismount(runtime_dir) and bound_runtime_dir(runtime_dir, account)
    hand_over(runtime_dir, account)
    for path in (sockets or {}).values():
        hand_over(Path(path), account)
    env = dict(env or {})
    command = sandbox_command(spec, list(argv), env=env, sockets=dict(sockets or {}),
                              runtime_dir=runtime_dir, extract=extract)
    return PreparedSandbox(spec, command, launch_env(env), runtime_dir, bounded_here)


def finish_sandbox(prepared: PreparedSandbox) -> None:
    """After the sandbox ended: release its control group, unmount the runtime folder's bounded
    file system when :func:`prepare_sandbox` mounted it."""
    release(group_name(prepared.spec.project, prepared.spec.user))
    if prepared.bounded_here:
        unmount_scratch(prepared.runtime_dir)


def run_in_sandbox(runtime, user: str, project: str, argv: list[str], *, actor: str,
                   env: dict[str, str] | None = None, sockets: dict[str, Path] | None = None,
                   timeout: float | None = None) -> int:
    """Run ``argv`` in the workspace sandbox of ``user`` in ``project``; return its exit code.

    Standard input, output and error are the caller's. The start (the access decision) and the
    exit code are both in the audit trail.
    """
    prepared = prepare_sandbox(runtime, user, project, argv, actor=actor, env=env, sockets=sockets)
    event = AuditEvent(actor=actor, action="sandbox.exit", target=f"user:{user}", project=project,
                       details={"command": list(argv)[:1]})
    log.info("sandbox %s/%s: %s", project, user, " ".join(prepared.argv))
    try:
        completed = subprocess.run(prepared.argv, env=prepared.env, timeout=timeout, check=False,
                                   cwd=os.path.sep)
    except subprocess.TimeoutExpired:
        runtime.audit.record(event.with_outcome(Outcome.FAILED, reason="timeout", timeout=timeout))
        raise
    finally:
        finish_sandbox(prepared)
    code = completed.returncode
    runtime.audit.record(event.with_outcome(Outcome.OK if code == 0 else Outcome.FAILED, exit_code=code))
    return code


def describe_sandbox(runtime, user: str, project: str, argv: list[str]) -> tuple[WorkspaceSpec, list[str], bool]:
    """What ``user``'s workspace in ``project`` would run, without checking access or starting
    anything (for ``pds sandbox show``); the flag says whether access would be granted now."""
    registry = Registry.from_runtime(runtime)
    info = registry.get_project(project)
    spec = build_workspace_spec(runtime.settings, info, check_user_name(user))
    command = sandbox_command(spec, list(argv), env={}, runtime_dir=workspace_runtime_dir(
        runtime.settings, user, project))
    return spec, command, registry.can_access(user, project, Role.RESEARCHER)
