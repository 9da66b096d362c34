"""Same arguments, same bytes; another seed, another delivery."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pds_kernel.snds.generator import generate


def _digests(path: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())}


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    args = dict(patients=400, years=(2023, 2023))
    first = generate(tmp_path / "a", seed=5, **args)
    second = generate(tmp_path / "b", seed=5, **args)
    other = generate(tmp_path / "c", seed=6, **args)

    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert a == b
    assert first == second
    assert set(a) == set(c)  # same files...
    differing = {name for name in a if a[name] != c[name]}
    assert differing >= {"IR_BEN_R.csv", "ER_PRS_F_202306.csv", "ER_PHA_F_202306.csv"}  # ...other people
    assert {n for n in a if n.startswith("ER_PRS_F")} <= differing
    assert "IR_PHA_R.csv" not in differing  # the drug referential is the same for every seed
    assert other.patients == 400


def test_rerun_into_the_same_directory_replaces_files_and_leaves_no_partial_file(tmp_path):
    generate(tmp_path, patients=100, years=(2023, 2023), seed=1)
    before = _digests(tmp_path)
    generate(tmp_path, patients=100, years=(2023, 2023), seed=1)
    assert _digests(tmp_path) == before
    assert not list(tmp_path.glob("*.part"))
