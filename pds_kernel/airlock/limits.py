"""Airlock limits and switches, with their defaults.

They come from the ``airlock`` section of the settings (``pds.yaml``, overridden by
``PDS_AIRLOCK__<KEY>`` environment variables like every setting); the environment-only path below
serves callers that have no settings object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from ..errors import InvalidInput
from .checks.filetypes import KINDS


@dataclass(frozen=True)
class AirlockLimits:
    max_files: int = 20  #: files in one request
    max_file_bytes: int = 50 * 1024 * 1024  #: size of one file, in bytes
    max_total_bytes: int = 100 * 1024 * 1024  #: size of all files of one request, in bytes
    allowed_extensions: frozenset[str] = frozenset(KINDS)  #: extensions that may be submitted
    auto_release: bool = True  #: release as soon as the last required review approves
    stale_release_seconds: int = 600  #: a release claim older than this may be taken over


def load_limits(settings=None, environ: Mapping[str, str] | None = None) -> AirlockLimits:
    """Limits from ``settings.airlock`` when it exists, else from the environment, else defaults."""
    section = getattr(settings, "airlock", None)
    if section is not None:
        known = {f.name for f in fields(AirlockLimits)}
        values = {f.name: getattr(section, f.name) for f in fields(section) if f.name in known}
        if isinstance(values.get("allowed_extensions"), str):
            if values["allowed_extensions"].strip():
                values["allowed_extensions"] = _extensions(values["allowed_extensions"])
            else:
                del values["allowed_extensions"]  # empty: every known type
        return replace(AirlockLimits(), **values)
    environ = os.environ if environ is None else environ
    limits = AirlockLimits()
    for f in fields(AirlockLimits):
        raw = environ.get(f"PDS_AIRLOCK__{f.name.upper()}")
        if raw is None:
            continue
        if f.name == "allowed_extensions":
            value = _extensions(raw)
        elif f.name == "auto_release":
            value = raw.strip().lower() in {"1", "true", "yes", "on"}
        else:
            try:
                value = int(raw)
            except ValueError:
                raise InvalidInput(f"PDS_AIRLOCK__{f.name.upper()}: expected an integer, got {raw!r}") from None
        limits = replace(limits, **{f.name: value})
    return limits


def _extensions(raw: str) -> frozenset[str]:
    out = set()
    for item in raw.split(","):
        item = item.strip().lower()
        if item:
            out.add(item if item.startswith(".") else "." + item)
    unknown = out - set(KINDS)
    if unknown:
        raise InvalidInput(f"airlock: no checks exist for {', '.join(sorted(unknown))}")
    return frozenset(out)
