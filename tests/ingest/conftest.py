"""Fixtures of the ingestion tests: small hand-made deliveries under ``tmp_path``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from delivery_factory import fresh_runtime, make_rows, write_delivery  # noqa: F401


@pytest.fixture
def rows() -> dict:
    return make_rows()


@pytest.fixture
def delivery(tmp_path: Path, rows: dict) -> Path:
    return write_delivery(tmp_path / "delivery", rows)
