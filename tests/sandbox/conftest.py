"""Fixtures of the sandbox tests: a registry with two projects and small extracts, plus the
things a sandbox must never see (the lake, the key store, staging, outbox, the database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from published import publish_by_hand

from pds_kernel.registry import Registry


@dataclass
class World:
    runtime: object
    registry: Registry
    secret_files: dict[str, Path]  # what must stay invisible from the sandbox of alice in proj-a


def _write_table(path: Path, rows: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({
        "person": [f"p{seed}-{i % 7}" for i in range(rows)],
        "amount": [float(i * seed) for i in range(rows)],
        "year": [2020 + i % 3 for i in range(rows)],
    }).write_parquet(path)


@pytest.fixture
def world(runtime) -> World:
    """proj-a (alice, and carol whose membership expired), proj-b (bob), small extracts."""
    settings = runtime.settings
    registry = Registry.from_runtime(runtime)
    today = date.today()
    for name in ("alice", "bob", "carol", "dave"):
        registry.upsert_user("admin", name)
    for project in ("proj-a", "proj-b"):
        registry.upsert_project("admin", project, title=project, start_date=today - timedelta(days=30),
                                end_date=today + timedelta(days=300), mem_limit_mb=1024,
                                cpu_limit=1.0, dask_workers=2)
        _write_table(settings.paths.projects / project / "extract" / "ER_PRS_F.parquet", 60,
                     seed=1 if project == "proj-a" else 2)
        publish_by_hand(runtime, project)
    registry.add_member("admin", "proj-a", "alice", "researcher", today + timedelta(days=100))
    registry.add_member("admin", "proj-a", "carol", "researcher", today - timedelta(days=1))
    registry.add_member("admin", "proj-b", "bob", "researcher", today + timedelta(days=100))

    secrets = {
        "other project's extract": settings.paths.projects / "proj-b" / "extract" / "ER_PRS_F.parquet",
        "lake": settings.paths.lake / "ER_PRS_F" / "month=202001" / "flux.parquet",
        "key store": settings.paths.keys / "proj-a.key",
        "staging": settings.paths.staging / "proj-a" / "req-1" / "table.csv",
        "outbox": settings.paths.outbox / "proj-a" / "req-0" / "table.csv",
        "raw delivery": settings.paths.raw / "ER_PRS_F_2020.csv",
        "other user's home": settings.paths.homes / "proj-b" / "bob" / "notes.txt",
        "database": Path(settings.database_url.removeprefix("sqlite:///")),
        # the hub's own state, by the names the local hub gives it
        "hub database": settings.paths.state / "hub" / "jupyterhub.sqlite",
        "hub cookie secret": settings.paths.state / "hub" / "jupyterhub_cookie_secret",
        "hub sync token": settings.paths.state / "hub" / "pds-sync.token",
        "gate cookie secret": settings.paths.state / "hub" / "airlock_cookie_secret",
    }
    _write_table(secrets["lake"], 10, seed=3)
    for label in ("key store", "staging", "outbox", "raw delivery", "other user's home", "hub database",
                  "hub cookie secret", "hub sync token", "gate cookie secret"):
        secrets[label].parent.mkdir(parents=True, exist_ok=True)
        secrets[label].write_text(f"secret {label}\n")
    assert secrets["database"].is_file()
    return World(runtime, registry, secrets)
