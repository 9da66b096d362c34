"""Fixtures of the ingestion tests: small hand-made deliveries under ``tmp_path``."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import pytest

from pds_kernel.runtime import Runtime
from pds_kernel.settings import Ingest, Paths, Settings

sys.path.insert(0, str(Path(__file__).parent))

from delivery_factory import make_rows, write_delivery  # noqa: E402


def fresh_runtime(root: Path, **ingest) -> Runtime:
    """A runtime whose paths are all fresh directories under ``root`` (several per test)."""
    paths = Paths(**{f.name: root / f.name for f in fields(Paths)})
    settings = Settings(paths=paths, ingest=Ingest(**ingest))
    return Runtime(settings)


@pytest.fixture
def rows() -> dict:
    return make_rows()


@pytest.fixture
def delivery(tmp_path: Path, rows: dict) -> Path:
    return write_delivery(tmp_path / "delivery", rows)
