"""Per-project keyed pseudonyms and the key store that holds the keys.

A project pseudonym is ``HMAC-SHA256(project key, source identifier)`` written as 64 lower-case hex
characters. One random 32-byte key per project, so two projects never share a pseudonym for the same
person, and nobody without the key can go from a pseudonym back to the source identifier or check a
guess. Keys live in :attr:`Settings.paths.keys`, never under an extract and never in a log line.
Destroying a project's key at the end of the project makes the link between its extract and the lake
unrecoverable; a tombstone then stops the same project id from silently getting a new key. Because it
cannot be undone, :meth:`KeyStore.destroy` itself decides who may do it (the platform's administrators,
as for extract builds), when (a closed or ended project only) and asks for an explicit confirmation;
every refusal is audited.

Speed: pseudonymise the *distinct* identifiers (one per person) with :func:`pseudonym_table`, then
join the small table onto the rows. Hashing per row would redo the same HMAC thousands of times.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from .audit import AuditEvent, AuditTrail, Outcome
from .errors import InvalidInput, NotFound, PermissionDenied
from .registry.names import check_project_id
from .settings import check_private_place

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger(__name__)

KEY_BYTES = 32
_KEY_SUFFIX = ".key"
_TOMBSTONE_SUFFIX = ".destroyed"


def pseudonym(key: bytes, source_id: str) -> str:
    """The pseudonym of one source identifier under ``key`` (hex HMAC-SHA256)."""
    return hmac.digest(key, source_id.encode("utf-8"), "sha256").hex()


_SHA256_BLOCK = 64


def pseudonyms(key: bytes, source_ids: Iterable[str]) -> list[str]:
    """Pseudonyms of many identifiers, in order: the same values as :func:`pseudonym`.

    HMAC (RFC 2104) hashes ``key XOR ipad`` and ``key XOR opad`` as the first block of its inner
    and outer hashes whatever the message: those two hash states are computed once here and
    copied for each identifier, which makes a pseudonym 2.5 times cheaper than a one-shot
    ``hmac.digest`` (which starts from the key every time)."""
    if len(key) > _SHA256_BLOCK:  # RFC 2104: a longer key is hashed first
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner_start = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
    outer_start = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))
    out = []
    append = out.append
    for value in source_ids:
        inner = inner_start.copy()
        inner.update(value.encode("utf-8"))
        outer = outer_start.copy()
        outer.update(inner.digest())
        append(outer.hexdigest())
    return out


def pseudonym_table(key: bytes, source_ids: pl.Series, *, source: str, target: str) -> pl.DataFrame:
    """A two-column table ``source -> target`` for the distinct non-null values of ``source_ids``.

    Join it onto the rows to re-key them; the HMAC runs once per distinct identifier.
    """
    distinct = source_ids.drop_nulls().unique().sort()
    return pl.DataFrame(
        {source: distinct, target: pl.Series(target, pseudonyms(key, distinct.to_list()), dtype=pl.String)},
        schema={source: pl.String, target: pl.String},
    )


def check_key_store_place(paths) -> None:
    """Refuse a key store (``paths.keys``) inside a directory a workspace mounts or a reviewer reads:
    the first build would write the project's key where the project can read it."""
    check_private_place(paths, "keys")


