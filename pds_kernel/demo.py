"""The demo behind ``make run``: a whole PDS Workspace on one machine, from synthetic data.

Each step uses the real component, in order: generate a synthetic SNDS delivery, ingest it into the
lake, register two projects and six demo accounts, build both projects' extracts, then (in the
CLI) start the local JupyterHub. Everything lives under one directory with its own ``pds.yaml``,
so the demo never touches another configuration.

Re-running is idempotent: the delivery is reused when its parameters match, the ingest manifest
loads nothing twice, the registry is only changed where it drifted (and each change is printed),
an extract is rebuilt only when its spec or the lake changed, and an existing hub account keeps its
password (nothing is rotated silently; ``pds hub account add USER --reset`` does it on purpose).

Passwords are generated here, returned to the caller to be printed once, and never stored in
clear or logged.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from .errors import InvalidInput, NotFound
from .registry import Registry
from .registry.spec import parse_registry
from .runtime import Runtime
from .settings import Settings, check_private_place, load_settings

log = logging.getLogger(__name__)

CONFIG_NAME = "pds.yaml"
#: Written after a delivery is complete: a directory without it is an interrupted generation.
DELIVERY_DONE = ".generated"
MEMBERSHIP_DAYS = 365
PROJECT_YEARS = 3

#: The demo configuration, relative to the demo directory (paths resolve against the file).
DEMO_CONFIG = """\
# PDS Workspace demo configuration, written by `pds demo run`. Paths are relative to this file.
paths:
  raw: raw
  lake: lake
  projects: projects
  outbox: outbox
  staging: staging
  keys: keys
  homes: homes
  state: state
  reports: reports
hub:
  ip: 127.0.0.1
  port: {port}
cli:
  identities:             # the OS user who ran `pds demo run` acts as the demo's administrator
    {os_user}: admin
"""

#: Demo accounts: (user, full name, admin, {project: role}).
DEMO_USERS: tuple[tuple[str, str, bool, dict[str, str]], ...] = (
    ("alice", "Alice (researcher, diabetes-t2)", False, {"diabetes-t2": "researcher"}),
    ("bob", "Bob (researcher, mi-outcomes)", False, {"mi-outcomes": "researcher"}),
    ("carol", "Carol (researcher, both projects)", False,
     {"diabetes-t2": "researcher", "mi-outcomes": "researcher"}),
    ("olga", "Olga (output checker)", False, {"diabetes-t2": "output-checker", "mi-outcomes": "output-checker"}),
    # two independent reviews are required: a second checker, so the demo can approve an export
    ("oscar", "Oscar (output checker)", False, {"diabetes-t2": "output-checker", "mi-outcomes": "output-checker"}),
    ("admin", "Platform administrator", True, {}),
)

#: Demo projects: id -> (title, purpose, extract spec body without the ``project:`` line).
DEMO_PROJECTS: dict[str, tuple[str, str, str]] = {
    "diabetes-t2": (
        "Type 2 diabetes: antidiabetic drug use",
        "Describe treatment pathways and hospital outcomes of people dispensed an antidiabetic drug (ATC A10).",
        """\
include:
  - drug: {atc: [A10]}
tables:
  IR_BEN_R: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
  ER_PRS_F: [EXE_SOI_DTD, PRS_NAT_REF, PRS_PAI_MNT]
  ER_PHA_F: all
  IR_PHA_R: all
  T_MCOaaB: [ETA_NUM, RSA_NUM, DGN_PAL, GRG_GHM]
  T_MCOaaC: [ETA_NUM, RSA_NUM, EXE_SOI_DTD, EXE_SOI_DTF]
  KI_CCI_R: [BEN_DCD_DTE, DCD_CIM_COD]
generalise: {birth_date: year, commune: departement}
quasi_identifiers: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
""",
    ),
    "mi-outcomes": (
        "Outcomes after myocardial infarction",
        "Follow hospital stays with a principal diagnosis of myocardial infarction (ICD-10 I21).",
        """\
include:
  - diagnosis: {icd10: [I21], where: [principal]}
