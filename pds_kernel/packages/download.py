"""Download a package and its dependency closure as wheels for the workspaces' Python and platform.

Runs on the platform's side (an admin's ``pds packages approve``), never in a workspace::

    python -m pip download --isolated --only-binary=:all: --implementation cp
        --python-version 3.11 --platform manylinux_2_36_x86_64
        --index-url <settings.packages.upstream_index> -c <the workspace environment> -d DIR NAME==VERSION

``--isolated`` ignores the host's pip configuration and ``PIP_*`` variables; ``--only-binary``
refuses source distributions (building one runs its code); the constraints pin every package the
workspace environment already holds to its installed version, so an approved package never brings
a second, different numpy. The upstream index is PyPI by default and the organisation's mirror
in production (docs/admin-guide.md).
"""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, NotFound
from .names import Requirement, normalise

log = logging.getLogger(__name__)

#: Seconds one download may take.
DOWNLOAD_TIMEOUT = 600


@dataclass(frozen=True)
class Target:
    """What the wheels must run on: the workspaces' interpreter and platform."""

    python_version: str  #: "3.11"
    platform: str  #: "manylinux_2_36_x86_64" (pip also accepts older manylinux tags for it)
    index_url: str  #: where wheels are downloaded from (PyPI or a mirror)


def environment_constraints() -> list[str]:
    """``name==version`` of every distribution of the workspace environment (this interpreter's:
    the same lock as the notebook image)."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            pins[normalise(name)] = dist.version
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def build_download_argv(requirement: Requirement, dest: Path, target: Target, constraints: Path | None) -> list[str]:
    """Pure: the pip command that downloads ``requirement`` and its closure into ``dest``."""
    if not requirement.version:
        raise InvalidInput(f"give the exact version to approve: {requirement.name}==VERSION")
    argv = [sys.executable, "-m", "pip", "download", "--isolated", "--disable-pip-version-check",
            "--no-input", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", target.python_version, "--platform", target.platform,
            "--index-url", target.index_url, "--dest", str(dest), "--progress-bar", "off"]
    if constraints is not None:
        argv += ["--constraint", str(constraints)]
    return [*argv, str(requirement)]


def download_closure(requirement: Requirement, dest: Path, target: Target, *,
                     constrain: bool = True) -> list[Path]:
    """Download the wheels into ``dest`` (empty directory); return their paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    constraints = None
    if constrain:
        constraints = dest.parent / f"{dest.name}.constraints.txt"
        pins = [p for p in environment_constraints() if not p.startswith(f"{requirement.name}==")]
        constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
    argv = build_download_argv(requirement, dest, target, constraints)
    log.info("downloading %s: %s", requirement, " ".join(argv))
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT, check=False)
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.startswith("ERROR")]
        detail = "; ".join(lines[-2:]) or completed.stderr.strip()[-500:]
        raise NotFound(f"cannot download {requirement} as wheels for Python {target.python_version} "
                       f"on {target.platform} from {target.index_url}: {detail}")
    wheels = sorted(dest.glob("*.whl"))
    others = [p.name for p in dest.iterdir() if p.suffix != ".whl"]
    if others or not wheels:
        raise InvalidInput(f"{requirement}: the download holds files that are not wheels: {others}")
    return wheels
