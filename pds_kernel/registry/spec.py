"""The declarative registry file (``projects.yaml``), as Helm values feed it in production.

```yaml
users:
  - {name: alice, full_name: Alice Martin, email: alice@example.org}
  - {name: root, admin: true}
projects:
  - id: diabetes-2024
    title: Type 2 diabetes drug use
    purpose: ...
    data_controller: ...
    approval_ref: CESREES-2024-017
    start: 2024-01-01
    end: 2027-12-31
    status: active                 # active | suspended | closed
    disclosure: {min_cell: 10, reviews_required: 2, max_table_rows: 5000}
    resources: {cpu: 2, memory_mb: 4096, dask_workers: 2, gpu: false}
    members:
      - {user: alice, role: researcher, expires: 2026-12-31}
      - {user: olga, role: output-checker, expires: 2026-12-31}
```
Parsing is pure and strict: an unknown key, a bad date or a bad name is an error naming where.
What needs the whole file and the registry (members naming known users, memberships within their
project's dates, nothing listed twice) is :func:`validate_registry_spec`, which
:meth:`Registry.apply` runs inside its single transaction before writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidInput
from ..settings import check_quorum
from ..validate import check_mapping
from ..validate import parse_date as _date
from .models import ProjectStatus, Role
from .names import check_project_id, check_user_name


@dataclass(frozen=True)
class UserSpec:
    name: str
    full_name: str = ""
    email: str = ""
    admin: bool = False
    active: bool = True


@dataclass(frozen=True)
class MemberSpec:
    user: str
    role: str
    expires: date


@dataclass(frozen=True)
class ProjectSpec:
    id: str
    title: str
    start: date
    end: date
    purpose: str = ""
    data_controller: str = ""
    approval_ref: str = ""
    status: str = "active"
    min_cell: int | None = None
    reviews_required: int | None = None
    max_table_rows: int | None = None
    cpu: float = 2.0
    memory_mb: int = 4096
    dask_workers: int = 2
    gpu: bool = False
    members: tuple[MemberSpec, ...] = ()

    def fields(self) -> dict[str, Any]:
        return dict(
            title=self.title, purpose=self.purpose, data_controller=self.data_controller,
            approval_ref=self.approval_ref, start_date=self.start, end_date=self.end,
            status=self.status, min_cell=self.min_cell, reviews_required=self.reviews_required,
            max_table_rows=self.max_table_rows,
            cpu_limit=self.cpu, mem_limit_mb=self.memory_mb, dask_workers=self.dask_workers,
            gpu=self.gpu,
        )


@dataclass(frozen=True)
class RegistrySpec:
    users: tuple[UserSpec, ...] = ()
    projects: tuple[ProjectSpec, ...] = field(default_factory=tuple)
    origin: str = "registry"  #: where it was read from (a file name), for error messages


def _int(where: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{where}: expected an integer ≥ {minimum}, got {value!r}")
    return value


def _quorum(where: str, value: Any) -> int | None:
    check_quorum(value, where)
    return value


def parse_registry(data: Any, origin: str = "registry") -> RegistrySpec:
    data = check_mapping(origin, data or {}, {"users", "projects"})
    users = []
    for i, raw in enumerate(data.get("users") or []):
        where = f"{origin}: users[{i}]"
        raw = check_mapping(where, raw, {"name", "full_name", "email", "admin", "active"}, {"name"})
        check_user_name(raw["name"])
        users.append(UserSpec(name=raw["name"], full_name=str(raw.get("full_name", "")),
                              email=str(raw.get("email", "")), admin=bool(raw.get("admin", False)),
                              active=bool(raw.get("active", True))))
    projects = []
    seen = set()
    for i, raw in enumerate(data.get("projects") or []):
        where = f"{origin}: projects[{i}]"
        raw = check_mapping(where, raw, {"id", "title", "purpose", "data_controller", "approval_ref", "start",
                                 "end", "status", "disclosure", "resources", "members"},
                    {"id", "title", "start", "end"})
        pid = check_project_id(raw["id"])
        if pid in seen:
            raise InvalidInput(f"{where}: project {pid} is listed twice")
        seen.add(pid)
        where = f"{origin}: project {pid}"
        status = str(raw.get("status", "active"))
        if status not in {s.value for s in ProjectStatus}:
            raise InvalidInput(f"{where}: status {status!r} is not one of active, suspended, closed")
        disclosure = check_mapping(f"{where}.disclosure", raw.get("disclosure") or {},
                                   {"min_cell", "reviews_required", "max_table_rows"})
        resources = check_mapping(f"{where}.resources", raw.get("resources") or {},
                          {"cpu", "memory_mb", "dask_workers", "gpu"})
        members = []
        for j, m in enumerate(raw.get("members") or []):
            mwhere = f"{where}.members[{j}]"
            m = check_mapping(mwhere, m, {"user", "role", "expires"}, {"user", "role", "expires"})
            check_user_name(m["user"])
            if m["role"] not in {Role.RESEARCHER.value, Role.OUTPUT_CHECKER.value}:
                raise InvalidInput(f"{mwhere}: role {m['role']!r} is not researcher or output-checker")
            members.append(MemberSpec(m["user"], m["role"], _date(f"{mwhere}.expires", m["expires"])))
        cpu = resources.get("cpu", 2.0)
        if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or not 0 < cpu <= 64:
            raise InvalidInput(f"{where}.resources.cpu: expected a number of cores in (0, 64]")
        projects.append(ProjectSpec(
            id=pid, title=str(raw["title"]), purpose=str(raw.get("purpose", "")),
            data_controller=str(raw.get("data_controller", "")), approval_ref=str(raw.get("approval_ref", "")),
            start=_date(f"{where}.start", raw["start"]), end=_date(f"{where}.end", raw["end"]), status=status,
            min_cell=_int(f"{where}.disclosure.min_cell", disclosure["min_cell"], 1) if "min_cell" in disclosure else None,
            reviews_required=_quorum(f"{where}.disclosure.reviews_required", disclosure.get("reviews_required")),
            max_table_rows=_int(f"{where}.disclosure.max_table_rows", disclosure["max_table_rows"], 1)
            if "max_table_rows" in disclosure else None,
            cpu=float(cpu), memory_mb=_int(f"{where}.resources.memory_mb", resources.get("memory_mb", 4096), 256),
            dask_workers=_int(f"{where}.resources.dask_workers", resources.get("dask_workers", 2), 0),
            gpu=bool(resources.get("gpu", False)), members=tuple(members),
        ))
    return RegistrySpec(users=tuple(users), projects=tuple(projects), origin=origin)


def _fits(where: str, **fields: tuple[str, int]) -> None:
    """Text fields fit their database columns (PostgreSQL would refuse them in the middle of a write)."""
    for name, (value, limit) in fields.items():
        if len(value) > limit:
            raise InvalidInput(f"{where}.{name}: at most {limit} characters, got {len(value)}")


def validate_registry_spec(spec: RegistrySpec, existing_users: set[str]) -> None:
    """Refuse a spec that cannot be written whole, before anything is written.

    :func:`parse_registry` checks each item alone; this checks what needs the whole file and the
    registry: every member names a user that the spec lists or ``existing_users`` holds, no
    membership outlives its project, no project ends before it starts, nothing is listed twice.
    Names, roles and statuses are checked again so that a spec built in code gets the same rules.
    :meth:`Registry.apply` calls it inside its transaction, so every caller gets it.
    """
    origin = spec.origin
    seen_users: set[str] = set()
    for i, u in enumerate(spec.users):
        check_user_name(u.name)
        _fits(f"{origin}: users[{i}]", full_name=(u.full_name, 200), email=(u.email, 200))
        if u.name in seen_users:
            raise InvalidInput(f"{origin}: users[{i}]: user {u.name} is listed twice")
        seen_users.add(u.name)
    known = existing_users | seen_users
    seen_projects: set[str] = set()
    for p in spec.projects:
        check_project_id(p.id)
        where = f"{origin}: project {p.id}"
        if p.id in seen_projects:
            raise InvalidInput(f"{where}: listed twice")
        seen_projects.add(p.id)
        _fits(where, title=(p.title, 300), data_controller=(p.data_controller, 300),
              approval_ref=(p.approval_ref, 200))
        if p.status not in {s.value for s in ProjectStatus}:
            raise InvalidInput(f"{where}: status {p.status!r} is not one of active, suspended, closed")
        if p.end < p.start:
            raise InvalidInput(f"{where}: end {p.end} is before start {p.start}")
        seen_members: set[tuple[str, str]] = set()
        for j, m in enumerate(p.members):
            mwhere = f"{where}.members[{j}]"
            check_user_name(m.user)
            if m.role not in {Role.RESEARCHER.value, Role.OUTPUT_CHECKER.value}:
                raise InvalidInput(f"{mwhere}: role {m.role!r} is not researcher or output-checker")
            if (m.user, m.role) in seen_members:
                raise InvalidInput(f"{mwhere}: {m.user} is listed twice as {m.role}")
            seen_members.add((m.user, m.role))
            if m.user not in known:
                raise InvalidInput(f"{mwhere}: no user {m.user!r}: list it under users or create it first")
            if m.expires > p.end:
                raise InvalidInput(f"{mwhere}: membership until {m.expires} outlives the project (ends {p.end})")


class _PlainDatesLoader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps: ``2025-13-01`` stays text, so the parser can say which
    field holds the bad date instead of PyYAML failing with a bare ValueError."""


_PlainDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_registry_file(path: Path) -> RegistrySpec:
    """Read and validate a registry file; every error names the file and the place in it."""
    if not path.is_file():
        raise InvalidInput(f"registry file {path} does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_PlainDatesLoader)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None
    return parse_registry(data, str(path))
