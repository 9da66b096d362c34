"""The declaration of a model's rows at the gate's boundary, and the bounded snapshot of its files."""

from __future__ import annotations

import pytest

from pds_kernel.errors import InvalidInput
from pds_kernel.modelcheck.inputs import check_declaration, snapshot

GOOD = {"data": "results/d.parquet", "target": "outcome", "train": "results/tr.csv", "test": "results/te.csv"}


@pytest.mark.parametrize("bad", [
    {**GOOD, "data": "/etc/passwd.csv"}, {**GOOD, "train": "results/../../x/tr.csv"}, {**GOOD, "test": "te.txt"},
    {**GOOD, "verdict": "pass"}, {**GOOD, "features": "age"}, {k: v for k, v in GOOD.items() if k != "target"},
    {**GOOD, "data": "results\\d.parquet"}, {**GOOD, "target": "\x00"},
])
def test_bad_declarations_are_refused(bad):
    with pytest.raises(InvalidInput):
        check_declaration("model.ubj", bad)


def test_declaration_is_kept_as_sent():
    assert check_declaration("model.ubj", {**GOOD, "features": ["a", "b"]}) == {**GOOD, "features": ["a", "b"]}


def test_snapshot_copies_at_most_the_budget(tmp_path):
    home = tmp_path / "home"
    (home / "results").mkdir(parents=True)
    for name in ("d.parquet", "tr.csv", "te.csv"):
        (home / "results" / name).write_bytes(b"x" * 1000)
    copies = snapshot(home, GOOD, tmp_path / "a", 3000)
    assert {k: p.stat().st_size for k, p in copies.items()} == {"data": 1000, "train": 1000, "test": 1000}
    with pytest.raises(InvalidInput, match="exceed 2999 bytes"):
        snapshot(home, GOOD, tmp_path / "b", 2999)
