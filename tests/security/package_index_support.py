"""Support of the package index attacks (tests/security/test_package_index.py).

The registry and extracts are those of the sandbox tests (``world``: alice in proj-a, bob in
proj-b); the wheels, the threaded index server and the local upstream index are the package tests'
(tests/packages/packagefixtures.py). Nothing reaches the Internet: approvals download from a
local upstream index over loopback."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import sandbox_support

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages"))  # the package test helpers
from packagefixtures import ADMIN, ThreadedIndex, build_wheel, with_signatures, write_config

from pds_kernel.packages.service import PackageService
from pds_kernel.packages.wheelhouse import Wheelhouse, read_wheel
from pds_kernel.runtime import Runtime
from pds_kernel.sandbox.exec import run_in_sandbox
from pds_kernel.settings import Packages

world = sandbox_support.world
PDS = sandbox_support.PDS
__all__ = ["ADMIN", "PDS", "ThreadedIndex", "build_wheel", "write_config", "world"]


@pytest.fixture
def upstream(tmp_path):
    """A local upstream index: pds-hello 1.0 (a wheel) and pds-sdist 1.0 (a source archive only)."""
    source = tmp_path / "upstream-src"
    house = Wheelhouse(tmp_path / "upstream")
    house.add([read_wheel(build_wheel(source, "pds-hello", "1.0"))], source)
    with ThreadedIndex(house.root) as index:
        yield index


@pytest.fixture
def attack_runtime(world, upstream, tmp_path):
    """The world's database and paths; approvals download from ``upstream`` and are scanned with the
    tests' signatures; ``ada`` is an admin; pds-hello 1.0 is approved."""
    settings = with_signatures(replace(world.runtime.settings, packages=Packages(upstream_index=upstream.url)),
                               tmp_path / "signatures")
    world.registry.upsert_user("admin", ADMIN, is_admin=True)
    rt = Runtime(settings)
    PackageService(rt).approve(ADMIN, "pds-hello==1.0")
    yield rt
    rt.close()


def in_sandbox(runtime, tmp_path, script: str, *, user: str = "alice", project: str = "proj-a",
               timeout: float = 180) -> tuple[int, str, ThreadedIndex]:
    """Run ``script`` (sh) in the real sandbox of (user, project) with the package index bridged
    (the real server on a Unix socket): exit code, what it printed, the index (its requests)."""
    home = runtime.settings.paths.homes / project / user
    socket = tmp_path / "packages.sock"
    with ThreadedIndex(runtime.settings.paths.packages, unix_socket=socket) as index:
        code = run_in_sandbox(runtime, user, project, ["sh", "-c", f"(\n{script}\n) > $HOME/attack.txt 2>&1"],
                              actor="red-team", sockets={"packages": socket}, timeout=timeout)
    return code, (home / "attack.txt").read_text(errors="replace"), index


def installed(runtime, name: str, user: str = "alice", project: str = "proj-a") -> bool:
    """Whether ``name`` (a module) ended up in the home's package prefix."""
    prefix = runtime.settings.paths.homes / project / user / ".local" / "pds-packages"
    return any(prefix.glob(f"lib/python3.*/site-packages/{name}"))