class KeyStore:
    """One 32-byte key per project under ``root`` (a directory of mode 0700, files of mode 0600).

    ``audit`` records key creation and destruction (never the key itself). ``registry`` decides who
    may destroy a key; without one (and an audit trail) :meth:`destroy` refuses everyone.
    """

    def __init__(self, root: Path, audit: AuditTrail | None = None, registry: Registry | None = None):
        self.root = Path(root)
        self._audit = audit
        self._registry = registry

    @classmethod
    def from_runtime(cls, runtime) -> KeyStore:
        from .registry import Registry

        check_key_store_place(runtime.settings.paths)
        return cls(runtime.settings.paths.keys, runtime.audit, Registry.from_runtime(runtime))

    def _path(self, project: str) -> Path:
        return self.root / f"{check_project_id(project)}{_KEY_SUFFIX}"

    def _tombstone(self, project: str) -> Path:
        return self.root / f"{check_project_id(project)}{_TOMBSTONE_SUFFIX}"

    def exists(self, project: str) -> bool:
        return self._path(project).is_file()

    def destroyed(self, project: str) -> bool:
        return self._tombstone(project).is_file()

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _destruction_audited(self, project: str) -> bool:
        """The audit trail records the destruction of ``project``'s key (its tombstone may be gone)."""
        if self._audit is None:
            return False
        return any(e.outcome == Outcome.OK for e in self._audit.entries(project=project, action="pseudo.key.destroy"))

    def create(self, project: str, actor: str) -> None:
        """Create the key of ``project``; refuses when one exists or was destroyed (a tombstone, or
        the destruction in the audit trail: deleting the tombstone does not bring a new key)."""
        path = self._path(project)
        if self.destroyed(project) or self._destruction_audited(project):
            raise PermissionDenied(
                f"the key of project {project} was destroyed at the end of the project: "
                "its pseudonyms cannot be recreated"
            )
        self._prepare_root()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise InvalidInput(f"project {project} already has a key") from None
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        log.info("created pseudonymisation key for project %s", project)
        self._record(AuditEvent(actor=actor, action="pseudo.key.create", target=f"key:{project}",
                                project=project))

    def ensure(self, project: str, actor: str) -> bytes:
        """The key of ``project``, created on first use (never after a destruction)."""
        if not self.exists(project):
            self.create(project, actor)
        return self.get(project)

    def get(self, project: str) -> bytes:
        path = self._path(project)
        if self.destroyed(project):
            raise PermissionDenied(f"the key of project {project} was destroyed at the end of the project")
        if not path.is_file():
            raise NotFound(f"project {project} has no pseudonymisation key yet: build its extract first")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # ELOOP: a symbolic link
            raise PermissionDenied(f"key file of project {project} is a link to another file: a key is the "
                                   "project's own file (two projects sharing a key share pseudonyms); an "
                                   "administrator must remove the link") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_nlink != 1:
                raise PermissionDenied(f"key file of project {project} is a link (hard, {info.st_nlink} names) to "
                                       "another file: a key is the project's own file (two projects sharing a key "
                                       "share pseudonyms); an administrator must remove the link")
            mode = info.st_mode & 0o777
            if mode & 0o077:
                raise PermissionDenied(
                    f"key file of project {project} is readable by others (mode {mode:o}): fix it to 0600"
                )
            key = handle.read(KEY_BYTES + 1)
        if len(key) != KEY_BYTES:
            raise InvalidInput(f"key file of project {project} is damaged (expected {KEY_BYTES} bytes)")
        return key

    def authorise_destroy(self, project: str, actor: str, today: date | None = None) -> None:
        """Who may destroy a key, and when; a refusal is audited as ``pseudo.key.destroy`` denied.

        Only an active platform administrator (:func:`pds_kernel.permissions.check_destroy_key`),
        and only once the project is over: closed, or past its end date. An active or suspended project may still
        need its extract rebuilt, which the key makes possible."""
        check_project_id(project)
        if self._registry is None or self._audit is None:
            raise PermissionDenied("destroying a key needs the project registry and the audit trail: "
                                   "open the key store with KeyStore.from_runtime")
        from .permissions import check_destroy_key

        try:
            check_destroy_key(self._registry, actor, self._registry.get_project(project), today)
        except PermissionDenied as exc:
            self._audit.record(AuditEvent(actor=actor, action="pseudo.key.destroy", target=f"key:{project}",
                                          project=project, outcome=Outcome.DENIED, details={"reason": str(exc)}))
            raise

    def destroy(self, project: str, actor: str, *, confirm: bool = False, reason: str = "",
                today: date | None = None) -> None:
        """Overwrite and delete the key, leave a tombstone. The project's link becomes unrecoverable.

        Refused unless :meth:`authorise_destroy` allows ``actor`` (audited) and ``confirm`` is true."""
        self.authorise_destroy(project, actor, today)
        if not confirm:
            raise InvalidInput(f"destroying the key of project {project} cannot be undone: confirm it (--yes)")
        path = self._path(project)
        if not path.is_file():
            raise NotFound(f"project {project} has no key to destroy")
        size = path.stat().st_size
        with open(path, "r+b") as handle:  # best effort: the bytes do not linger in the same blocks
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        self._tombstone(project).write_text(f"key destroyed by {actor}\n", encoding="utf-8")
        log.info("destroyed pseudonymisation key of project %s", project)
        self._record(AuditEvent(actor=actor, action="pseudo.key.destroy", target=f"key:{project}",
                                project=project, outcome=Outcome.OK, details={"reason": reason}))

    def _record(self, event: AuditEvent) -> None:
        if self._audit is not None:
            self._audit.record(event)
