"""docs/compliance.md stays honest: every test it names exists, every row has a known status, and a
row that claims a requirement is met (tested, partly) names at least one test."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "compliance.md"
STATUSES = {"tested", "partly", "gap", "operator"}
#: `tests/<path>.py::test_name` (a parametrised id in brackets is allowed)
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(\[[^\]`]*\])?`")


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every Markdown table of the page, as lists of cells."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line.replace("|", "").strip()) <= {"-", " "}:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] in (["Requirement (Art. 73)", "Status"], ["Requirement", "Status"],
                         ["Statement (pillar)", "Status"], ["Section of the annex", "Status"]):
            continue
        rows.append(cells)
    return rows


@cache
def defined_tests(path: str) -> frozenset[str]:
    """Names of the module-level and class-level test functions defined in ``path``."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"))


def references(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(text)]


def test_page_names_tests():
    assert len(set(references(PAGE.read_text(encoding="utf-8")))) >= 50


@pytest.mark.parametrize("path,name", sorted(set(references(PAGE.read_text(encoding="utf-8")))))
def test_every_named_test_exists(path, name):
    assert (REPO / path).is_file(), f"docs/compliance.md names {path}, which does not exist"
    assert name in defined_tests(path), f"docs/compliance.md names {path}::{name}, which does not exist"


def test_every_row_has_a_status_and_claims_name_tests():
    rows = table_rows(PAGE.read_text(encoding="utf-8"))
    assert len(rows) >= 40
    for cells in rows:
        assert len(cells) == 4, cells
        requirement, status, _, tests = cells
        assert status in STATUSES, f"unknown status {status!r} for {requirement!r}"
        if status in ("tested", "partly"):
            assert references(tests), f"{requirement!r} is {status} but names no test"


def test_gaps_are_listed():
    text = PAGE.read_text(encoding="utf-8")
    gap_rows = [c[0] for c in table_rows(text) if c[1] == "gap"]
    assert gap_rows, "a page with no gap at all is not believable"
    assert "## 5. Gaps" in text


def test_reference_pattern_rejects_a_missing_test(tmp_path):
    """The check itself: a made-up name is caught."""
    assert "test_that_does_not_exist" not in defined_tests("tests/docs/test_compliance.py")
    assert references("`tests/a/b.py::test_x[1-2]`") == [("tests/a/b.py", "test_x")]
