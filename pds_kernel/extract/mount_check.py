"""Whether a project's extract may be mounted in a workspace, and its full re-verification.

A workspace mounts only the extract the audit trail says was published last, unchanged
(docs/projects-and-extracts.md, "What a workspace mounts"):

* :func:`expected_mount` reads the audit trail: the latest ``extract.build`` that published a build
  (its build id, its manifest's SHA-256, the size and the fingerprint of its files), and the last
  ``extract.verify`` of that build. No publication, or a last verification that failed: refused;
* :func:`check_for_workspace` opens that build through its ``extract`` link without following any
  other link (:func:`.tree.open_published`) and checks it (:func:`.tree.verify`): the manifest is
  the published one; every entry is a regular file of the manifest with its size, nothing missing;
  an extract up to ``hub.extract_hash_max_bytes`` is re-hashed in full, a larger one must be in the
  state (fingerprint) its publication or its last successful ``pds extract verify`` recorded;
* :func:`run_verify` (``pds extract verify``) re-hashes every file of a published extract, whatever
  its size, and records the result with the files' new fingerprint.

Refusals raise :class:`ExtractRefused` (an :class:`~pds_kernel.errors.IntegrityError`) whose
message says what is wrong and who puts it right; the callers audit them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..audit import AuditEvent, Outcome, Selector
from ..errors import IntegrityError, PdsError
from ..registry.names import check_project_id
from .tree import TreeRefused, open_published, verify

#: Who puts a refused extract right, said in every refusal.
WHO_FIXES = ("ask the project's data manager to re-publish it (pds extract build), or to run pds extract "
             "verify if the files were only moved or restored")


class ExtractRefused(IntegrityError):
    """The project's extract may not be mounted; the message says why and who puts it right."""


@dataclass(frozen=True)
class ExpectedMount:
    """What the audit trail says a workspace of ``project`` may mount."""

    project: str
    build_id: str
    manifest_sha256: str
    #: the files' state recorded last (at publication or by the last successful verification)
    fingerprint: str | None
    #: extracts up to this many bytes are re-hashed in full at every mount
    hash_max_bytes: int


@dataclass(frozen=True)
class CheckedMount:
    """An extract checked for mounting: the fingerprint of exactly what was checked (the sandbox
    launcher compares the tree it mounts with it) and whether every file was re-hashed."""

    expected: ExpectedMount
    fingerprint: str
    total_bytes: int
    hashed: bool


def _refuse(project: str, what: str) -> ExtractRefused:
    return ExtractRefused(f"the extract of project {project} cannot be mounted: {what}; {WHO_FIXES}")


def expected_mount(settings, audit, project: str) -> ExpectedMount:
    """What ``project``'s workspaces may mount, from the audit trail; :class:`ExtractRefused` when
    nothing may be (never published, or its last full verification failed)."""
    publication = latest_publication(audit, check_project_id(project))
    build_id = publication.details["build_id"]
    fingerprint = publication.details.get("files_fingerprint")
    passed = _last_passed_verification(audit, project, build_id, publication.seq)
    failed = _failed_verification(audit, project, build_id, passed.seq if passed else publication.seq)
    if failed is not None:
        raise _refuse(project, f"its last full verification ({failed.time[:16]} UTC) failed: "
                               f"{failed.details.get('reason', 'no reason recorded')}")
    if passed is not None:
        fingerprint = passed.details.get("files_fingerprint") or fingerprint
    return ExpectedMount(project, build_id, publication.details["manifest_sha256"], fingerprint,
                         settings.hub.extract_hash_max_bytes)


def latest_publication(audit, project: str):
    """The audit entry of ``project``'s latest publication (``extract.build`` with a build id and
    its manifest's SHA-256), read so that only a real one counts (:meth:`AuditTrail.newest_entry`:
    it authenticates under the audit key, and no entry after it is missing up to the latest
    anchor): a row planted in the database without the key, or a newer publication deleted, refuses
    the mount instead of choosing what is mounted (red team 22). :class:`ExtractRefused` when there
    is none, or when the trail cannot say."""
    entry, problem = audit.newest_entry([Selector(("extract.build",), f"project:{project}")])
    if problem is not None:
        raise _refuse(project, f"the audit trail's record of its latest publication cannot be relied on "
                               f"({problem}); an administrator runs `pds audit verify`")
    if entry is None:
        raise _refuse(project, "it was never published (no build of it in the audit trail)")
    build_id = entry.details.get("build_id")
    if not isinstance(build_id, str) or not build_id:
        raise _refuse(project, "its latest publication in the audit trail names no build; rebuild it")
    if not entry.details.get("manifest_sha256"):
        raise _refuse(project, f"its build {build_id} predates the audit trail's record of "
                               "its manifest, so nothing tells the published files apart; rebuild it")
    return entry


