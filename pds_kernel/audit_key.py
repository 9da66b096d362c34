"""The key of the audit chain: a platform secret the database never holds.

Each audit entry's hash is an HMAC-SHA256 under this key (:mod:`pds_kernel.audit`), so someone who
can rewrite the database but cannot read this file cannot recompute a valid chain. Locally the key
is a file under ``<state>/secrets`` (mode 0600, created on first use); in Kubernetes it is the
``pds-audit-key`` Secret mounted read-only into every pod that writes the audit trail, and
``audit.create_key`` is false so that a pod without it refuses to start writing rather than sign
with a key of its own.
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


def _parse(text: str, path: Path) -> bytes:
    value = text.strip()
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise IntegrityError(f"the audit key {path} is not hexadecimal text: write 64 hex digits "
                             "(`python -c 'import secrets; print(secrets.token_hex(32))'`)") from None


def load_key(path: Path | str, create: bool) -> AuditKey:
    """Read the key from ``path``; when it is missing, create it (0600, in a 0700 directory) if
    ``create``, else refuse with what to do. ``env:NAME`` reads it from that environment variable
    (for a pod whose chart cannot mount the Secret as a file)."""
    if isinstance(path, str) and path.startswith("env:"):
        name = path[len("env:"):]
        if not os.environ.get(name):
            raise NotFound(f"the audit key variable ${name} is empty: set it from the pds-audit-key Secret")
        return AuditKey(_parse(os.environ[name], Path(f"${name}")))
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
    return AuditKey(_parse(path.read_text(encoding="ascii"), path))
