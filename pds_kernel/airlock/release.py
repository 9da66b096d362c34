"""Copying exactly the reviewed bytes to the outbox, all or nothing.

    outbox/<project>/<request>/<name>            released files (only after a complete copy)
    outbox/<project>/.tmp-<request>-<claim>/     a release in progress (never read by anyone)

:func:`copy_release` re-hashes every staged file while copying it, checks the copy against the
SHA-256 recorded at review, fsyncs, and only then renames the temporary folder to its final name
(one atomic ``rename``). Any mismatch or crash leaves no ``<request>`` folder: at worst a
``.tmp-`` folder that the next attempt removes. Who may release, and the guard against two
releases at once (a conditional UPDATE on the request row), live in :mod:`.service`;
:func:`type_refusal` is the check of each file's type made again just before a release.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import IntegrityError, InvalidTransition
from ..hashing import sha256_file
from ..registry.names import check_project_id
from .checks import Status, filetypes
from .imports_mount import open_release_folder
from .imports_scan import import_refusal
from .models import ExportRequest, RequestFile
from .staging import check_file_name, check_request_id, fsync_path
from .states import State
from .views import stored_check

log = logging.getLogger(__name__)
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ReleaseItem:
    source: Path  #: the staged copy
    name: str  #: the name in the outbox
    sha256: str  #: what the reviewers approved


def outbox_dir(outbox: Path, project: str, request_id: str) -> Path:
    return outbox / check_project_id(project) / check_request_id(request_id)


def remove_stale(outbox: Path, project: str, request_id: str) -> None:
    """Remove leftovers of interrupted releases of this request."""
    parent = outbox / check_project_id(project)
    if parent.is_dir():
        for leftover in parent.glob(f".tmp-{check_request_id(request_id)}-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _copy_checked(item: ReleaseItem, target: Path) -> None:
    digest = hashlib.sha256()
    with open(item.source, "rb") as src, open(target, "xb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != item.sha256:
        raise IntegrityError(f"{item.name} changed since it was reviewed (SHA-256 mismatch): nothing was released")
    if sha256_file(target) != item.sha256:
        raise IntegrityError(f"the outbox copy of {item.name} differs from the reviewed bytes: nothing was released")
    os.chmod(target, 0o444)


def copy_release(outbox: Path, project: str, request_id: str, claim: str, items: list[ReleaseItem], *,
                 open_to_workspaces: bool = False) -> Path:
    """Copy ``items`` to ``outbox/<project>/<request>/`` atomically; return the final folder.

    ``open_to_workspaces`` (imports): the folder is made readable by the sandbox account *before* it
    is renamed into place, so a running workspace never sees it half-open (a workspace that watched
    ``/imports`` met a folder of mode 0750 between the rename and a later chmod: EACCES)."""
    final = outbox_dir(outbox, project, request_id)
    if final.exists():
        raise IntegrityError(f"request {request_id} already has an outbox folder: it was released before")
    if not claim.isalnum():
        raise IntegrityError("bad release claim")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(outbox, project, request_id)
    tmp = final.parent / f".tmp-{request_id}-{claim}"
    tmp.mkdir(mode=0o750)
    try:
        for item in items:
            check_file_name(item.name)
            _copy_checked(item, tmp / item.name)
        if open_to_workspaces:
            open_release_folder(tmp)
        fsync_path(tmp)
        os.rename(tmp, final)
        fsync_path(final.parent)
    except BaseException:
        if tmp.is_dir():
            os.chmod(tmp, 0o700)  # opened (0555) folders cannot be emptied by a gate that is not root
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("released request %s of %s (%d files)", request_id, project, len(items))
    return final


def check_not_releasing(req: ExportRequest, stale_seconds: int) -> None:
    """An approval is not revoked while its release copies: the copy would land after the revocation
    (an import in every workspace of the project), which got through before
    (tests/security/test_redteam8_gate.py). A claim older than ``stale_seconds`` is a crashed release."""
    claimed = req.release_claimed_at
    if req.state != State.APPROVED.value or req.release_claim is None or claimed is None:
        return  # released: the claim stays as history, and the admin's revocation withdraws the copy
    claimed = claimed if claimed.tzinfo is not None else claimed.replace(tzinfo=UTC)
    if datetime.now(UTC) - claimed < timedelta(seconds=stale_seconds):
        raise InvalidTransition(f"request {req.id} is being released right now: once it is released, an admin "
                                "revokes the release (pds airlock revoke) to take its files back")


def withdraw_release(outbox: Path, project: str, request_id: str) -> None:
    """Take a released folder out of the outbox (revocation); kept aside, never served again."""
    final = outbox_dir(outbox, project, request_id)
    if final.exists():
        os.rename(final, final.parent / f".revoked-{request_id}")


def type_refusal(directory: Path, f: RequestFile, allowed: frozenset[str], direction: str = "export") -> str | None:
    """Why file ``f`` must not be released because of its type, else None (checked again at release:
    the stored check result, the name, and the first bytes of the staged copy). An import is judged
    by its scan (:mod:`.imports_scan`): a stored failure or a name that may not come in."""
    result = stored_check(f)
    if direction == "import":
        if not isinstance(result.get("rules"), dict) or result.get("status") not in {"pass", "review"} \
                or (result.get("clamav") or {}).get("verdict") != "clean":
            return "its scan did not pass"
        return import_refusal(f.name)
    rules, findings = result.get("rules"), result.get("findings", [])
    if not isinstance(rules, dict) or not isinstance(findings, list) or "record" in rules:
        return "its stored check result is unreadable"
    if rules.get("file-type") == Status.FAIL.value or any(
            isinstance(x, dict) and x.get("rule") == "file-type" and x.get("status") == Status.FAIL.value
            for x in findings):
        return "its type failed the automatic checks"
    try:
        return filetypes.staged_refusal(directory / f.stored_name, f.name, allowed)
    except OSError:
        return "its staged copy cannot be read"
