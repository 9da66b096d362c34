"""One settings object, read once at the entry point and passed down.

Sources, later ones winning:

1. built-in defaults (below, documented in ``pds.yaml`` at the repository root);
2. the YAML file named by ``--config`` or ``$PDS_CONFIG`` (default ``./pds.yaml`` if it exists);
3. environment variables ``PDS_<SECTION>__<KEY>`` (e.g. ``PDS_PATHS__LAKE=/srv/lake``,
   ``PDS_DATABASE__URL=postgresql+psycopg://...``).

Relative paths are resolved against the directory of the config file (or the working directory
when there is none). Nothing here mutates global state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidInput, PermissionDenied

ENV_PREFIX = "PDS_"


@dataclass(frozen=True)
class Paths:
    """Where things live on disk. Each one is a directory."""

    raw: Path = Path("var/raw")  #: incoming SNDS deliveries (CSV)
    lake: Path = Path("var/lake")  #: typed Parquet, partitioned by table and month
    projects: Path = Path("var/projects")  #: projects/<id>/extract, read-only extracts
    outbox: Path = Path("var/outbox")  #: outbox/<project>/<request>/ released files
    staging: Path = Path("var/staging")  #: airlock staging area (immutable copies)
    keys: Path = Path("var/keys")  #: per-project pseudonymisation keys (never in an extract)
    homes: Path = Path("var/homes")  #: private home per (user, project)
    state: Path = Path("var/state")  #: hub state, sockets, the default SQLite database
    reports: Path = Path("var/reports")  #: ingestion quality reports
    imports: Path = Path("var/imports")  #: imports/<project>/<request>/ approved imports (read-only in workspaces)
    ttp: Path = Path("var/ttp")  #: the trusted third party's NIR correspondence (never in a workspace)
    packages: Path = Path("var/packages")  #: the approved wheels served by the package index


#: Places workspaces, reviewers or the package index read: the key store is never inside one.
_EXPOSED_PATHS = ("projects", "homes", "imports", "staging", "outbox", "packages")
#: What they must never hold: the keys, the lake (every raw identifier; quarantined lines), the
#: deliveries, the quality reports (they quote quarantined lines), the trusted third party's NIRs.
PRIVATE_PATHS = ("keys", "lake", "raw", "reports", "ttp")


def check_private_place(paths, name: str) -> None:
    """Refuse ``paths.<name>`` (one of :data:`PRIVATE_PATHS`) inside, or equal to, a directory a
    workspace mounts or a reviewer reads: the first write would put identifying data where a
    project can read it."""
    check_not_exposed(paths, Path(getattr(paths, name)), f"paths.{name} ({getattr(paths, name)})")


def check_not_exposed(paths, place: Path, what: str, advice: str = "move it out (settings)") -> None:
    """Refuse ``place`` (identifying data: ``what`` names it in the message, ``advice`` says what to
    do) when it is inside, or equal to, one of the directories workspaces mount or reviewers read
    (:data:`_EXPOSED_PATHS`)."""
    private = Path(place).resolve()
    for exposed_name in _EXPOSED_PATHS:
        exposed = Path(getattr(paths, exposed_name)).resolve()
        if private == exposed or private.is_relative_to(exposed):
            raise PermissionDenied(f"{what} is inside paths.{exposed_name} ({exposed}), which workspaces or "
                                   f"reviewers read: {advice}")


@dataclass(frozen=True)
class Database:
    """The registry, the airlock and the audit trail share one database so that a state change
    and its audit entry commit in one transaction. Empty url = SQLite under ``paths.state``."""

    url: str = ""


@dataclass(frozen=True)
class Audit:
    """Where the audit trail keeps what the database must not hold (docs/audit.md).

    Empty paths mean the local defaults under ``paths.state``; in Kubernetes the chart points
    ``key_file`` at the mounted ``pds-audit-key`` Secret and ``anchor_file`` at the anchor volume.
    """

    #: HMAC keyring of the chain (keys of 32 random bytes, hex, one a line: :mod:`.audit_key`);
    #: "" = <state>/secrets/audit.key; ``env:NAME`` =
    #: from that environment variable (only for a pod that cannot mount the Secret: dask-gateway)
    key_file: str = ""
    anchor_file: str = ""  #: append-only anchors of the chain head; "" = <state>/audit/anchors.jsonl
    create_key: bool = True  #: create the key (0600) on first use if missing; false in production


@dataclass(frozen=True)
class Ingest:
    encoding: str = "latin-1"  #: text encoding of delivery CSV files
    batch_rows: int = 50_000  #: rows per streamed batch and Parquet row group (memory bound of one worker)
    #: days a replaced file stays readable in the earlier versions of its table (pds lake expire)
    version_retention_days: int = 365
    #: the earliest year a delivered file may name (``ER_UCD_F_199912.csv`` is refused with the
    #: default); the latest is the year after today's (pds_kernel.snds.periods)
    earliest_year: int = 2000


@dataclass(frozen=True)
class Thresholds:
    """Disclosure thresholds of one project: the one definition, read by the settings
    (``disclosure`` section, platform defaults) and passed explicitly to the checks
    (:mod:`pds_kernel.airlock.checks`) and to :mod:`pds_kernel.sdc` (never a module global)."""

    min_cell: int = 10  #: small-cell threshold (distinct persons); per-project override in registry
    dominance_n: int = 2  #: dominance rule: top n contributors...
    dominance_k: float = 90.0  #: ...must not exceed k % of the cell total
    p_ratio: float = 10.0  #: p-percent rule, in %
    min_dof: int = 10  #: minimum residual degrees of freedom of a model
    max_table_rows: int = 5_000  #: rows of one table file (pre-gate); per-project override in registry

    @classmethod
    def for_project(cls, disclosure: Thresholds, min_cell: int | None = None,
                    max_table_rows: int | None = None) -> Thresholds:
        """The platform's thresholds with a project's overrides (None = platform default)."""
        base = {f.name: getattr(disclosure, f.name) for f in fields(Thresholds)}
        if min_cell:
            base["min_cell"] = min_cell
        if max_table_rows:
            base["max_table_rows"] = max_table_rows
        return cls(**base)


#: The fewest independent reviews an export needs, whatever the configuration says: the gate's
#: promise is two. A project's override and the platform's setting may ask for more, never fewer
#: (one administrator sets both alone; tests/security/test_redteam12_quorum.py).
MIN_REVIEWS = 2


def check_quorum(value: object, where: str) -> None:
    """Refuse a review quorum below :data:`MIN_REVIEWS` (None: not set, the default applies)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < MIN_REVIEWS):
        raise InvalidInput(f"{where} must be at least {MIN_REVIEWS}, got {value!r}: every export needs "
                           f"{MIN_REVIEWS} independent reviews by output checkers of its project; ask for "
                           "more if the project needs them, never fewer")


