"""Support of the twentieth red-team round on the export path (``test_redteam20_gate.py``): one real
gate for the module (tests/security/gate_support.py's production application, server options and
people), and a third project, ``end-2024``, whose end a test moves into the past.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from gate_support import PREFIX, Gate, people

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.web import make_app, server_options
from pds_kernel.registry import Role
from pds_kernel.runtime import Runtime

ENDING = "end-2024"  #: alice researches it, olga and omar check it; a test ends it


@pytest.fixture(name="gate20", scope="module")
def gate20_fixture(tmp_path_factory):
    """One gate for the module (each test makes its own requests; a test that changes a membership
    puts it back)."""
    from airlock_web import FakeIdentity, live_server

    from tests.conftest import make_settings

    runtime = Runtime(make_settings(tmp_path_factory.mktemp("rt20") / "pds"))
    try:
        registry = people(runtime)
        far = date(2099, 12, 31)
        registry.upsert_project("root", ENDING, title=ENDING, start_date=date(2020, 1, 1), end_date=far)
        for user, role in (("alice", Role.RESEARCHER), ("olga", Role.OUTPUT_CHECKER), ("omar", Role.OUTPUT_CHECKER)):
            registry.add_member("root", ENDING, user, role, far)
        service = AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=registry)
        app = make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)
        with live_server(app, **server_options()) as url:
            yield Gate(url + PREFIX, service, registry)
    finally:
        runtime.close()
