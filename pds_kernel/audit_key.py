"""The keys of the audit chain: platform secrets the database never holds.

Each audit entry's hash is an HMAC-SHA256 under a key (:mod:`pds_kernel.audit`), so someone who
can rewrite the database but cannot read this file cannot recompute a valid chain. Locally the key
file is under ``<state>/secrets`` (mode 0600, created on first use); in Kubernetes it is the
``pds-audit-key`` Secret mounted read-only into every pod that writes the audit trail, and
``audit.create_key`` is false so that a pod without it refuses to start writing rather than sign
with a key of its own.

The file is a **keyring**: one key per line, oldest first, each as 64 hex digits, optionally
preceded by its id (``<key id> <hex>``, the id checked against the key). A file of one bare key
(every installation before rotation existed) is a keyring of that one key. Which key signs is
decided by the chain, not by the file (:mod:`pds_kernel.audit_rotation`, docs/adr/0014): a key
added to the file only verifies until ``pds audit rotate-key`` records the rotation to it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .errors import IntegrityError, NotFound

#: bytes of a generated key
KEY_BYTES = 32


@dataclass(frozen=True)
class AuditKey:
    """The secret and a public identifier of it (shown in anchors and messages, never the key)."""

    secret: bytes = b""

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise IntegrityError("the audit key is shorter than 16 bytes: generate one with "
                                 "`python -c 'import secrets; print(secrets.token_hex(32))'`")

    @property
    def key_id(self) -> str:
        """First 16 hex digits of SHA-256("pds-audit-key" + key): names the key, reveals nothing."""
        return hashlib.sha256(b"pds-audit-key" + self.secret).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the secret
        return f"AuditKey(key_id={self.key_id})"


def _parse(text: str, where: str) -> bytes:
    value = text.strip()
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise IntegrityError(f"the audit key {where} is not hexadecimal text: write 64 hex digits "
                             "(`python -c 'import secrets; print(secrets.token_hex(32))'`)") from None


@dataclass(frozen=True)
class Keyring:
    """The audit keys, oldest first: the chain says which one signs (``pds audit rotate-key``),
    the others only verify."""

    keys: tuple[AuditKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise IntegrityError("the audit keyring holds no key")
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise IntegrityError(f"the audit keyring holds key {', '.join(twice)} twice: keep one line per key")

    def get(self, key_id: str) -> AuditKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def index(self, key_id: str) -> int | None:
        """The key's age rank in the keyring (0 = oldest), ``None`` when it is not in it."""
        return next((i for i, k in enumerate(self.keys) if k.key_id == key_id), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(k.key_id for k in self.keys)

    def __repr__(self) -> str:  # never print a secret
        return f"Keyring({', '.join(self.ids)})"


def parse_keyring(text: str, where: str) -> Keyring:
    """The keyring written in ``text`` (``where`` names it in errors): one key per line, oldest
    first, ``<hex>`` or ``<key id> <hex>``; blank lines and ``#`` comments are skipped."""
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2:
            raise IntegrityError(f"the audit keyring {where}, line {number}, is not `<hex key>` nor "
                                 "`<key id> <hex key>`: fix that line")
        key = AuditKey(_parse(words[-1], f"{where}, line {number},"))
        if len(words) == 2 and words[0] != key.key_id:
            raise IntegrityError(f"the audit keyring {where}, line {number}, names key {words[0]} but its "
                                 f"key's id is {key.key_id}: the line was mistyped or its key truncated")
        keys.append(key)
    if not keys:
        raise IntegrityError(f"the audit keyring {where} holds no key")
    return Keyring(tuple(keys))


def load_keyring(path: Path | str, create: bool) -> Keyring:
    """Read the keyring from ``path``; when it is missing, create it with one key (0600, in a 0700
    directory) if ``create``, else refuse with what to do. ``env:NAME`` reads it from that
    environment variable (for a pod whose chart cannot mount the Secret as a file)."""
    if isinstance(path, str) and path.startswith("env:"):
        name = path[len("env:"):]
        if not os.environ.get(name):
            raise NotFound(f"the audit key variable ${name} is empty: set it from the pds-audit-key Secret")
        return parse_keyring(os.environ[name], f"${name}")
    path = Path(path)
    if not path.exists():
        if not create:
            raise NotFound(f"the audit key {path} does not exist: mount the pds-audit-key Secret "
                           "there (docs/deploy-kubernetes.md), or set audit.create_key for a local "
                           "installation")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # written whole under a temporary name, then linked into place: another process sees
        # either no key or the complete key, and the first one to link wins
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            temporary.unlink()
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise IntegrityError(f"the audit keyring {path} is not ASCII text: one hex key per line") from None
    return parse_keyring(text, str(path))