@dataclass(frozen=True)
class Disclosure(Thresholds):
    """The platform's disclosure defaults: the thresholds, and the review quorum."""

    reviews_required: int = MIN_REVIEWS  #: independent reviews before approval (per-project override)

    def __post_init__(self) -> None:
        check_quorum(self.reviews_required, "setting disclosure.reviews_required")


def is_socket_path(value: str) -> bool:
    """An absolute path of printable characters and no blank: safe as a line of a configuration."""
    return value.startswith("/") and value.isprintable() and not any(c.isspace() for c in value)


@dataclass(frozen=True)
class Airlock:
    """Limits of export requests (see ``pds_kernel.airlock.limits``)."""

    max_files: int = 20  #: files in one request
    max_file_bytes: int = 50 * 1024 * 1024  #: size of one file
    max_total_bytes: int = 100 * 1024 * 1024  #: size of all files of one request
    allowed_extensions: str = ""  #: comma-separated (".csv,.png"); empty = every known type
    auto_release: bool = True  #: release as soon as the last required review approves
    stale_release_seconds: int = 600  #: a release claim older than this may be taken over
    # imports (files brought into a workspace through the gate: pds_kernel/airlock/imports_scan.py)
    import_max_file_bytes: int = 100 * 1024 * 1024  #: size of one imported file, in bytes
    import_max_members: int = 2_000  #: files listed in one imported archive
    import_max_unpacked_bytes: int = 500 * 1024 * 1024  #: what one archive unpacks to, in bytes
    import_max_ratio: int = 200  #: unpacked size / packed size of an archive or member (zip bombs)
    clamscan: str = "clamscan"  #: the ClamAV scanner (Debian package clamav)
    clamav_database: str = ""  #: signature directory; "" = ClamAV's default (/var/lib/clamav, freshclam)
    clamscan_timeout_seconds: int = 300  #: a scan that takes longer refuses the file
    #: the socket of a running clamd (signatures loaded once, pds_kernel.airlock.clamav); "" = clamscan per scan
    clamd_socket: str = ""
    clamdscan: str = "clamdscan"  #: clamd's client (Debian package clamdscan), used with clamd_socket
    import_concurrent_scans: int = 2  #: imports staged and scanned at once (one per user; past it: 503)
    import_max_bytes_per_day: int = 1024 * 1024 * 1024  #: what one user's imports stage in 24 hours, in bytes
    export_max_bytes_per_day: int = 1024 * 1024 * 1024  #: what one user's export requests stage in 24 hours, in bytes
    #: where the gate rebuilds submitted tables and figures (docs/adr/0010-release-rebuilt-copies.md):
    #: "sandbox" (a bubblewrap sandbox of the project on this machine), "job" (a Kubernetes Job of
    #: the project, pds_kernel.airlock.rebuild_job; the chart sets it) or "process" (a plain child
    #: process of the gate, limited in memory and time: nothing confines a parser's exploit)
    rebuild_runner: str = "sandbox"
    #: what the rebuild's child may write (rebuild_runner "sandbox"): MiB of its home (where the
    #: copies go) and of its /tmp and /dev/shm each, and files and folders of its home
    rebuild_scratch_mb: int = 1024
    rebuild_scratch_files: int = 256

    def __post_init__(self) -> None:
        # written into clamdscan's configuration, an option a line (pds_kernel.airlock.clamav)
        if self.clamd_socket and not is_socket_path(self.clamd_socket):
            raise InvalidInput("setting airlock.clamd_socket must be an absolute path without blanks, "
                               f"got {self.clamd_socket[:80]!r}")


