"""Support of the twentieth red-team round on the export path (``test_redteam20_gate.py``): one real
gate for the module (tests/security/gate_support.py's production application, server options and
people), and a third project, ``end-2024``, whose end a test moves into the past.
"""

from __future__ import annotations

from datetime import date

import pytest
from gate_support import module_gate

from pds_kernel.registry import Role

ENDING = "end-2024"  #: alice researches it, olga and omar check it; a test ends it


@pytest.fixture(name="gate20", scope="module")
def gate20_fixture(tmp_path_factory):
    """One gate for the module (each test makes its own requests; a test that changes a membership
    puts it back)."""
    with module_gate(tmp_path_factory, "rt20", prepare=add_ending) as gate:
        yield gate


def add_ending(registry) -> None:
    """Project :data:`ENDING`, alice its researcher, olga and omar its checkers."""
    far = date(2099, 12, 31)
    registry.upsert_project("root", ENDING, title=ENDING, start_date=date(2020, 1, 1), end_date=far)
    for user, role in (("alice", Role.RESEARCHER), ("olga", Role.OUTPUT_CHECKER), ("omar", Role.OUTPUT_CHECKER)):
        registry.add_member("root", ENDING, user, role, far)
