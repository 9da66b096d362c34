"""``WorkspaceSpec``: what one (user, project) workspace is allowed, built once.

The local sandbox spawner (bubblewrap) and the Kubernetes path (KubeSpawner pod and dask-gateway
cluster options) only *translate* this object; neither decides anything on its own. It is built
from the registry after the access check, so an expired membership or a closed project never gets
as far as a spec.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ..registry import Registry
from ..registry.names import check_project_id, check_user_name
from ..settings import Settings

#: Where the project's extract appears inside every workspace (read-only).
DATA_MOUNT = "/data"
#: Where the private home appears inside every workspace (read-write).
HOME_MOUNT = "/home/jovyan"
#: Where the project's approved imports appear inside every workspace (read-only): one folder per
#: released import request and ``MANIFEST.json`` (see pds_kernel/airlock/imports_mount.py).
IMPORTS_MOUNT = "/imports"


@dataclass(frozen=True)
class Mount:
    """One volume of a workspace. ``name`` is the logical volume (a PVC name on Kubernetes);
    ``host_path`` is where it lives on a single machine."""

    name: str
    target: str
    read_only: bool
    host_path: Path


@dataclass(frozen=True)
class WorkspaceSpec:
    user: str
    project: str
    mounts: tuple[Mount, ...]
    cpu_limit: float
    mem_limit_mb: int
    dask_workers: int
    gpu: bool
    #: the only egress allowed: none. Traffic leaves only through the bridged hub / gate sockets.
    egress: str = "none"
    labels: dict[str, str] = field(default_factory=dict)
    #: size (MiB) of each memory file system the sandbox may write besides its mounts: ``/tmp`` and
    #: ``/dev/shm`` (``/dev`` itself is read-only)
    tmp_mb: int = 1024
    #: the largest file any process of the sandbox may write, anywhere (MiB, ``RLIMIT_FSIZE``;
    #: 0: no limit of its own): a write past it fails with ``EFBIG``
    max_file_mb: int = 0

    @property
    def server_name(self) -> str:
        """JupyterHub named server = project id."""
        return self.project

    def mount(self, name: str) -> Mount:
        for m in self.mounts:
            if m.name == name:
                return m
        raise KeyError(name)


def extract_volume_name(project: str) -> str:
    return f"extract-{check_project_id(project)}"


def imports_volume_name(project: str) -> str:
    return f"imports-{check_project_id(project)}"


def home_volume_name(project: str, user: str) -> str:
    """The claim (volume) name of ``user``'s home in ``project``: a readable prefix and a hash of
    the exact pair.

    The prefix alone is ambiguous: ``.`` and ``_`` become ``-`` (``jean.dupont``, ``jean_dupont``
    and ``jean-dupont`` would share a claim) and ``-`` may be in both ids (project ``abc`` with user
    ``def-x`` and project ``abc-def`` with user ``x``). The 12 hex digits of SHA-256 over
    ``project/user`` (``/`` is in neither id) tell them apart. The chart's ``pds.homeClaim`` helper
    computes the same name; tests/k8s checks that both agree.
    """
    check_project_id(project)
    check_user_name(user)
    digest = hashlib.sha256(f"{project}/{user}".encode()).hexdigest()[:12]
    return f"home-{project}-{user.replace('.', '-').replace('_', '-')}-{digest}"


def build_workspace_spec(settings: Settings, project_info, user: str) -> WorkspaceSpec:
    """Pure: the spec for ``user`` in the (already authorised) project ``project_info``."""
    project = check_project_id(project_info.id)
    check_user_name(user)
    extract = settings.paths.projects / project / "extract"
    home = settings.paths.homes / project / user
    imports = settings.paths.imports / project
    return WorkspaceSpec(
        user=user,
        project=project,
        mounts=(
            Mount(extract_volume_name(project), DATA_MOUNT, True, extract),
            Mount(home_volume_name(project, user), HOME_MOUNT, False, home),
            # the whole project folder, so that an import released while the workspace runs appears
            Mount(imports_volume_name(project), IMPORTS_MOUNT, True, imports),
        ),
        cpu_limit=project_info.cpu_limit,
        mem_limit_mb=project_info.mem_limit_mb,
        dask_workers=project_info.dask_workers,
        gpu=project_info.gpu,
        # the user name itself (a valid label value): "a_b" made "a-b" was another user's label
        labels={"pds.project": project, "pds.user": user, "pds.component": "workspace"},
        tmp_mb=settings.project_end.tmp_quota_mb,
        # one file larger than the home's quota is over it: bounded at once, not at the next watch
        max_file_mb=settings.project_end.home_quota_mb,
    )


def authorised_workspace_spec(settings: Settings, registry: Registry, user: str, project: str,
                              *, action: str = "workspace.start", today: date | None = None,
                              groups: set[str] | None = None) -> WorkspaceSpec:
    """Check admission (:func:`pds_kernel.permissions.check_admit_workspace`: recorded in the audit
    trail, raises PermissionDenied) and build the spec. The local spawner, KubeSpawner's hook and
    the dask-gateway hook all come here."""
    from ..permissions import check_admit_workspace

    info = check_admit_workspace(registry, user, project, action=action, groups=groups, today=today)
    return build_workspace_spec(settings, info, user)