@dataclass(frozen=True)
class Gate:
    """How long and how many connections a client may hold at the gate's web service
    (:mod:`pds_kernel.airlock.web.connections`; docs/isolation.md, "Connections held open at the
    gate"). Checked when the settings are loaded: a value out of its range is refused."""

    #: seconds a connection may take to send a request's headers, and stay idle between requests
    idle_seconds: float = 60.0
    #: seconds every body gets beyond what its size takes at ``body_min_bytes_per_second``
    body_grace_seconds: float = 10.0
    #: the slowest a body may arrive (bytes per second, on average since its headers); slower is cut
    body_min_bytes_per_second: int = 64 * 1024
    #: connections open at once, in all; past it a new connection is closed at once
    max_connections: int = 512
    #: connections open at once from one TCP peer address (the hub's proxy is one peer; the gate's
    #: Unix socket counts as one peer too)
    max_connections_per_peer: int = 256

    def __post_init__(self) -> None:
        ranges = {"idle_seconds": (1, 3600), "body_grace_seconds": (1, 600),
                  "body_min_bytes_per_second": (1024, 1024 ** 3), "max_connections": (1, 65536),
                  "max_connections_per_peer": (1, self.max_connections)}
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                most = f"{high} (gate.max_connections)" if name == "max_connections_per_peer" else high
                raise InvalidInput(f"setting gate.{name} must be between {low} and {most}, got {value}")


@dataclass(frozen=True)
class ModelCheck:
    """The platform's attack of a model that asks to leave (``pds_kernel.modelcheck``, docs/ai.md)."""

    python: str = ""  #: interpreter of the check environment; "" = <checkout>/.venv-modelcheck/bin/python
    #: where the check runs: "sandbox" (a bubblewrap sandbox of the project on this machine) or
    #: "kubernetes" (a Job of the project, pds_kernel.modelcheck.k8s_job; the chart sets it)
    runner: str = "sandbox"
    timeout_seconds: int = 600  #: a check still running then is killed: the model goes to review
    max_input_bytes: int = 512 * 1024 * 1024  #: the declared data, training and test files, in all
    max_model_bytes: int = 50 * 1024 * 1024  #: a larger model is not loaded: review
    #: what the check may write (runner "sandbox"): MiB of its home (the report, the plot, the shadow
    #: models' files) and of its /tmp and /dev/shm each, and files and folders of its home
    scratch_mb: int = 1024
    scratch_files: int = 1024
    shadow_models: int = 16  #: LiRA's shadow models (0: no LiRA)
    worst_case_reps: int = 5  #: repetitions of the worst-case attack
    #: an attack whose AUC exceeds this with p < ``p_value`` makes the model fail (SACRO-ML's own
    #: recommendation uses 0.65)
    max_auc: float = 0.65
    p_value: float = 0.05
    #: an attack that finds more than this share of the training rows at a false positive rate of
    #: at most ``low_fpr`` makes the model fail
    max_tpr_at_low_fpr: float = 0.2
    low_fpr: float = 0.01


@dataclass(frozen=True)
class CohortLink:
    """Where an external cohort list is linked at intake (``pds_kernel.airlock.cohort_link``)."""

    #: "local" (the gate links it itself, with paths.keys and paths.ttp) or "kubernetes" (a short
    #: Job mounting the project's key, the correspondence and the staged list; the gate never sees
    #: the keys; pds_kernel.airlock.cohort_link_job; the chart sets it)
    runner: str = "local"
    timeout_seconds: int = 300  #: the Job's deadline; a list not linked by then is refused
    cpu: float = 1.0  #: the Job's CPU (requests = limits)
    mem_mb: int = 2048  #: the Job's memory in MB (a list of 1,000,000 rows fits)


