"""Support of the sandbox escape attacks (tests/security/test_sandbox_escape.py).

The registry, projects and secrets are those of the sandbox tests (``tests/sandbox/conftest.py``,
loaded under another module name, so its ``world`` fixture is the same one)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path

import yaml

from pds_kernel.sandbox.probing import ProbeResult, run_probes

_SANDBOX_CONFTEST = Path(__file__).resolve().parents[1] / "sandbox" / "conftest.py"
_spec = importlib.util.spec_from_file_location("sandbox_world_fixtures", _SANDBOX_CONFTEST)
sandbox_world = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = sandbox_world
_spec.loader.exec_module(sandbox_world)

#: the ``world`` fixture of tests/sandbox: proj-a (alice), proj-b (bob), extracts and secrets
world = sandbox_world.world
#: the ``pds`` command of this environment
PDS = str(Path(sys.prefix) / "bin" / "pds")


def attempt(world, probe: str, user: str = "alice", project: str = "proj-a") -> ProbeResult:
    """Run ONE probe of pds_kernel.sandbox.probes in the real sandbox of (user, project) and
    return its result; the host's own checks of that run must hold too (no root, no setuid)."""
    results = run_probes(world.runtime, user, project, actor="red-team", only=[probe])
    host_checks = [r for r in results if r.succeeded]
    assert not host_checks, f"while running {probe}: {host_checks}"
    wanted = [r for r in results if r.name not in _HOST_CHECK_NAMES]
    assert len(wanted) == 1, results
    return wanted[0]


def host_checks(world, user: str = "alice", project: str = "proj-a") -> dict[str, ProbeResult]:
    """The checks made from outside while a probe runs (host uid, uid map seen from the host...)."""
    results = run_probes(world.runtime, user, project, actor="red-team", only=["probe_root_inside"])
    return {r.name: r for r in results}


_HOST_CHECK_NAMES = {
    "sandbox processes run as host root", "sandbox uid maps to host root (uid_map seen from the host)",
    "setuid-root file planted in the home (seen from the host)", "host core_pattern changed",
    "sandbox runs as an unprivileged host uid", "the probe run completed",
}


def write_config(settings, path: Path) -> Path:
    """A pds.yaml naming exactly ``settings``' paths and database (for the real ``pds`` command)."""
    data = {"paths": {f.name: str(getattr(settings.paths, f.name)) for f in fields(settings.paths)},
            "database": {"url": settings.database.url}}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
