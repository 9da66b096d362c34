"""Airlock limits and switches, as the service uses them.

They are the ``airlock`` section of the settings (:class:`pds_kernel.settings.Airlock`: ``pds.yaml``,
overridden by ``PDS_AIRLOCK__<KEY>`` environment variables like every setting), which holds their
defaults and parses the environment; here the list of allowed extensions becomes a set, checked
against the file types the airlock has checks for.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..errors import InvalidInput
from ..settings import Airlock
from .checks.filetypes import KINDS

_DEFAULTS = Airlock()  #: the settings' defaults, the one place they are written


@dataclass(frozen=True)
class AirlockLimits:
    max_files: int = _DEFAULTS.max_files  #: files in one request
    max_file_bytes: int = _DEFAULTS.max_file_bytes  #: size of one file, in bytes
    max_total_bytes: int = _DEFAULTS.max_total_bytes  #: size of all files of one request, in bytes
    allowed_extensions: frozenset[str] = frozenset(KINDS)  #: extensions that may be submitted
    auto_release: bool = _DEFAULTS.auto_release  #: release as soon as the last required review approves
    stale_release_seconds: int = _DEFAULTS.stale_release_seconds  #: a release claim older than this may be taken over


def load_limits(settings) -> AirlockLimits:
    """The limits of ``settings.airlock``."""
    section = settings.airlock
    known = {f.name for f in fields(AirlockLimits)}
    values = {f.name: getattr(section, f.name) for f in fields(section) if f.name in known}
    if values["allowed_extensions"].strip():
        values["allowed_extensions"] = _extensions(values["allowed_extensions"])
    else:
        del values["allowed_extensions"]  # empty: every known type
    return replace(AirlockLimits(), **values)


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
