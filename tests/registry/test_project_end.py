"""The end of a project through the real services: close starts the retention clock, halt and
resume, a purge approved by two administrators that deletes every area and writes a deletion
certificate, the home quota. SQLite and PostgreSQL (``db_settings``)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, timedelta

import pytest

from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.project_end import ProjectEnd, check_home_quota, purge_areas
from pds_kernel.pseudo import KeyStore
from pds_kernel.registry import Registry, Role
from pds_kernel.runtime import Runtime
from pds_kernel.settings import ProjectEnd as ProjectEndSettings

PROJECT = "end-study"


@pytest.fixture
def world(db_settings):
    runtime = Runtime(replace(db_settings, project_end=ProjectEndSettings(retention_days=0, home_quota_mb=1)))
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)
    registry.upsert_user("root", "ada", is_admin=True)
    registry.upsert_user("root", "alice")
    registry.upsert_project("root", PROJECT, title="End", start_date=date(2020, 1, 1), end_date=date(2099, 1, 1))
    registry.add_member("root", PROJECT, "alice", Role.RESEARCHER, date(2099, 1, 1))
    yield runtime, registry
    runtime.close()


def test_halt_blocks_everything_until_resumed(world):
    runtime, registry = world
    end = ProjectEnd(runtime, registry)
    info = end.halt("root", PROJECT, "suspected breach")
    assert info.halted and not info.is_open(date.today())
    assert not registry.can_access("alice", PROJECT)
    assert [p.id for p in registry.active_projects("alice")] == []
    with pytest.raises(InvalidInput, match="already halted"):
        end.halt("ada", PROJECT, "again")
    assert end.resume("ada", PROJECT, "cleared").is_open(date.today())
    assert registry.can_access("alice", PROJECT)
    assert [(e.action, e.actor) for e in runtime.audit.entries() if e.action.startswith("project.")] == [
        ("project.halt", "root"), ("project.resume", "ada")]


def test_close_starts_the_retention_clock_and_reopening_stops_it(world):
    runtime, registry = world
    assert registry.close_project("root", PROJECT, "ended").closed_on == date.today()
    assert registry.upsert_project("root", PROJECT, status="active").closed_on is None


def test_two_administrators_purge_and_a_certificate_is_written(world):
    runtime, registry = world
    settings = runtime.settings
    KeyStore.from_runtime(runtime).ensure(PROJECT, "root")
    written = {}
    for name, root in purge_areas(settings, PROJECT).items():
        path = root / "sub" / f"{name.replace(' ', '-')}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
        written[name] = (path, hashlib.sha256(name.encode()).hexdigest())
    registry.close_project("root", PROJECT, "permit ended")
    end = ProjectEnd(runtime, registry)
    first = end.purge("root", PROJECT, confirm=True)
    assert not first.done and all(p.is_file() for p, _ in written.values())
    done = end.purge("ada", PROJECT, confirm=True)
    assert done.done
    for name, (path, digest) in written.items():
        assert not path.exists()
        area = done.certificate["areas"][name]
        assert area["files"] >= 1 and digest in area["sha256"].values(), name
    assert not KeyStore.from_runtime(runtime).exists(PROJECT)
    [certificate] = runtime.audit.entries(action="project.purge")
    assert certificate.details["certificate"]["approved_by"] == ["root", "ada"]
    assert certificate.details["certificate"]["key"]["existed"] is True
    assert registry.get_project(PROJECT).purged
    with pytest.raises(InvalidInput, match="already purged"):
        end.purge("root", PROJECT, confirm=True)
    with pytest.raises(InvalidInput, match="purged"):
        registry.upsert_project("root", PROJECT, status="active")
    assert runtime.audit.verify().ok


def test_a_researcher_cannot_halt_or_purge(world):
    runtime, registry = world
    end = ProjectEnd(runtime, registry)
    with pytest.raises(PermissionDenied, match="only a platform administrator"):
        end.halt("alice", PROJECT, "mine")
    registry.close_project("root", PROJECT, "ended")
    with pytest.raises(PermissionDenied, match="only platform administrators"):
        end.purge("alice", PROJECT, confirm=True)
    assert [e.outcome for e in runtime.audit.entries() if e.action.startswith("project.")] == ["denied", "denied"]


def test_the_purge_waits_for_the_retention_period(world):
    runtime, registry = world
    registry.close_project("root", PROJECT, "ended")
    late = Runtime(replace(runtime.settings, project_end=ProjectEndSettings(retention_days=30)))
    try:
        with pytest.raises(PermissionDenied, match=f"purge it from {date.today() + timedelta(days=30)}"):
            ProjectEnd(late).purge("root", PROJECT, confirm=True)
    finally:
        late.close()


def test_a_home_over_its_quota_is_refused(world, tmp_path):
    runtime, _ = world
    home = tmp_path / "home"
    home.mkdir()
    (home / "small").write_bytes(b"x" * 1000)
    check_home_quota(runtime.settings, home)
    (home / "big").write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(PermissionDenied, match="over its limit of 1 MB"):
        check_home_quota(runtime.settings, home)


def test_running_homes_over_the_quota_are_found(world, tmp_path):
    from dataclasses import replace as _replace

    from pds_kernel.project_end import homes_over_quota

    runtime, _ = world
    settings = _replace(runtime.settings, paths=_replace(runtime.settings.paths, homes=tmp_path))
    (tmp_path / "p1" / "alice").mkdir(parents=True)
    (tmp_path / "p1" / "alice" / "big").write_bytes(b"x" * (1024 * 1024 + 1))
    (tmp_path / "p2" / "alice").mkdir(parents=True)
    over = homes_over_quota(settings, {"alice": ["p1", "p2"], "bob": ["p1"]})
    assert [(u, p) for u, p, _ in over] == [("alice", "p1")]
    assert "over its limit of 1 MB" in over[0][2]