tables:
  IR_BEN_R: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
  T_MCOaaB: [ETA_NUM, RSA_NUM, DGN_PAL, GRG_GHM]
  T_MCOaaC: [ETA_NUM, RSA_NUM, EXE_SOI_DTD, EXE_SOI_DTF]
  ER_PRS_F: [EXE_SOI_DTD, PRS_NAT_REF, PRS_PAI_MNT]
  KI_CCI_R: [BEN_DCD_DTE, DCD_CIM_COD]
generalise: {birth_date: year, commune: departement}
quasi_identifiers: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
""",
    ),
}


@dataclass(frozen=True)
class DemoOptions:
    directory: Path
    patients: int = 2000
    years: tuple[int, int] = (2022, 2023)
    seed: int = 42
    port: int = 8000

    def __post_init__(self) -> None:
        if not 10 <= self.patients <= 10_000_000:
            raise InvalidInput(f"--patients must be between 10 and 10000000, got {self.patients}")
        if not 0 <= self.seed < 2**32:
            raise InvalidInput(f"--seed must be between 0 and {2**32 - 1}, got {self.seed}")
        if not 1024 <= self.port <= 65532:
            raise InvalidInput(f"--port must be between 1024 and 65532 (the hub uses 3 more ports), got {self.port}")


@dataclass
class StepResult:
    """What one step did: ``done`` (changed something), ``reused`` (nothing to do) or ``skipped``."""

    name: str
    status: str
    message: str
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Account:
    """A hub account created by this run: shown once, never kept."""

    user: str
    roles: str
    password: str
    totp_secret: str


Progress = Callable[[str, float | None, float | None], None]
"""``progress(description, completed, total)``: what a step reports while it runs."""


def _quiet(_description: str, _completed: float | None = None, _total: float | None = None) -> None:
    return None


# ---- set-up ------------------------------------------------------------------------------------
def prepare(options: DemoOptions) -> tuple[Path, Settings]:
    """Create the demo directory and its ``pds.yaml`` (kept if present); load the settings."""
    root = options.directory.resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = root / CONFIG_NAME
    if not config.exists():
        config.write_text(DEMO_CONFIG.format(port=options.port, os_user=json.dumps(getpass.getuser())),
                          encoding="utf-8")
    # environ={}: PDS_* variables of the shell (e.g. a production database URL) must not leak in
    settings = load_settings(config, environ={})
    for f in ("raw", "lake", "projects", "outbox", "staging", "homes", "state", "reports"):
        getattr(settings.paths, f).mkdir(parents=True, exist_ok=True)
    return config, settings


# ---- (a) synthetic delivery ------------------------------------------------------------------------
def delivery_dir(settings: Settings, options: DemoOptions) -> Path:
    y0, y1 = options.years
    return settings.paths.raw / f"synthetic-{y0}-{y1}-p{options.patients}-s{options.seed}"


def generate_delivery(settings: Settings, options: DemoOptions, progress: Progress = _quiet) -> StepResult:
    """Write the synthetic delivery once (to a temporary directory renamed when complete)."""
    from .snds.generator import generate

    check_private_place(settings.paths, "raw")  # every person's NIR: never where a workspace reads
    target = delivery_dir(settings, options)
    if (target / DELIVERY_DONE).is_file():
        files = len(list(target.glob("*.csv")))
        return StepResult("delivery", "reused", f"reused the delivery at {target} ({files} files)")
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)  # an interrupted generation (no completion mark)
    partial.mkdir(parents=True)
    progress(f"generating {options.patients} patients", None, None)
    summary = generate(partial, patients=options.patients, years=options.years, seed=options.seed)
    (partial / DELIVERY_DONE).write_text(
        f"patients={options.patients} years={options.years[0]}-{options.years[1]} seed={options.seed}\n")
    os.rename(partial, target)
    files = getattr(summary, "files", None)
    count = len(files) if isinstance(files, dict) else len(list(target.glob("*.csv")))
    return StepResult("delivery", "done", f"generated {count} files for {options.patients} patients at {target}")


# ---- (b) ingestion --------------------------------------------------------------------------------
class _IngestProgress:
    """Adapts the ingest pipeline's per-file progress to one bar over the delivery's bytes."""

    def __init__(self, progress: Progress, total_bytes: int):
        self._progress, self._total, self._done = progress, total_bytes, 0

    def start(self, name: str, total_bytes: int) -> None:
        self._progress(f"ingesting {name}", self._done, self._total)

    def advance(self, name: str, nbytes: int) -> None:
        self._done += nbytes
        self._progress(f"ingesting {name}", self._done, self._total)

    def done(self, result) -> None:
        self._progress(f"ingested {result.name}", self._done, self._total)


def upgrade_database(settings: Settings, _progress: Progress = _quiet) -> StepResult:
    """``pds db upgrade`` of the demo's database (created at the current schema when new)."""
    from .db import make_engine
    from .schema import upgrade

    engine = make_engine(settings.database_url)
    try:
        result = upgrade(engine)
    finally:
        engine.dispose()
    if not result.changed:
        return StepResult("database", "reused", f"schema at revision {result.after}")
    before = "new database" if result.created else (result.before or "created before migrations")
    return StepResult("database", "done", f"schema {before} -> {result.after}")


