"""Shared fixtures: every test gets its own directories and database under ``tmp_path``."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest

from pds_kernel.runtime import Runtime
from pds_kernel.settings import Paths, Settings


def make_settings(root: Path, **sections) -> Settings:
    """Settings whose every path is a fresh directory under ``root``."""
    paths = Paths(**{f.name: root / f.name for f in fields(Paths)})
    for f in fields(Paths):
        getattr(paths, f.name).mkdir(parents=True, exist_ok=True)
    return replace(Settings(paths=paths), **sections)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "pds")


@pytest.fixture
def runtime(settings: Settings):
    rt = Runtime(settings)
    yield rt
    rt.close()
