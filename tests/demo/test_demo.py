"""``pds demo run --no-hub`` end to end on a tiny population, twice: the second run changes nothing.

Uses every real component (generator, ingestion, registry, hub accounts, extract builder) in a
temporary directory with its own pds.yaml."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from ports import free_port_block
from typer.testing import CliRunner

from pds_kernel.cli.app import app
from pds_kernel.demo import CONFIG_NAME, DEMO_PROJECTS, DEMO_USERS, hub_account_exists
from pds_kernel.extract.layout import read_table
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import load_settings

pytestmark = pytest.mark.slow

ARGS = ["--patients", "300", "--years", "2023", "--seed", "7", "--no-hub"]


def _run(directory: Path) -> str:
    result = CliRunner().invoke(app, ["demo", "run", "--dir", str(directory), *ARGS])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _snapshot(root: Path) -> dict[str, bytes]:
    """Bytes of the delivery, the lake manifest and the published extracts."""
    files = {}
    for pattern in ("raw/**/*.csv", "lake/_manifest.json", "projects/*/extract/*"):
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                files[str(path.relative_to(root))] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "demo"
    first = _run(root)
    before = _snapshot(root)
    settings = load_settings(root / CONFIG_NAME, environ={})
    runtime = Runtime(settings)
    audit_before = len(runtime.audit.entries())
    second = _run(root)
    yield root, first, second, before, audit_before, runtime
    runtime.close()


def test_first_run_leaves_lake_report_registry_accounts_and_extracts(demo_runs):
    root, first, _second, _before, _n, runtime = demo_runs
    settings = runtime.settings
    assert settings.paths.lake == root / "lake"  # everything lives under the demo directory
    assert (root / "lake" / "_manifest.json").is_file()
    assert list((root / "lake" / "ER_PRS_F").glob("month=*/*.parquet"))
    reports = list((root / "reports").glob("*/report.html"))
    assert reports and "quality report" in first

    registry = Registry.from_runtime(runtime)
    assert sorted(p.id for p in registry.projects()) == sorted(DEMO_PROJECTS)
    assert sorted(u.name for u in registry.users()) == sorted(u[0] for u in DEMO_USERS)
    in_a_year = date.today() + timedelta(days=365)
    for project in DEMO_PROJECTS:
        members = registry.members(project)
        assert members and all(m.expires_on == in_a_year for m in members)
    assert [p.id for p in registry.active_projects("carol")] == sorted(DEMO_PROJECTS)
    assert registry.get_user("admin").is_admin
    assert all(hub_account_exists(settings, u[0]) for u in DEMO_USERS)

    for project in DEMO_PROJECTS:
        manifest = json.loads((root / "projects" / project / "extract" / "manifest.json").read_text())
        assert manifest["project"] == project and manifest["conformity"]["ok"]
    # the demo approves texttable from PyPI; without a connection the step says so and goes on
    assert "texttable==1.7.0: approved (" in first or "texttable==1.7.0: NOT approved" in first
    assert runtime.audit.verify().ok
    actors = {e.actor for e in runtime.audit.entries() if e.action.startswith(("registry.", "extract.build"))}
    assert actors == {"admin"}  # the demo maps the OS user who runs it to its administrator (cli.identities)


def test_passwords_are_printed_once_and_stored_nowhere_in_clear(demo_runs):
    root, first, second, *_ = demo_runs
    rows = re.findall(r"│ (alice|bob|carol|olga|oscar|admin) +│.*?│ (\S{16}) +│ ([A-Z2-7]{16}) +│", first)
    assert {r[0] for r in rows} == {u[0] for u in DEMO_USERS}, first
    passwords = [r[1] for r in rows]
    assert len(set(passwords)) == len(passwords)  # generated, not shared
    for password in passwords:
        assert password not in second
        for path in root.rglob("*"):
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path
    assert "demo accounts" not in second and "exist already" in second


def test_second_run_is_idempotent(demo_runs):
    root, _first, second, before, audit_before, runtime = demo_runs
    assert "reused the delivery" in second
    assert "0 file(s) loaded" in second
    assert "registry already holds" in second
    assert "0 extract(s) built, 2 reused" in second
    assert "texttable==1.7.0: approved already" in second or "texttable==1.7.0: NOT approved" in second
    assert _snapshot(root) == before  # same delivery, lake manifest and extract bytes
    new = runtime.audit.entries()[audit_before:]
    # a re-run records the (empty) ingest run, and no registry change, account or build
    actions = {e.action for e in new}
    assert "ingest.run" in actions
    assert not [a for a in actions if a.startswith(("registry.", "hub.account", "extract.build", "pseudo."))]


def test_registry_step_keeps_admin_decisions_and_renews_expired_memberships(runtime):
    """Pure registry step on a fresh database: a closed project and a disabled account stay so."""
    from pds_kernel.demo import register

    assert register(runtime, "admin").status == "done"
    registry = Registry.from_runtime(runtime)
    registry.close_project("admin", "mi-outcomes", reason="test")
    registry.upsert_user("admin", "bob", full_name=registry.get_user("bob").full_name, active=False)
    registry.add_member("admin", "diabetes-t2", "alice", "researcher", date.today() - timedelta(days=1))
    result = register(runtime, "admin")
    assert result.lines == [f"diabetes-t2: alice researcher until {date.today() + timedelta(days=365)}"]
    assert registry.get_project("mi-outcomes").status.value == "closed"
    assert not registry.get_user("bob").active
    assert register(runtime, "admin").status == "reused"


def _stop(proc) -> None:
    """Ctrl-C to the demo's process group, then SIGKILL if it has not ended within a minute."""
    import os
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _output_so_far(proc, quiet: float = 5.0) -> str:
    """What the demo printed, read until its pipe ends or stays silent ``quiet`` seconds: a process
    it started in a session of its own may still hold the pipe, and a plain read would wait for it."""
    import os
    import select

    fd, chunks = proc.stdout.fileno(), []
    while select.select([fd], [], [], quiet)[0]:
        data = os.read(fd, 1 << 16)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.functional
