"""Fixtures of the extract tests: a small hand-built lake and two registered projects."""

from __future__ import annotations

from datetime import date

import pytest
from extract_lake import SmallLake, generate_rows, write_lake

from pds_kernel.registry import Registry


@pytest.fixture(scope="session")
def small_rows() -> dict[str, list[dict]]:
    return generate_rows()


@pytest.fixture
def small_lake(settings, small_rows) -> SmallLake:
    write_lake(settings.paths.lake, small_rows)
    return SmallLake(settings.paths.lake, small_rows)


@pytest.fixture
def registry(runtime) -> Registry:
    reg = Registry.from_runtime(runtime)
    reg.upsert_user("root", "root", is_admin=True)
    reg.upsert_user("root", "alice")
    for pid in ("diab-study", "mi-study"):
        reg.upsert_project("root", pid, title=pid, start_date=date(2024, 1, 1), end_date=date(2099, 12, 31))
        reg.add_member("root", pid, "alice", "researcher", date(2099, 1, 1))
    return reg


