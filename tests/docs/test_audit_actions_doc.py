"""The reference page of the audit actions is generated from their catalogue: it must stay in step."""

from pathlib import Path

from pds_kernel.audit_actions import render_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "audit-actions.md"


def test_audit_actions_page_matches_the_catalogue():
    assert PAGE.read_text(encoding="utf-8") == render_reference(), (
        "docs/reference/audit-actions.md is stale: run "
        "`python -m pds_kernel.audit_actions > docs/reference/audit-actions.md`"
    )