def ingest(runtime: Runtime, options: DemoOptions, actor: str, progress: Progress = _quiet) -> StepResult:
    """Load the delivery into the lake; the ingest manifest makes a re-run load nothing twice."""
    from .ingest import ingest_delivery

    source = delivery_dir(runtime.settings, options)
    if not (source / DELIVERY_DONE).is_file():
        return StepResult("ingest", "skipped", "there is no complete delivery to ingest")
    total = sum(p.stat().st_size for p in source.iterdir() if p.is_file())
    result = ingest_delivery(runtime, source, actor=actor, progress=_IngestProgress(progress, total))
    files = list(getattr(result, "files", []))
    loaded = sum(1 for f in files if f.status == "loaded")
    refused = [f for f in files if f.status == "refused"]
    quarantined = sum(f.rows_quarantined for f in files)
    report = getattr(result, "report_html", None) or runtime.settings.paths.reports / "report.html"
    lines = [f"refused {f.name}: {f.reason}" for f in refused]
    message = (f"{loaded} file(s) loaded, {len(files) - loaded - len(refused)} already in the lake, "
               f"{quarantined} row(s) quarantined; lake at {runtime.settings.paths.lake}; quality report {report}")
    return StepResult("ingest", "done" if loaded else "reused", message, lines=lines)


# ---- (c) registry and accounts --------------------------------------------------------------------
def build_registry_spec(registry: Registry, today: date) -> dict:
    """The demo registry as a ``projects.yaml`` mapping, given what the registry holds now.

    An unexpired membership keeps its date (so a re-run changes nothing), an expired one is renewed
    for a year, and an administrator's decisions stand: a closed project stays closed and a
    disabled account stays disabled."""
    current: dict[tuple[str, str, str], date] = {}
    existing_projects = {p.id: p for p in registry.projects()}
    for pid in DEMO_PROJECTS:
        if pid in existing_projects:
            for m in registry.members(pid):
                current[(pid, m.user_name, m.role.value)] = m.expires_on
    projects = []
    for pid, (title, purpose, _spec) in DEMO_PROJECTS.items():
        known = existing_projects.get(pid)
        start = known.start_date if known else today - timedelta(days=1)
        end = known.end_date if known and known.end_date >= today + timedelta(days=MEMBERSHIP_DAYS) \
            else today + timedelta(days=365 * PROJECT_YEARS)
        members = []
        for user, _full, _admin, roles in DEMO_USERS:
            if pid in roles:
                expires = current.get((pid, user, roles[pid]))
                if expires is None or expires < today:
                    expires = today + timedelta(days=MEMBERSHIP_DAYS)
                members.append({"user": user, "role": roles[pid], "expires": expires.isoformat()})
        projects.append({
            "id": pid, "title": title, "purpose": purpose, "data_controller": "PDS Workspace demo",
            "approval_ref": f"DEMO-{pid.upper()}", "start": start.isoformat(), "end": end.isoformat(),
            "status": known.status.value if known else "active",  # a closed demo project stays closed
            "disclosure": {"min_cell": 10, "reviews_required": 2},
            "resources": {"cpu": 1, "memory_mb": 2048, "dask_workers": 1},
            "members": members,
        })
    active = {u.name: u.active for u in registry.users()}  # a disabled demo account stays disabled
    users = [{"name": u, "full_name": full, "admin": admin, "active": active.get(u, True)}
             for u, full, admin, _roles in DEMO_USERS]
    return {"users": users, "projects": projects}


