"""Fixtures of the airlock tests: a project with a researcher, two checkers and an admin."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from airlock_factories import OTHER, PROJECT
from airlock_web import PREFIX, FakeIdentity, live_server

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.web import make_app
from pds_kernel.registry import Registry, Role


@pytest.fixture
def registry(runtime) -> Registry:
    reg = Registry.from_runtime(runtime)
    for name in ("alice", "bob", "olga", "omar", "oscar", "mallory"):
        reg.upsert_user("root", name)
    reg.upsert_user("root", "root", is_admin=True)
    for pid in (PROJECT, OTHER):
        reg.upsert_project("root", pid, title=pid, start_date=date(2020, 1, 1), end_date=date(2099, 12, 31))
    far = date(2099, 12, 31)
    reg.add_member("root", PROJECT, "alice", Role.RESEARCHER, far)
    reg.add_member("root", PROJECT, "bob", Role.RESEARCHER, far)
    reg.add_member("root", PROJECT, "bob", Role.OUTPUT_CHECKER, far)
    reg.add_member("root", PROJECT, "olga", Role.OUTPUT_CHECKER, far)
    reg.add_member("root", PROJECT, "omar", Role.OUTPUT_CHECKER, far)
    reg.add_member("root", OTHER, "mallory", Role.RESEARCHER, far)
    reg.add_member("root", OTHER, "oscar", Role.OUTPUT_CHECKER, far)
    return reg


@pytest.fixture
def limits() -> AirlockLimits:
    return replace(AirlockLimits(), auto_release=False)


@pytest.fixture
def service(runtime, registry, limits) -> AirlockService:
    return AirlockService(runtime, limits=limits, registry=registry)


@pytest.fixture
def base(runtime, service) -> str:
    """The gate's real web service on a loopback port; its base URL (prefix included)."""
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)) as url:
        yield url + PREFIX
