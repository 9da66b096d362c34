"""The request-state reference page is generated from the transition table: it must stay in step."""

from pathlib import Path

from pds_kernel.airlock.states import render_diagram

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "request-states.md"


def test_request_states_page_matches_the_transition_table():
    assert PAGE.read_text(encoding="utf-8") == render_diagram(), (
        "docs/reference/request-states.md is stale: run `pds airlock diagram`"
    )
