"""Support of the identity attacks: a registry and airlock world on a fresh database, and the real
``pds`` command run in a subprocess by the OS user running the tests, mapped (or not) to a registry
user by its configuration (``cli.identities``)."""

from __future__ import annotations

import getpass
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))

from hubfixtures import PASSWORD, Hub, free_port_block, make_world  # noqa: F401  (re-exported)
from hubfixtures import PROJECT as HUB_PROJECT  # noqa: F401

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.registry import Registry, Role
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Paths, load_settings
from tests.conftest import TEST_PASSWORD_COST

PROJECT = "ident-study"
PDS = str(Path(sys.executable).with_name("pds"))
TABLE = b"age,count\n18-40,120\n40-65,230\n65+,310\n"


@dataclass
class World:
    root: Path
    config: Path
    runtime: Runtime
    registry: Registry

    def service(self) -> AirlockService:
        return AirlockService(self.runtime, limits=replace(AirlockLimits(), auto_release=False),
                              registry=self.registry)

    def pds(self, *args: str, user: str | None = None, env: dict[str, str] | None = None,
            retention_days: int | None = None) -> subprocess.CompletedProcess:
        """The real ``pds`` run by this OS user, mapped to ``user`` (None: unmapped, ``os:<user>``)."""
        data = yaml.safe_load(self.config.read_text())
        if user:
            data["cli"] = {"identities": {getpass.getuser(): user}}
        if retention_days is not None:
            data["project_end"] = {"retention_days": retention_days}
        config = self.root / f"pds-{user or 'unmapped'}-{retention_days}.yaml"
        config.write_text(yaml.safe_dump(data))
        base = {k: v for k, v in os.environ.items() if not k.startswith("PDS_")}
        return subprocess.run([PDS, "--config", str(config), *args], capture_output=True, text=True,
                              env={**base, "COLUMNS": "300", **(env or {})}, timeout=180)

    def actions(self, action: str) -> list:
        return self.runtime.audit.entries(action=action)


def make_identity_world(root: Path, retention_days: int = 30) -> World:
    """Two administrators (root, ada), a researcher (alice), two checkers (olga, omar)."""
    paths = {f.name: str(root / f.name) for f in fields(Paths)}
    config = root / "pds.yaml"
    config.write_text(yaml.safe_dump({"paths": paths, "project_end": {"retention_days": retention_days},
                                      "hub": {"password_cost": TEST_PASSWORD_COST}}))
    runtime = Runtime(load_settings(config, environ={}))
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)  # the bootstrap: the first administrator
    registry.upsert_user("root", "ada", is_admin=True)
    for name in ("alice", "olga", "omar"):
        registry.upsert_user("root", name)
    far = date(2099, 12, 31)
    registry.upsert_project("root", PROJECT, title="Identity study", start_date=date(2020, 1, 1), end_date=far)
    registry.add_member("root", PROJECT, "alice", Role.RESEARCHER, far)
    registry.add_member("root", PROJECT, "olga", Role.OUTPUT_CHECKER, far)
    registry.add_member("root", PROJECT, "omar", Role.OUTPUT_CHECKER, far)
    return World(root, config, runtime, registry)


def submitted(world: World) -> str:
    """A request of alice's, submitted through the real service."""
    view = world.service().create("alice", PROJECT, [("ages.csv", io.BytesIO(TABLE))], "paper figure 2")
    return view.id


def approved(world: World) -> str:
    """A request approved by olga and omar (not released: auto_release is off)."""
    request_id = submitted(world)
    service = world.service()
    for checker in ("olga", "omar"):
        service.review(checker, request_id, {0: {"decision": "approve"}})
    return request_id


def fill_project_data(world: World) -> dict[str, Path]:
    """A file in every area a purge deletes."""
    paths = world.runtime.settings.paths
    made = {
        "extract": paths.projects / PROJECT / "extract" / "ER_PRS_F.parquet",
        "imports": paths.projects / PROJECT / "imports" / "r1" / "codes.csv",
        "homes": paths.homes / PROJECT / "alice" / "analysis.ipynb",
        "staging": paths.staging / PROJECT / ("a" * 32) / "f0",
        "outbox": paths.outbox / PROJECT / ("b" * 32) / "ages.csv",
        "key backups": paths.keys / "backups" / PROJECT / "key.bak",
    }
    for name, path in made.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{name} bytes\n".encode())
    return made


def wait_for(predicate, timeout: float = 60, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not reached")