def register(runtime: Runtime, actor: str, today: date | None = None) -> StepResult:
    """Make the registry hold the demo projects, users and memberships (each change printed)."""
    registry = Registry.from_runtime(runtime)
    spec = parse_registry(build_registry_spec(registry, today or date.today()), "demo registry")
    changes = registry.apply(actor, spec)
    if not changes:
        return StepResult("registry", "reused", "registry already holds the demo projects and accounts")
    return StepResult("registry", "done", f"{len(changes)} registry change(s)", lines=changes)


def hub_account_exists(settings: Settings, user: str) -> bool:
    """Whether the hub already has a NativeAuthenticator account for ``user`` (read-only)."""
    db = settings.paths.state / "hub" / "jupyterhub.sqlite"
    if not db.is_file():
        return False
    from nativeauthenticator.orm import UserInfo

    from .hub.local import hub_session

    with hub_session(settings) as session:
        return UserInfo.find(session, user) is not None


def create_accounts(runtime: Runtime, actor: str) -> tuple[StepResult, list[Account]]:
    """Create a hub account (generated password and second factor) for each demo user lacking one."""
    try:
        from .hub.local import provision_account
    except ImportError:
        return StepResult("accounts", "skipped", "the hub (pds_kernel.hub, jupyterhub) is not installed"), []
    registry = Registry.from_runtime(runtime)
    created: list[Account] = []
    kept: list[str] = []
    pending: list[str] = []  # registry.membership_approvals: 2 (not the demo's default)
    for user, _full, admin, roles in DEMO_USERS:
        if hub_account_exists(runtime.settings, user):
            kept.append(user)
            continue
        password = secrets.token_urlsafe(12)
        secret = provision_account(runtime.settings, registry, user, password, actor=actor)
        if secret.pending:
            pending.append(user)
        by_role: dict[str, list[str]] = {}
        for pid, role in roles.items():
            by_role.setdefault(role, []).append(pid)
        described = "; ".join([f"{role}: {', '.join(pids)}" for role, pids in by_role.items()]
                              + (["administrator"] if admin else []))
        created.append(Account(user, described, password, secret))
    if not created:
        return StepResult("accounts", "reused",
                          f"hub accounts exist already for {', '.join(kept)} (passwords were shown when they "
                          "were created; `pds --config DIR/pds.yaml hub account add USER --reset` makes new "
                          "ones)"), []
    message = f"{len(created)} hub account(s) created" + (f", {len(kept)} kept" if kept else "")
    if pending:
        message += (f"; {', '.join(pending)} wait for a second administrator (two-person rule): another "
                    "administrator runs pds hub account approve USER")
    return StepResult("accounts", "done", message), created


# ---- (d) extracts -------------------------------------------------------------------------------
def spec_text(project: str, years: tuple[int, int]) -> str:
    y0, y1 = years
    body = DEMO_PROJECTS[project][2]
    return f"project: {project}\nyears: [{', '.join(str(y) for y in range(y0, y1 + 1))}]\n{body}"


def write_specs(root: Path, options: DemoOptions) -> dict[str, Path]:
    """Write each project's extract spec under ``DIR/specs/`` (what an admin would review)."""
    specs = root / "specs"
    specs.mkdir(exist_ok=True)
    paths = {}
    for project in DEMO_PROJECTS:
        path = specs / f"{project}.yaml"
        text = spec_text(project, options.years)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths[project] = path
    return paths


