"""Streaming: peak memory does not grow with the number of months generated."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import resource, sys
from pathlib import Path
from pds_kernel.snds.generator import generate
summary = generate(Path(sys.argv[1]), patients=6000, years=(int(sys.argv[2]), 2023), seed=3)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, summary.rows("ER_PRS_F"))
"""


def _peak_kb(out, first_year: int) -> tuple[int, int]:
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(out), str(first_year)],
                            capture_output=True, text=True, timeout=300, check=True)
    peak, rows = result.stdout.split()
    return int(peak), int(rows)


@pytest.mark.slow
def test_four_years_need_about_the_memory_of_one(tmp_path):
    one_peak, one_rows = _peak_kb(tmp_path / "one", 2023)
    four_peak, four_rows = _peak_kb(tmp_path / "four", 2020)
    assert four_rows > 3.5 * one_rows
    assert four_peak < 1.25 * one_peak, (one_peak, four_peak)
