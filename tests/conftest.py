"""Shared fixtures: every test gets its own directories and database under ``tmp_path``."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import localhost_names
import pytest

from pds_kernel.runtime import Runtime
from pds_kernel.settings import Database, Hub, Paths, Settings

# This process may write bytecode (the environment says not to, for every other process): pytest
# keeps the test modules it rewrites in __pycache__ (untracked), so the next collection, in each
# worker of `make test` and in the next run, reads them instead of rewriting every assert again.
sys.dont_write_bytecode = False

localhost_names.install()  # alice.localhost, airlock--service.localhost: loopback, as in a browser

#: bcrypt at its least cost for the suite's hub accounts (``hub.password_cost``; 12 in use costs a
#: quarter of a second of a core per hash and again per login: 5% of a run's CPU, about two minutes
#: of a core). The hubs and ``pds`` commands the tests start read the variable; settings built here
#: carry it (tests/hub/hubfixtures.py and the identity worlds write it in their configuration files).
TEST_PASSWORD_COST = 4
os.environ.setdefault("PDS_HUB__PASSWORD_COST", str(TEST_PASSWORD_COST))
#: OpenMP's threads (xgboost, scikit-learn, LightGBM in the tests and the commands they start) sleep
#: as soon as they wait instead of spinning first: the run has more processes than cores, and a
#: spinning thread takes a core from another test (perf: 2% of a run's CPU in libgomp)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# ---- parallel runs (pytest-xdist, ``make test`` runs two workers per core) -----------------------
# Sandboxes get a control group per (project, user) below the caller's own (pds_kernel.sandbox.
# cgroup). Workers running alice's diabetes-t2 sandboxes at once would share one memory and
# process limit (a fork-bomb attempt in one would starve the other), so each worker moves itself
# into a control group of its own first: the sandboxes' groups are then created below it. (cgroup
# v1, as on the test machines; on v2 a group that delegates controllers may hold no process, so
# workers there keep sharing the sandboxes' groups.)
CGROUP_V1 = Path("/sys/fs/cgroup")
WORKER_CONTROLLERS = ("memory", "cpu", "pids")
_WORKER_GROUPS = pytest.StashKey[dict]()


def _own_v1_groups() -> dict[str, Path]:
    groups = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in WORKER_CONTROLLERS and (CGROUP_V1 / controller / "cgroup.procs").is_file():
                groups[controller] = CGROUP_V1 / controller / path.lstrip("/")
    return groups


#: a worker starts with COLUMNS=80 and LINES=24 of its own: it gets the controller's values instead,
#: so a CLI's output has the same width with and without workers
TERMINAL_VARIABLES = ("COLUMNS", "LINES")


def pytest_collection_modifyitems(config, items):
    """Files of long tests first: those marked ``slow`` or ``functional`` (a real hub, sandbox or
    browser). ``make test`` hands whole files to its workers in this order
    (``--dist loadfile --no-loadscope-reorder``; xdist's own order, most tests first, started the
    files of a few long tests last, and the run's last minutes waited for one of them alone).
    Within a file, and among files of one kind, the order is the collection's."""
    long_files = {item.path for item in items
                  if item.get_closest_marker("slow") or item.get_closest_marker("functional")}
    items.sort(key=lambda item: item.path not in long_files)


def pytest_collection_finish(session):
    """The collected suite (every test module, thousands of items) lives until the run ends: frozen,
    Python's cycle collector no longer walks it at each full collection (perf: ~3% of a run's CPU
    was the test processes' collector going over it)."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # the controller, once per worker
    node.workerinput["pds_terminal"] = {name: os.environ.get(name) for name in TERMINAL_VARIABLES}


def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    for name, value in getattr(config, "workerinput", {}).get("pds_terminal", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if os.geteuid() != 0:
        return
    moved = {}
    for controller, group in _own_v1_groups().items():
        mine = group / f"pytest-{worker}"
        try:
            mine.mkdir(exist_ok=True)
            (mine / "cgroup.procs").write_text(str(os.getpid()))
            moved[controller] = group
        except OSError:
            continue
    config.stash[_WORKER_GROUPS] = moved


def pytest_unconfigure(config):
    for parent in config.stash.get(_WORKER_GROUPS, {}).values():
        try:
            (parent / "cgroup.procs").write_text(str(os.getpid()))
            (parent / f"pytest-{os.environ['PYTEST_XDIST_WORKER']}").rmdir()
        except OSError:
            continue


# ---- the red team's count (tests/security) -------------------------------------------------------
# Here and not in tests/security/conftest.py: with workers, only this file's hooks run in the
# process that prints the summary.
def _red_team_count(stats) -> tuple[int, int]:
    """(attempts, succeeded) among a session's reports of tests/security: each test run once,
    the strict expected failures (channels documented as open) left out."""
    attempts = succeeded = 0
    for outcome in ("passed", "failed", "error"):
        for report in stats.get(outcome, []):
            if getattr(report, "when", "call") != "call" and outcome != "error":
                continue
            if not report.nodeid.startswith("tests/security/"):
                continue
            attempts += 1
            succeeded += outcome != "passed"
    return attempts, succeeded


_DOCUMENTED_TOTAL_WRONG = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """A run of the whole red team fails while docs/isolation.md states another total than the
    attempts it made (the total was updated by hand, and drifted)."""
    if hasattr(session.config, "workerinput") or exitstatus not in (0, 1):
        return  # an xdist worker (the controller has every report), or a run interrupted or broken
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "security"))
    from inventory import documented_total_wrong, whole_suite_collected

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not whole_suite_collected(session.config) or session.shouldfail or session.shouldstop:
        return
    attempts, _ = _red_team_count(reporter.stats)
    wrong = documented_total_wrong(attempts) if attempts else None
    if wrong:
        session.config.stash[_DOCUMENTED_TOTAL_WRONG] = wrong
        if session.exitstatus == 0:
            session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    attempts, succeeded = _red_team_count(terminalreporter.stats)
    if attempts:
        terminalreporter.write_line(f"red team: {attempts} attempts, {succeeded} succeeded")
    wrong = config.stash.get(_DOCUMENTED_TOTAL_WRONG, None)
    if wrong:
        terminalreporter.write_line(wrong, red=True)


def make_settings(root: Path, **sections) -> Settings:
    """Settings whose every path is a fresh directory under ``root``."""
    paths = Paths(**{f.name: root / f.name for f in fields(Paths)})
    for f in fields(Paths):
        getattr(paths, f.name).mkdir(parents=True, exist_ok=True)
    return replace(Settings(paths=paths, hub=Hub(password_cost=TEST_PASSWORD_COST)), **sections)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "pds")


@pytest.fixture
def runtime(settings: Settings):
    rt = Runtime(settings)
    yield rt
    rt.close()


# ---- PostgreSQL: a throwaway cluster for the session, one database per test ------------------
# The registry, the airlock and the audit trail run on PostgreSQL in production; ``db_runtime``
# runs a test on SQLite and again on a real PostgreSQL server (Debian's packages, started here,
# listening on a Unix socket only, stopped at the end of the session).

@dataclass(frozen=True)
class PgServer:
    socket_dir: Path
    user: str = "postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}"


def _pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def _as_pg_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` OS user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def pg_server():
    """Start a private PostgreSQL cluster (temp data dir, Unix socket only); stop it at the end."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("runuser is needed to start PostgreSQL as the postgres user")
    root = Path(tempfile.mkdtemp(prefix="pdspg", dir="/tmp"))  # short: socket paths max 107 bytes
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    os.chmod(sock, 0o700)  # only the cluster owner (and root) may reach the socket
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(_as_pg_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"]), **run)
    options = (f"-k {sock} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=100")
    try:
        subprocess.run(_as_pg_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                                     "-o", options, "-w", "-t", "60", "start"]), **run)
    except subprocess.CalledProcessError as exc:
        detail = log.read_text() if log.exists() else exc.stderr
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {detail}") from None
    try:
        yield PgServer(sock)
    finally:
        subprocess.run(_as_pg_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "-w", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_server) -> str:
    """URL of the maintenance database ``postgres`` of the session's cluster."""
    return pg_server.url("postgres")


@pytest.fixture
def pg_database(pg_server):
    """A fresh, empty database for one test (dropped afterwards); yields its URL."""
    from sqlalchemy import create_engine

    name = f"t_{secrets.token_hex(6)}"
    admin = create_engine(pg_server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.url(name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_settings(request, settings: Settings) -> Settings:
    """``settings`` on SQLite, then on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return settings
    return replace(settings, database=Database(url=request.getfixturevalue("pg_database")))


@pytest.fixture
def db_runtime(db_settings: Settings):
    """A runtime on SQLite, then on PostgreSQL: registry and audit behave the same on both."""
    rt = Runtime(db_settings)
    yield rt
    rt.close()
