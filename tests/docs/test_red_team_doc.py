"""The red team's reference page is generated from the suite: it must name every file of
tests/security with the attempts pytest collects from it."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "red-team.md"
sys.path.insert(0, str(ROOT / "tests" / "security"))

from inventory import collect, count_attempts, documented_total, documented_total_wrong, render, whole_suite_collected  # noqa: E402


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


def test_the_documented_total_is_checked_against_a_run(tmp_path):
    """The check a run of the whole suite makes (tests/conftest.py): docs/isolation.md states one
    total; a run that made another is told what to write, one that made as many is not."""
    stated = documented_total()
    assert stated is not None and stated > 2000
    assert documented_total_wrong(stated) is None
    told = documented_total_wrong(stated + 1)
    assert f"states {stated} red-team attempts, this run made {stated + 1}" in told
    assert f"**{stated + 1} attempts, 0 succeeded**" in told
    page = tmp_path / "isolation.md"
    page.write_text("At this writing: **12 attempts, 0 succeeded**, and later **13 attempts, 0 succeeded**.")
    assert "states no total" in documented_total_wrong(12, page)  # two totals: none is trusted
