"""The red-team suite: every test here is one attack attempt made for real, asserted to fail.

Each test (each parametrised case) counts as one attempt. An attempt "succeeds" when its test
fails, i.e. when the attack got through. The closing summary prints the count (the hook is in tests/conftest.py), so a run of
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
