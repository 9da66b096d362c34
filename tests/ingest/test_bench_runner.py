"""The benchmark runner keeps working: ``python -m bench --quick --only ingest`` into a temp dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _quick(tmp_path, name: str) -> str:
    """``python -m bench --quick --only NAME``: its results page (the run must succeed)."""
    results = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", name,
                           "--out", str(tmp_path / "scratch"), "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return results.read_text()


@pytest.mark.slow
def test_bench_runner_quick_ingest(tmp_path):
    text = _quick(tmp_path, "ingest")
    assert "Ingestion: CSV → Parquet lake vs DuckDB" in text
    assert "DuckDB COPY" in text and "MB/s" in text and "peak memory" in text
    assert "Machine:" in text
    cpu = next(line for line in text.splitlines() if line.startswith("| CPU time (median) |"))
    ours, duck = (float(cell) for cell in (cpu.split("|")[2], cpu.split("|")[5]))
    assert ours > 0 and duck > 0 and "cores kept busy" in cpu  # measured, each side's own


@pytest.mark.slow
def test_bench_runner_quick_extract(tmp_path):
    """The extract benchmark against DuckDB: both sides must give the same rows (the runner fails
    otherwise), so a change to what an extract holds (its keyed record numbers) reaches the peer."""
    text = _quick(tmp_path, "extract")
    assert "**Failed**" not in text and "same rows and values on both sides" in text, text[-2000:]