#: bcrypt cost factors :attr:`Hub.password_cost` may take (bcrypt's own least, and 64 times the default)
PASSWORD_COSTS = (4, 18)


@dataclass(frozen=True)
class Hub:
    port: int = 8000  #: public port of the local JupyterHub
    ip: str = "127.0.0.1"  #: the local hub listens on loopback only by default
    #: the address browsers use for the hub (``http(s)://name[:port]``, no path). Every user's
    #: workspaces get their own host below it (``<user>.<name>``) and the gate its own
    #: (``airlock--service.<name>``): JupyterHub's ``subdomain_host``, so that script in a JupyterLab never
    #: shares an origin with the gate, the hub or another user's JupyterLab
    #: (pds_kernel.hub.origins). "auto": ``http://localhost:<port>`` when ``ip`` is a loopback
    #: address; any other ``ip`` needs the name, with a wildcard DNS entry for ``*.<name>``
    public_url: str = "auto"
    #: seconds between checks that stop running workspaces whose access ended (0: only at login)
    membership_check_seconds: float = 10.0
    #: bytes a workspace's notebook server may hand to the browser per 24 h (pds_kernel.served_bytes)
    served_bytes_per_day: int = 32 * 1024 * 1024
    #: an extract up to this many bytes is re-hashed in full before every workspace start; a larger
    #: one must be in the state its publication or last `pds extract verify` recorded
    extract_hash_max_bytes: int = 4 * 1024 * 1024 * 1024
    #: new connections and requests a local workspace may make per second, sustained, on each socket
    #: the hub serves it (hub, gate, package index: pds_kernel.sandbox.rate); past the burst a
    #: request is answered 429 with a Retry-After, or its connection closed
    socket_requests_per_second: float = 20.0
    #: how many it may make at once beyond that rate (a pip install of a few dozen packages)
    socket_request_burst: int = 200
    #: bcrypt cost of the account passwords the platform hashes (provisioning, resets, a user's own
    #: change): 2**cost rounds, about 0.25 s of one core at 12, paid again at every login. Each step
    #: down halves what guessing a stolen hub database costs: below 10 is for test suites only
    password_cost: int = 12

    def __post_init__(self) -> None:
        if not PASSWORD_COSTS[0] <= self.password_cost <= PASSWORD_COSTS[1]:
            raise InvalidInput(f"setting hub.password_cost must be between {PASSWORD_COSTS[0]} and "
                               f"{PASSWORD_COSTS[1]} (bcrypt's cost factor; 12 by default), got {self.password_cost}")


@dataclass(frozen=True)
class Cli:
    """Who the ``pds`` command acts as (:mod:`pds_kernel.cli.identity`)."""

    #: operating-system user -> registry user the CLI acts as (configuration file only, never the
    #: environment); an unmapped OS user acts as ``os:<user>``, which holds no right once the
    #: registry has an administrator
    identities: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryRules:
    """Rules of the project registry (:mod:`pds_kernel.registry`)."""

    #: administrators who must agree before a membership opens a project's data: 1 (the granter)
    #: or 2 (the granter and a second administrator, who approves it: ``pds project approve-member``;
    #: the chart sets 2). With 2 a user made an administrator likewise waits for a second one
    #: (``pds project approve-admin``). Anything else is refused when the registry is opened.
    membership_approvals: int = 1


@dataclass(frozen=True)
class ProjectEnd:
    """The end of a project (:mod:`pds_kernel.project_end`)."""

    retention_days: int = 90  #: days between `pds project close` and the first day `pds project purge` may run
    home_quota_mb: int = 2048  #: size limit of one workspace home (MB); refused at start, stopped while running
    #: size of a local workspace's /tmp and /dev/shm (MiB each; memory file systems)
    tmp_quota_mb: int = 1024


@dataclass(frozen=True)
class Packages:
    """The curated package index (``pds_kernel.packages``): where approved wheels come from and
    what they must run on."""

    #: where ``pds packages approve`` downloads wheels from (PyPI, or the organisation's mirror)
    upstream_index: str = "https://pypi.org/simple"
    #: Python of the workspaces ("" = this interpreter's major.minor; the notebook image's is 3.11)
    python_version: str = ""
    #: platform tag of the workspaces (Debian 12 and the notebook image: glibc 2.36, x86-64)
    platform: str = "manylinux_2_36_x86_64"
    #: the largest wheel the malware scan reads whole (ClamAV, with the airlock's scanner and
    #: signatures); a larger one, or one unpacking to more than 4 times this, is refused
    scan_max_bytes: int = 1024 * 1024 * 1024
    #: the malware scan's time, per wheel of the closure (scanned in one run): longer refuses the approval
    scan_timeout_seconds: int = 1800