def build_extracts(runtime: Runtime, root: Path, options: DemoOptions, actor: str,
                   progress: Progress = _quiet) -> StepResult:
    """Build each project's extract unless the published one was built from the same spec and lake."""
    from .extract.build import read_manifest, run_build
    from .extract.spec import load_spec
    from .lake import has_lake, snapshot_id

    settings = runtime.settings
    if not has_lake(settings.paths.lake):
        return StepResult("extracts", "skipped", "the lake is empty: nothing to extract from")
    snapshot = snapshot_id(settings.paths.lake)
    lines, built = [], 0
    for project, path in write_specs(root, options).items():
        spec = load_spec(path)
        try:
            manifest = read_manifest(settings, project)
        except (NotFound, InvalidInput, OSError):
            manifest = None
        if manifest and manifest.get("spec_sha256") == spec.sha256 and manifest.get("lake_snapshot") == snapshot:
            lines.append(f"{project}: reused extract {manifest['build_id']} ({manifest['persons']} persons)")
            continue

        def on_step(name: str, project: str = project) -> None:
            progress(f"{project}: {name}", None, None)

        result = run_build(runtime, project, spec, actor=actor, on_step=on_step)
        built += 1
        lines.append(f"{project}: built extract {result.manifest['build_id']} with {result.manifest['persons']} "
                     f"persons at {settings.paths.projects / project / 'extract'}; k-anonymity "
                     f"{result.report.k_status}")
    status = "done" if built else "reused"
    return StepResult("extracts", status, f"{built} extract(s) built, {len(lines) - built} reused", lines=lines)


#: Packages the demo approves, so that a new user can try ``pip install texttable`` in a workspace:
#: small, pure Python, not in the workspace environment (docs/packages.md).
DEMO_PACKAGES: tuple[str, ...] = ("texttable==1.7.0",)


def approve_packages(runtime: Runtime, actor: str, packages: tuple[str, ...] = DEMO_PACKAGES) -> StepResult:
    """Approve :data:`DEMO_PACKAGES` (downloaded from the upstream index, PyPI by default) unless
    they are approved already. Without a connection to the upstream index, or without malware
    signatures for the scan every approved wheel goes through (``freshclam``: docs/packages.md),
    the step says so and the demo goes on: everything else works without them."""
    from .packages.names import parse_requirement
    from .packages.service import PackageRefused, PackageService

    service = PackageService(runtime)
    lines, approved, missing = [], 0, 0
    for text in packages:
        requirement = parse_requirement(text, pinned=True)
        if service.is_approved(requirement.name, requirement.version):
            lines.append(f"{requirement}: approved already")
            continue
        try:
            files = service.approve(actor, str(requirement))
        except (NotFound, InvalidInput, PackageRefused) as exc:  # offline, or no malware signatures here
            missing += 1
            lines.append(f"{requirement}: NOT approved: {exc}")
            continue
        approved += 1
        lines.append(f"{requirement}: approved ({', '.join(f'{f.file} {f.licence}' for f in files)}); "
                     f"try `pip install {requirement.name}` in a workspace terminal")
    status = "skipped" if missing else "done" if approved else "reused"
    return StepResult("packages", status, f"{approved} package(s) approved, {missing} not approved (see below)", lines=lines)


# ---- demo convenience ---------------------------------------------------------------------------
def current_code(settings: Settings, user: str, actor: str) -> str:
    """The current TOTP code of a *demo* account, so the demo works without an authenticator app.

    Refused for any user who is not one of :data:`DEMO_USERS`; audited."""
    import onetimepass
    from nativeauthenticator.orm import UserInfo

    from .audit import AuditEvent
    from .hub.local import hub_session

    if user not in {name for name, *_rest in DEMO_USERS}:
        raise InvalidInput(f"{user} is not a demo account ({', '.join(n for n, *_r in DEMO_USERS)})")
    if not hub_account_exists(settings, user):
        raise NotFound(f"{user} has no hub account yet: run `pds demo run` first")
    with hub_session(settings) as session:
        secret = UserInfo.find(session, user).otp_secret
    runtime = Runtime(settings)
    try:
        runtime.audit.record(AuditEvent(actor=actor, action="demo.code", target=f"user:{user}"))
    finally:
        runtime.close()
    return f"{onetimepass.get_totp(secret):06d}"
