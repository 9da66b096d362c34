"""``pds snds``: the real command, run as a user would; mistakes give one line and a non-zero code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PDS = Path(sys.executable).with_name("pds")


def pds(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(PDS), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_generate_writes_a_delivery_and_prints_a_summary(tmp_path):
    result = pds("snds", "generate", "--out", "out", "--patients", "60", "--years", "2023", "--seed", "4",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ER_PRS_F" in result.stdout and "total" in result.stdout
    assert (tmp_path / "out" / "IR_BEN_R.csv").is_file()
    assert len(list((tmp_path / "out").glob("ER_PRS_F_2023??.csv"))) == 12


@pytest.mark.parametrize("years", ["2024-2023", "23-24"])
def test_bad_years_are_one_line_errors(tmp_path, years):
    result = pds("snds", "generate", "--out", "out", "--years", years, cwd=tmp_path)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "years" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_non_empty_directory_is_refused_unless_forced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "ER_PRS_F_201901.csv").write_text("stale")
    result = pds("snds", "generate", "--out", "out", "--patients", "30", "--years", "2023", cwd=tmp_path)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "not empty" in result.stderr
    assert not (out / "IR_BEN_R.csv").exists()

    forced = pds("snds", "generate", "--out", "out", "--patients", "30", "--years", "2023", "--force",
                 cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (out / "notes.txt").read_text() == "mine"  # not a delivery file: kept
    assert not (out / "ER_PRS_F_201901.csv").exists()  # a stale delivery file: replaced
    assert (out / "IR_BEN_R.csv").is_file()


def test_tables_lists_the_profile(tmp_path):
    result = pds("snds", "tables", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("IR_BEN_R", "ER_PRS_F", "T_MCOaaC", "KI_CCI_R"):
        assert name in result.stdout
    one = pds("snds", "tables", "ER_PHA_F", cwd=tmp_path)
    assert one.returncode == 0 and "PHA_PRS_C13" in one.stdout
    unknown = pds("snds", "tables", "NOPE", cwd=tmp_path)
    assert unknown.returncode != 0 and "NOPE" in unknown.stderr
