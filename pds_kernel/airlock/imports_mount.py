"""Where approved imports live on the platform, and their manifest.

    imports/<project>/                  mounted read-only at /imports in every workspace of the project
    imports/<project>/<request>/<name>  the reviewed bytes of one released import (0444, folder 0555)
    imports/<project>/MANIFEST.json     what is there: one entry per released import (0444)

The folder of a project is created before a workspace starts (:func:`ensure_project_dir`) and
mounted as a whole, so an import released while a workspace runs appears in it at once (the
release renames a complete folder into place: :func:`.release.copy_release`). A revoked import is
moved aside (``.revoked-<request>``), deleted, and leaves the manifest: a folder of mode 0700 was
kept there before, which a workspace running as the gate's own uid read (on Kubernetes the gate and
the notebooks both run as ``workspace.uid``; red team 13). Its reviewed bytes stay in staging. Everything here is world-readable on purpose: workspaces run as an unprivileged sandbox
account, and only the project's own folder is mounted.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..registry.names import check_project_id

IMPORTS_MOUNT = "/imports"
MANIFEST = "MANIFEST.json"


def project_imports_dir(root: Path, project: str) -> Path:
    return Path(root) / check_project_id(project)


def ensure_project_dir(root: Path, project: str) -> Path:
    """The project's imports folder (0755), created if missing: a workspace mounts it at start."""
    path = project_imports_dir(root, project)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def open_release_folder(folder: Path) -> None:
    """Make a released import readable by the sandbox account: folders 0555, files 0444."""
    for entry in folder.iterdir():
        os.chmod(entry, 0o444)
    os.chmod(folder, 0o555)


def hide_revoked(root: Path, project: str, request_id: str) -> None:
    """After :func:`.release.withdraw_release`: the set-aside folder is deleted (it is inside the
    folder workspaces mount, and a mode is no barrier to a workspace with the gate's uid)."""
    aside = project_imports_dir(root, project) / f".revoked-{request_id}"
    if aside.is_dir() and not aside.is_symlink():
        os.chmod(aside, 0o700)  # released folders are 0555: their files cannot be unlinked before
        shutil.rmtree(aside)


def write_manifest(root: Path, project: str, entries: list[dict[str, Any]]) -> Path:
    """Replace ``MANIFEST.json`` atomically (write aside, then rename)."""
    folder = ensure_project_dir(root, project)
    target = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.{os.getpid()}.part"
    document = {"project": project, "updated_at": datetime.now(UTC).isoformat(),
                "mount": IMPORTS_MOUNT, "imports": entries}
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o444)
    os.replace(tmp, target)
    return target


def manifest_entry(req) -> dict[str, Any]:
    """Pure: what the manifest says of one released import request (an :class:`.models.ExportRequest`)."""
    context = json.loads(req.context or "{}")
    info = context.get("import") if isinstance(context.get("import"), dict) else {}
    approvers = sorted({r.reviewer for r in req.reviews if r.round == req.round and r.decision == "approve"})
    entry = {"id": req.id, "author": req.author, "kind": info.get("kind", "files"),
             "path": f"{IMPORTS_MOUNT}/{req.id}", "approved_by": approvers,
             "released_at": req.released_at.isoformat() if req.released_at else None,
             "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in req.files]}
    if isinstance(info.get("report"), dict):
        entry["match_report"] = info["report"]
    return entry


def refresh_manifest(root: Path, sessions, project: str) -> Path:
    """Rewrite the project's manifest from the database: every import released and not revoked."""
    from sqlalchemy import select

    from ..db import transaction
    from .models import ExportRequest

    with transaction(sessions) as s:
        rows = s.scalars(select(ExportRequest).where(
            ExportRequest.project_id == check_project_id(project), ExportRequest.direction == "import",
            ExportRequest.state == "released").order_by(ExportRequest.released_at))
        entries = [manifest_entry(r) for r in rows]
    return write_manifest(root, project, entries)
