"""The red team's reference page is generated from the suite: it must name every file of
tests/security with the attempts pytest collects from it."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "red-team.md"
sys.path.insert(0, str(ROOT / "tests" / "security"))

from inventory import collect, render  # noqa: E402


@pytest.mark.slow  # pytest collects the whole suite in a fresh interpreter (~10 s idle)
def test_red_team_page_matches_the_suite():
    counts = collect()
    assert PAGE.read_text(encoding="utf-8") == render(counts), (
        "docs/reference/red-team.md is stale: run "
        "`python tests/security/inventory.py --write docs/reference/red-team.md`")
    assert sum(counts.values()) > 2000 and all(name.startswith("tests/security/test_") for name in counts)
