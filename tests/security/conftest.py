"""The red-team suite: every test here is one attack attempt made for real, asserted to fail.

Each test (each parametrised case) counts as one attempt. An attempt "succeeds" when its test
fails, i.e. when the attack got through. The closing summary prints the count, so a run of
`make test` says how many attacks were tried and how many got through.

Support code of an area lives in ``tests/security/<area>_support.py`` (module names must be
unique across the suite), never in this file, so areas can grow independently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.attack)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    attempts = succeeded = 0
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") != "call" and outcome != "error":
                continue
            if not report.nodeid.startswith("tests/security/"):
                continue
            attempts += 1
            succeeded += outcome != "passed"
    if attempts:
        terminalreporter.write_line(f"red team: {attempts} attempts, {succeeded} succeeded")
