"""Fixtures of the package tests: the sandbox tests' registry (``world``: proj-a with alice,
proj-b with bob), an admin, and a local "upstream" index that ``pip download`` really reaches."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from packagefixtures import ADMIN, ThreadedIndex, build_wheel, with_signatures

from pds_kernel.packages.wheelhouse import Wheelhouse, read_wheel
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Packages

_NAME = "sandbox_world_fixtures"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).resolve().parents[1] / "sandbox" / "conftest.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
world = sys.modules[_NAME].world


@pytest.fixture
def upstream(tmp_path):
    """An upstream index (the real server over TCP) holding pds-hello 1.0 (needs pds-dep) and pds-dep 2.0."""
    source = tmp_path / "upstream-src"
    wheels = [build_wheel(source, "pds-hello", "1.0", requires=("pds-dep>=2",), licence="MIT"),
              build_wheel(source, "pds-dep", "2.0", licence="Apache-2.0")]
    house = Wheelhouse(tmp_path / "upstream")
    house.add([read_wheel(w) for w in wheels], source)
    with ThreadedIndex(house.root) as index:
        yield index


@pytest.fixture
def packages_runtime(world, upstream, tmp_path):
    """The world's database and paths, with approvals downloading from ``upstream`` and scanned with
    the tests' signatures; ``ada`` is an admin."""
    settings = with_signatures(replace(world.runtime.settings, packages=Packages(upstream_index=upstream.url)),
                               tmp_path / "signatures")
    world.registry.upsert_user("admin", ADMIN, is_admin=True)
    rt = Runtime(settings)
    yield rt
    rt.close()