def _last_passed_verification(audit, project: str, build_id: str, after: int):
    """The newest passed ``pds extract verify`` of the published build, read as the publication is
    (authenticated, nothing missing after it): its fingerprint becomes what later mounts of a large
    extract are compared with, so a row planted without the key must not set it (red team 22)."""
    entry, problem = audit.newest_entry([Selector(("extract.verify",), f"project:{project}")])
    if problem is not None:
        raise _refuse(project, f"the audit trail's record of its last verification cannot be relied on "
                               f"({problem}); an administrator runs `pds audit verify`")
    if entry is None or entry.seq <= after or entry.details.get("build_id") != build_id:
        return None
    return entry


def _failed_verification(audit, project: str, build_id: str, after: int):
    """A failed verification of the build after ``after`` (the last passed one, or the publication):
    any one refuses the mount, planted or not (a planted one can only refuse)."""
    runs = [e for e in audit.entries(project=project, action="extract.verify", after=after)
            if e.outcome != Outcome.OK and e.details.get("build_id") == build_id]
    return runs[-1] if runs else None


def open_and_check(settings, expected: ExpectedMount, *, on_total: Callable[[int], None] | None = None,
                   on_bytes: Callable[[int], None] | None = None) -> tuple[int, CheckedMount]:
    """Open the published build (:func:`.tree.open_published`) and check it against ``expected``;
    returns the open descriptor (the caller closes it, or mounts it) and what was found. Raises
    :class:`ExtractRefused`."""
    project = expected.project
    try:
        root = open_published(str(settings.paths.projects / project), expected.build_id)
    except TreeRefused as exc:
        raise _refuse(project, str(exc)) from None
    except OSError as exc:
        raise _refuse(project, f"its directory cannot be read ({exc.strerror})") from None
    try:
        tree, hashed = verify(root, expected.manifest_sha256, hash_max_bytes=expected.hash_max_bytes,
                              expected_fingerprint=expected.fingerprint, on_total=on_total, on_bytes=on_bytes)
    except (TreeRefused, OSError) as exc:
        os.close(root)
        raise _refuse(project, str(exc) if isinstance(exc, TreeRefused) else f"it cannot be read ({exc})") from None
    return root, CheckedMount(expected, tree.fingerprint, tree.total_bytes, hashed)


def check_for_workspace(settings, audit, project: str) -> CheckedMount:
    """Check ``project``'s extract for a workspace (see the module docstring); raises
    :class:`ExtractRefused`."""
    root, checked = open_and_check(settings, expected_mount(settings, audit, project))
    os.close(root)
    return checked


def run_verify(runtime, project: str, *, actor: str, on_total: Callable[[int], None] | None = None,
               on_bytes: Callable[[int], None] | None = None) -> CheckedMount:
    """``pds extract verify``: re-hash every file of ``project``'s published extract, whatever its
    size, and record ``extract.verify``: OK with the files' fingerprint (the state later mounts of
    a large extract are compared with), else FAILED with the reason (workspaces are then refused
    until the extract is re-published or verified again). Raises :class:`ExtractRefused`."""
    from .build import authorise

    authorise(runtime, actor, project, "extract.verify")
    event = AuditEvent(actor=actor, action="extract.verify", target=f"project:{project}", project=project)
    build_id = None
    try:
        publication = latest_publication(runtime.audit, project)
        build_id = publication.details["build_id"]
        expected = ExpectedMount(project, build_id, publication.details["manifest_sha256"], None,
                                 hash_max_bytes=1 << 62)  # every file, whatever the size
        root, checked = open_and_check(runtime.settings, expected, on_total=on_total, on_bytes=on_bytes)
    except PdsError as exc:
        runtime.audit.record(event.with_outcome(Outcome.FAILED, build_id=build_id, reason=str(exc)))
        raise
    os.close(root)
    runtime.audit.record(event.with_outcome(Outcome.OK, build_id=build_id,
                                            files_fingerprint=checked.fingerprint, bytes=checked.total_bytes))
    return checked
