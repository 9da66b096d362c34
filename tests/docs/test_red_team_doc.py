"""The red team's reference page is generated from the suite: it must name every file of
tests/security with the attempts pytest collects from it."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "red-team.md"
sys.path.insert(0, str(ROOT / "tests" / "security"))

from inventory import collect, count_attempts, render, whole_suite_collected  # noqa: E402


@pytest.mark.slow  # without the whole suite in this session: pytest collects it in a fresh interpreter
def test_red_team_page_matches_the_suite(request):
    if whole_suite_collected(request.config):
        counts = count_attempts(item.nodeid for item in request.session.items)
    else:
        counts = collect()
    assert PAGE.read_text(encoding="utf-8") == render(counts), (
        "docs/reference/red-team.md is stale: run "
        "`python tests/security/inventory.py --write docs/reference/red-team.md`")
    assert sum(counts.values()) > 2000 and all(name.startswith("tests/security/test_") for name in counts)
