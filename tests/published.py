"""Publish an extract written by hand in a test, as ``pds extract build`` publishes one.

Workspaces mount only a published extract (pds_kernel/extract/mount_check.py): the files under
``projects/<id>/builds/<build id>/`` reached through the ``extract`` link, a ``manifest.json``
listing each with its size and SHA-256, and an ``extract.build`` audit entry recording the
manifest's SHA-256 and the files' fingerprint. Tests that only need a few Parquet files in a
workspace write them into ``projects/<id>/extract/`` and call :func:`publish_by_hand`.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from pds_kernel.audit import AuditEvent, Outcome
from pds_kernel.extract.build import published_state
from pds_kernel.hashing import sha256_file


def new_build_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _entries(root: Path) -> dict[str, dict]:
    return {path.relative_to(root).as_posix(): {"file": path.relative_to(root).as_posix(),
                                                "size": path.stat().st_size, "sha256": sha256_file(path)}
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != "manifest.json"}


def write_manifest(root: Path, project: str, build_id: str) -> bytes:
    """Write ``root/manifest.json`` listing every file below ``root`` (a manifest the test wrote
    keeps its other keys; its tables get sizes and hashes); returns its bytes."""
    path = root / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    files = _entries(root)
    tables = manifest.get("tables") or {}
    listed = set()
    for entry in tables.values():
        for item in entry.get("files", [entry]):
            item.update({k: v for k, v in files[item["file"]].items() if k != "file"})
            listed.add(item["file"])
    for rel, item in files.items():
        if rel not in listed:
            tables[rel.removesuffix(".parquet").replace("/", "_")] = item
    manifest.update(project=project, build_id=build_id, tables=tables)
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    path.write_bytes(data)
    return data


def publish_by_hand(runtime, project: str, *, actor: str = "admin", build_id: str | None = None) -> Path:
    """Move ``projects/<project>/extract/`` (a directory the test wrote) to a build, link it and
    record its publication in the audit trail. Returns the build's directory."""
    import hashlib

    pdir = runtime.settings.paths.projects / project
    written = pdir / "extract"
    build_id = build_id or new_build_id()
    final = pdir / "builds" / build_id
    final.parent.mkdir(parents=True, exist_ok=True)
    if written.is_symlink():
        raise AssertionError(f"{written} is already published")
    written.mkdir(parents=True, exist_ok=True)
    data = write_manifest(written, project, build_id)
    os.rename(written, final)
    for path in [final, *final.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    os.symlink(f"builds/{build_id}", written)
    state = published_state(final)
    runtime.audit.record(AuditEvent(
        actor=actor, action="extract.build", target=f"project:{project}", project=project, outcome=Outcome.OK,
        details={"build_id": build_id, "manifest_sha256": hashlib.sha256(data).hexdigest(),
                 "files_fingerprint": state.fingerprint, "bytes": state.total_bytes, "by_hand": True}))
    return final


def record_publication(audit, project: str, *, actor: str = "admin", build_id: str | None = None,
                       manifest_sha256: str = "0" * 64, fingerprint: str = "1" * 64, size: int = 1000) -> str:
    """Only the audit entry of a publication (for hub tests that never see the files: on
    Kubernetes the hub reads the record and the pod's init container checks the files)."""
    build_id = build_id or new_build_id()
    audit.record(AuditEvent(
        actor=actor, action="extract.build", target=f"project:{project}", project=project, outcome=Outcome.OK,
        details={"build_id": build_id, "manifest_sha256": manifest_sha256, "files_fingerprint": fingerprint,
                 "bytes": size, "by_hand": True}))
    return build_id
