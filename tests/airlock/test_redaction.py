"""The author's view of a check result: rule, status, location and a fixed explanation, nothing else.

Pure tests of :func:`pds_kernel.airlock.views.build_redacted_check` on hand-written check results,
so they hold whatever messages the checks write (tests/security/test_gate.py checks the same
through the running gate with real checks).
"""

from __future__ import annotations

import re
from pathlib import Path

from pds_kernel.airlock.views import REDACTED_FINDINGS_PER_RULE, RULE_EXPLANATIONS, build_redacted_check


def test_messages_are_replaced_and_unknown_rules_hidden():
    check = {"kind": "table", "status": "fail",
             "rules": {"small-cell": "fail", "SECRET-RULE-4-8-15": "fail", "zero": "review"},
             "findings": [{"rule": "small-cell", "status": "fail", "message": "4 is below the threshold", "row": 2,
                           "col": 1, "value": "4"},
                          {"rule": "SECRET-RULE-4-8-15", "status": "fail", "message": "ACRO SECRET", "row": 0,
                           "col": 0},
                          {"rule": "identifier", "status": "fail", "message": "column 'BEN_NIR_PSA' holds ids",
                           "col": "BEN_NIR_PSA", "line": True}],
             "omitted": {"SECRET-RULE-4-8-15": 3}}
    out = build_redacted_check(check, min_cell=10)
    text = repr(out)
    assert "SECRET" not in text and "4 is below" not in text and "BEN_NIR_PSA" not in text and "'4'" not in text
    assert out["rules"] == {"small-cell": "fail", "other": "fail", "zero": "review"}
    assert out["findings"][0] == {"rule": "small-cell", "status": "fail", "row": 2, "col": 1,
                                  "message": "count below the project's small-cell threshold of 10"}
    assert out["findings"][1]["rule"] == "other" and out["findings"][1]["row"] == 0
    assert set(out["findings"][2]) == {"rule", "status", "message"}  # a location that is not a number is dropped
    assert out["omitted"] == {"other": 3} and out["redacted"] is True


def test_locations_are_capped_per_rule_and_the_rest_counted():
    findings = [{"rule": "zero", "status": "review", "message": "x", "row": r, "col": 0} for r in range(50)]
    out = build_redacted_check({"kind": "table", "status": "review", "rules": {"zero": "review"},
                                "findings": findings, "omitted": {"zero": 7}}, min_cell=10)
    assert len(out["findings"]) == REDACTED_FINDINGS_PER_RULE
    assert out["omitted"] == {"zero": 50 - REDACTED_FINDINGS_PER_RULE + 7}


def test_a_damaged_check_result_redacts_without_failing():
    for check in ({}, {"rules": [1], "findings": "x", "omitted": None, "kind": "<script>"},
                  {"findings": [None, 3, {"rule": None, "status": "pwned", "row": -1, "line": 10**12}]}):
        out = build_redacted_check(check, min_cell=5)
        assert out["kind"] in {"unknown", "table"} and out["status"] in {"pass", "review", "fail"}
        assert all(f["rule"] in {*RULE_EXPLANATIONS, "other"} and set(f) <= {"rule", "status", "message"}
                   for f in out["findings"])


def test_every_rule_of_the_catalogue_has_a_fixed_explanation():
    """A rule without an explanation shows as ``other`` to the author: each rule the catalogue in
    docs/output-checking.md names (first column of its tables) must have one."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "output-checking.md").read_text()
    catalogued = set(re.findall(r"^\| `([a-z][a-z-]+)`", doc, flags=re.M))
    assert {"small-cell", "differencing", "microdata", "pickle"} <= catalogued
    assert catalogued - set(RULE_EXPLANATIONS) == set()
