"""Package names and requirements as the platform accepts them (pure).

A request names one project of the Python Package Index and at most one exact version:
``NAME`` or ``NAME==VERSION``. Nothing else (no URL, no path, no extras, no markers, no ranges):
what an admin approves is exactly one release and its dependency closure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInput

#: PEP 508 project names (ASCII letters, digits, ``._-``; starting and ending with a letter or digit).
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
#: PEP 440 public versions, the subset an index serves (no local ``+label``).
_VERSION = re.compile(r"^[0-9]+(?:\.[0-9]+){0,5}(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?$")
#: A normalised name (PEP 503): what appears in ``/simple/<name>/``.
NORMALISED = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def normalise(name: str) -> str:
    """PEP 503 normalisation: lower case, runs of ``-_.`` become one ``-``."""
    return re.sub(r"[-_.]+", "-", check_name(name)).lower()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"invalid package name {name!r}: a Python Package Index name such as "
                           "'texttable' or 'scikit-learn'")
    return name


def check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise InvalidInput(f"invalid version {version!r}: give an exact release such as 1.7.0")
    return version


@dataclass(frozen=True)
class Requirement:
    """``name`` (normalised) and an exact ``version`` or ``""`` (the newest, decided at approval)."""

    name: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name


def parse_requirement(text: str, *, pinned: bool = False) -> Requirement:
    """``NAME`` or ``NAME==VERSION`` (``pinned``: the version is required)."""
    if not isinstance(text, str):
        raise InvalidInput("give a package as NAME or NAME==VERSION")
    name, sep, version = text.strip().partition("==")
    if not sep and pinned:
        raise InvalidInput(f"give the exact version to approve: {text.strip()}==VERSION "
                           "(see the request with pds packages list)")
    return Requirement(normalise(name.strip()), check_version(version.strip()) if sep else "")


def wheel_project(filename: str) -> tuple[str, str]:
    """(normalised project, version) of a wheel file name (PEP 427)."""
    parts = filename[:-len(".whl")].split("-") if filename.endswith(".whl") else []
    if len(parts) not in (5, 6):
        raise InvalidInput(f"not a wheel file name: {filename!r}")
    return normalise(parts[0]), parts[1]