@dataclass(frozen=True)
class Settings:
    paths: Paths = field(default_factory=Paths)
    database: Database = field(default_factory=Database)
    audit: Audit = field(default_factory=Audit)
    ingest: Ingest = field(default_factory=Ingest)
    disclosure: Disclosure = field(default_factory=Disclosure)
    airlock: Airlock = field(default_factory=Airlock)
    gate: Gate = field(default_factory=Gate)
    hub: Hub = field(default_factory=Hub)
    model_check: ModelCheck = field(default_factory=ModelCheck)
    cohort_link: CohortLink = field(default_factory=CohortLink)
    cli: Cli = field(default_factory=Cli)
    registry: RegistryRules = field(default_factory=RegistryRules)
    project_end: ProjectEnd = field(default_factory=ProjectEnd)
    packages: Packages = field(default_factory=Packages)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.paths.state / 'pds.db').resolve()}"

    @property
    def audit_key_file(self) -> Path | str:
        """The one place the audit chain's key is read from (and created, locally): a path, or
        ``env:NAME``."""
        if self.audit.key_file.startswith("env:"):
            return self.audit.key_file
        return Path(self.audit.key_file) if self.audit.key_file else self.paths.state / "secrets" / "audit.key"

    @property
    def audit_anchor_file(self) -> Path:
        """The one place the audit chain's head is anchored (append-only file)."""
        return (Path(self.audit.anchor_file) if self.audit.anchor_file
                else self.paths.state / "audit" / "anchors.jsonl")


_SECTIONS = {f.name: f.type for f in fields(Settings)}


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(current, dict):
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise InvalidInput(f"setting {where}: expected a mapping of names to names, got {value!r}")
        return dict(value)
    if isinstance(current, Path):
        return Path(str(value))
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise InvalidInput(f"setting {where}: expected true/false, got {value!r}")
    if isinstance(current, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"setting {where}: expected an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"setting {where}: expected a number, got {value!r}") from None
    return str(value)


def _merge(settings: Settings, data: Mapping[str, Mapping[str, Any]], origin: str) -> Settings:
    updates = {}
    for section_name, values in data.items():
        if section_name not in _SECTIONS:
            raise InvalidInput(
                f"{origin}: unknown section {section_name!r} (known: {', '.join(_SECTIONS)})"
            )
        if not isinstance(values, Mapping):
            raise InvalidInput(f"{origin}: section {section_name!r} must be a mapping")
        section = getattr(settings, section_name)
        known = {f.name for f in fields(section)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise InvalidInput(
                    f"{origin}: unknown setting {section_name}.{key} (known: {', '.join(sorted(known))})"
                )
            changes[key] = _coerce(value, getattr(section, key), f"{section_name}.{key}")
        updates[section_name] = replace(section, **changes)
    return replace(settings, **updates)


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    resolved = {
        f.name: (base / getattr(settings.paths, f.name)).resolve()
        for f in fields(settings.paths)
    }
    audit = {}
    for name in ("key_file", "anchor_file"):
        value = getattr(settings.audit, name)
        audit[name] = str((base / value).resolve()) if value and not value.startswith("env:") else value
    return replace(settings, paths=Paths(**resolved), audit=replace(settings.audit, **audit))


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from defaults, the YAML file and the environment."""
    environ = os.environ if environ is None else environ
    settings = Settings()
    base = Path.cwd()
    if config_file is None and environ.get("PDS_CONFIG"):
        config_file = Path(environ["PDS_CONFIG"])
    if config_file is None and Path("pds.yaml").is_file():
        config_file = Path("pds.yaml")
    if config_file is not None:
        if not config_file.is_file():
            raise InvalidInput(f"config file {config_file} does not exist")
        try:
            data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InvalidInput(f"config file {config_file} is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise InvalidInput(f"config file {config_file} must hold a mapping of sections")
        settings = _merge(settings, data, str(config_file))
        base = config_file.resolve().parent
    env_data: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        env_data.setdefault(section, {})[key] = value
    if "identities" in env_data.get("cli", {}):
        raise InvalidInput("cli.identities is read from the configuration file only, never from the "
                           "environment: set it in the file that holds the database credentials")
    if env_data:
        settings = _merge(settings, env_data, "environment")
    return _resolve_paths(settings, base)
