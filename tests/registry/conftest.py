"""Fixtures of the registry tests: the ``pds`` CLI on a temporary pds.yaml (SQLite or PostgreSQL)."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pds_kernel.cli.app import app
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Settings, load_settings


def write_config(settings: Settings, path: Path, identity: str | None = None) -> Path:
    """A pds.yaml equivalent to ``settings`` (absolute paths, same database); with ``identity``,
    the OS user running the tests is mapped to that registry user (``cli.identities``)."""
    data = {"paths": {f.name: str(getattr(settings.paths, f.name)) for f in fields(settings.paths)},
            "database": {"url": settings.database.url},
            "registry": {"membership_approvals": settings.registry.membership_approvals}}
    if identity:
        data["cli"] = {"identities": {getpass.getuser(): identity}}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


#: The unmapped OS user running the tests, as the CLI names it.
OS_ACTOR = f"os:{getpass.getuser()}"


@dataclass
class Cli:
    """Runs ``pds --config <file> ...`` in-process, like a user would: as ``actor`` (a registry user
    the configuration maps the OS user to), or as the unmapped OS user (``actor=None``)."""

    config: Path
    runtime: Runtime

    def __call__(self, *args: str, actor: str | None = None):
        config = self.config
        if actor:
            config = write_config(self.runtime.settings, self.config.with_name(f"pds-{actor}.yaml"), actor)
        return CliRunner().invoke(app, ["--config", str(config), *args])


@pytest.fixture
def cli(db_settings: Settings, tmp_path: Path):
    config = write_config(db_settings, tmp_path / "pds.yaml")
    runtime = Runtime(load_settings(config, environ={}))
    yield Cli(config, runtime)
    runtime.close()


@pytest.fixture
def two_person_cli(db_settings: Settings, tmp_path: Path):
    """:func:`cli` with ``registry.membership_approvals: 2``."""
    settings = replace(db_settings, registry=replace(db_settings.registry, membership_approvals=2))
    config = write_config(settings, tmp_path / "pds.yaml")
    runtime = Runtime(load_settings(config, environ={}))
    yield Cli(config, runtime)
    runtime.close()


REGISTRY_YAML = """\
users:
  - {name: root, full_name: Platform Admin, admin: true}
  - {name: alice, full_name: Alice Martin, email: alice@example.org}
  - {name: bob}
  - {name: olga}
projects:
  - id: diabetes-t2
    title: Type 2 diabetes drug use
    purpose: Describe antidiabetic treatment pathways
    data_controller: Example University Hospital
    approval_ref: CESREES-2025-001
    start: 2025-01-01
    end: 2099-12-31
    disclosure: {min_cell: 11, reviews_required: 2}
    resources: {cpu: 1, memory_mb: 2048, dask_workers: 1}
    members:
      - {user: alice, role: researcher, expires: 2099-06-30}
      - {user: olga, role: output-checker, expires: 2099-06-30}
  - id: mi-outcomes
    title: Outcomes after myocardial infarction
    start: 2025-01-01
    end: 2099-12-31
    members:
      - {user: bob, role: researcher, expires: 2099-06-30}
      - {user: alice, role: researcher, expires: 2099-06-30}
"""


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "projects.yaml"
    path.write_text(REGISTRY_YAML, encoding="utf-8")
    return path