def test_run_ends_with_the_hub_serving_and_ctrl_c_stops_it(demo_runs):
    """What `make run` ends with: JupyterHub answering on loopback at http://localhost:<port>, stopped cleanly by Ctrl-C."""
    import subprocess
    import sys
    import time
    import urllib.request

    root = demo_runs[0]
    port = free_port_block()
    args = [a for a in ARGS if a != "--no-hub"]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "pds"), "demo", "run", "--dir", str(root),
                             *args, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/login", timeout=5) as response:
                    status = response.status
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(1)
        if status != 200:
            _stop(proc)
            pytest.fail(f"the hub did not answer on port {port} (pds demo run exited {proc.returncode}):\n"
                        + _output_so_far(proc))
        assert "password" in page.lower()
    finally:
        _stop(proc)
    output = _output_so_far(proc)
    assert f"JupyterHub: http://localhost:{port}" in output  # its own host; workspaces and the gate below it
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/login", timeout=5)


@pytest.mark.functional
def test_example_notebook_runs_in_the_sandbox_and_its_table_is_right(demo_runs):
    """The example notebook a researcher finds in a new home runs unchanged, through `pds sandbox
    exec`, in alice's diabetes-t2 sandbox (Dask cluster inside), and saves the right table."""
    import subprocess
    import sys

    import polars as pl

    from pds_kernel.sandbox.spawner import NOTEBOOKS

    root = demo_runs[0]
    home = root / "homes" / "diabetes-t2" / "alice"
    (home / "examples").mkdir(parents=True, exist_ok=True)
    notebook = "01-claims-per-month-dask.ipynb"
    (home / "examples" / notebook).write_bytes((NOTEBOOKS / notebook).read_bytes())
    pds = [str(Path(sys.executable).parent / "pds"), "--config", str(root / CONFIG_NAME)]
    run = subprocess.run([*pds, "sandbox", "exec", "diabetes-t2", "--user", "alice", "--",
                          "python", "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                          "--output", "executed.ipynb", f"examples/{notebook}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    executed = json.loads((home / "examples" / "executed.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs and not [o for o in outputs if o["output_type"] == "error"]
    printed = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert "claims_per_month.csv: pass" in printed, printed[-2000:]  # #12: its sdc table passes the gate's checks

    saved = pl.read_csv(home / "examples" / "results" / "claims_per_month.csv").sort("month")
    claims = read_table(root / "projects" / "diabetes-t2" / "extract", "ER_PRS_F")
    expected = (claims.group_by(pl.col("EXE_SOI_DTD").dt.strftime("%Y-%m").alias("month"))
                .agg(pl.len().alias("claims"), pl.col("PERSON_ID").n_unique().alias("persons"))
                .filter(pl.col("persons") >= 10).sort("month"))
    assert saved.height > 0
    assert saved.select("month", "claims", "persons").to_dicts() == \
        expected.select("month", pl.col("claims").cast(pl.Int64), pl.col("persons").cast(pl.Int64)).to_dicts()

    # the command's own exit code comes back through `pds sandbox exec`
    failing = subprocess.run([*pds, "sandbox", "exec", "diabetes-t2", "--user", "alice", "--",
                              "python", "-c", "raise SystemExit(3)"], capture_output=True, timeout=120)
    assert failing.returncode == 3


@pytest.mark.functional
def test_sandbox_probe_on_the_demo_reports_no_escape(demo_runs):
    """`pds sandbox probe` on the demo's diabetes-t2 workspace of alice: every attempt fails."""
    import subprocess
    import sys

    root = demo_runs[0]
    pds = [str(Path(sys.executable).parent / "pds"), "--config", str(root / CONFIG_NAME)]
    run = subprocess.run([*pds, "sandbox", "probe", "diabetes-t2", "--user", "alice"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^\d+ attempts, 0 succeeded$", run.stdout, re.MULTILINE), run.stdout


def _docs_block(page: str, marker: str) -> str:
    """The first ```python block of ``docs/<page>`` that contains ``marker``."""
    text = (Path(__file__).resolve().parents[2] / "docs" / page).read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if marker in block:
            return block
    raise AssertionError(f"no python block with {marker!r} in docs/{page}")


def test_the_output_checking_example_of_the_docs_runs_on_the_demo_extract(demo_runs, tmp_path):
    """#15: docs/output-checking.md grouped ER_PRS_F by a column the demo extract lacks. The
    docs' own code (up to the submission, which needs a gate) runs on the demo's extract."""
    import subprocess
    import sys

    root, *_ = demo_runs
    block = _docs_block("output-checking.md", "persons_table")
    code = block.split("answer = ws.request_export")[0]
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home),
           "PDS_DATA_DIR": str(root / "projects" / "diabetes-t2" / "extract")}
    done = subprocess.run([sys.executable, "-c", code], cwd=home, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "claims_by_sex.csv: pass" in done.stdout, done.stdout
    assert (home / "results" / "claims_by_sex.csv").read_text().startswith("BEN_SEX_COD,persons,claims")


def test_demo_manifest_does_not_call_an_unchecked_k_anonymity_ok(demo_runs):
    root, first, *_ = demo_runs
    manifest = json.loads((root / "projects" / "diabetes-t2" / "extract" / "manifest.json").read_text())
    conformity = manifest["conformity"]
    assert conformity["min_k"] is None
    assert conformity["k_status"].startswith("not checked: k = ")
    assert "k-anonymity not checked: k = " in first


def test_cli_takes_global_options_after_the_command_and_keeps_wide_tables_in_pipes(demo_runs):
    """#15: ``pds audit verify --config FILE`` was refused; tables were cut to 80 columns when piped."""
    import os
    import subprocess
    import sys

    root, *_ = demo_runs
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "PDS_CONFIG"}}
    run = [sys.executable, "-c", "from pds_kernel.cli import main; main()"]
    verify = subprocess.run([*run, "audit", "verify", "--config", str(root / CONFIG_NAME)],
                            capture_output=True, text=True, env=env, cwd=root.parent, timeout=120)
    assert verify.returncode == 0 and "audit trail intact" in verify.stdout, verify.stderr
    shown = subprocess.run([*run, "audit", "show", "--limit", "5", "-c", str(root / CONFIG_NAME), "-v"],
                           capture_output=True, text=True, env=env, cwd=root.parent, timeout=120)
    assert shown.returncode == 0, shown.stderr
    widest = max(len(line) for line in shown.stdout.splitlines())
    assert widest > 80 and "…" not in shown.stdout, shown.stdout
