"""CLI round trip: submit on behalf, review twice, release, download; errors are one line."""

from __future__ import annotations

import getpass
import re
import subprocess
import sys
from dataclasses import fields

import yaml
from airlock_factories import PROJECT
from typer.testing import CliRunner

from pds_kernel.cli.app import app
from pds_kernel.errors import InvalidInput, PermissionDenied


def _as(cfg, user: str) -> str:
    """The configuration ``cfg`` with the OS user running the tests mapped to registry user ``user``
    (``cli.identities``): the CLI acts as its OS user, ``--as`` is for administrators only."""
    data = yaml.safe_load(cfg.read_text())
    data["cli"] = {"identities": {getpass.getuser(): user}}
    path = cfg.with_name(f"pds-as-{user}.yaml")
    path.write_text(yaml.safe_dump(data))
    return str(path)

def _config(tmp_path, settings):
    path = tmp_path / "pds.yaml"
    path.write_text(yaml.safe_dump({"paths": {f.name: str(getattr(settings.paths, f.name))
                                              for f in fields(settings.paths)}}))
    return path


def test_round_trip(tmp_path, settings, registry):
    cfg = _config(tmp_path, settings)
    table = tmp_path / "ages.csv"
    table.write_text("age,count\n18-40,120\n40-65,230\n")
    run = CliRunner().invoke
    out = run(app, ["-c", _as(cfg, "root"), "airlock", "submit", "--project", PROJECT,
                    "--author", "alice", "--why", "figure 2", str(table)])
    assert out.exit_code == 0, out.output
    rid = re.search(r"request ([a-f0-9]{32})", out.output).group(1)
    for checker in ("olga", "omar"):
        out = run(app, ["-c", _as(cfg, checker), "airlock", "review", rid, "--decision", "approve"])
        assert out.exit_code == 0, out.output
    assert "state released" in out.output  # auto-release after the second approval
    out = run(app, ["-c", _as(cfg, "olga"), "airlock", "release", rid])
    assert out.exit_code != 0 and "cannot release a request that is released" in str(out.exception)
    dest = tmp_path / "got"
    out = run(app, ["-c", _as(cfg, "alice"), "airlock", "download", rid, "--dest", str(dest)])
    assert out.exit_code == 0, out.output
    assert (dest / "ages.csv").read_text() == table.read_text()
    out = run(app, ["-c", _as(cfg, "olga"), "airlock", "list", "--scope", "all"])
    assert rid[:10] in out.output


def test_errors_are_one_line_with_exit_code(tmp_path, settings, registry):
    cfg = _config(tmp_path, settings)
    proc = subprocess.run([sys.executable, "-c", "from pds_kernel.cli.app import main; main()",
                           "-c", _as(cfg, "mallory"), "airlock", "show", "a" * 32],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def _submit(run, cfg, tmp_path, *tables: tuple[str, str]) -> str:
    paths = []
    for name, text in tables:
        path = tmp_path / name
        path.write_text(text)
        paths.append(str(path))
    out = run(app, ["-c", _as(cfg, "root"), "airlock", "submit", "--project", PROJECT,
                    "--author", "alice", "--why", "tables 1 and 2", *paths])
    assert out.exit_code == 0, out.output
    return re.search(r"request ([a-f0-9]{32})", out.output).group(1)


def test_review_per_file_verdicts(tmp_path, settings, registry, runtime):
    cfg = _config(tmp_path, settings)
    run = CliRunner().invoke
    rid = _submit(run, cfg, tmp_path, ("a.csv", "age,count\n18-40,120\n40-65,230\n"),
                  ("b.csv", "age,count\n18-40,4\n40-65,230\n"))
    base = ["-c", _as(cfg, "olga"), "airlock", "review", rid]
    # b.csv failed its checks: approving it without saying why is refused, nothing recorded
    out = run(app, [*base, "--decision", "approve"])
    assert isinstance(out.exception, InvalidInput) and "b.csv failed the automatic checks" in str(out.exception)
    out = run(app, [*base, "--verdict", "0=approve", "--verdict", "b.csv=request_changes:suppress the 4"])
    assert out.exit_code == 0, out.output
    out = run(app, ["-c", _as(cfg, "omar"), "airlock", "review", rid,
                    "--verdict", "1=request_changes:round to 5", "--decision", "approve"])
    assert out.exit_code == 0, out.output
    assert "state changes_requested" in out.output
    votes = [e for e in runtime.audit.entries(action="airlock.review.submit") if e.outcome == "ok"]
    assert [(e.actor, {n: v["decision"] for n, v in e.details["verdicts"].items()}) for e in votes] == [
        ("olga", {"a.csv": "approve", "b.csv": "request_changes"}),
        ("omar", {"a.csv": "approve", "b.csv": "request_changes"})]
    refused = [e for e in runtime.audit.entries(action="airlock.review.submit") if e.outcome != "ok"]
    assert [e.actor for e in refused] == ["olga"]
    from pds_kernel.airlock.service import AirlockService

    view = AirlockService(runtime, registry=registry).get_request("alice", rid)
    assert view.state == "changes_requested"
    assert sorted((r.reviewer, r.file_index, r.decision, r.comment) for r in view.reviews) == [
        ("olga", 0, "approve", ""), ("olga", 1, "request_changes", "suppress the 4"),
        ("omar", 0, "approve", ""), ("omar", 1, "request_changes", "round to 5")]
    assert [e.details["to"] for e in runtime.audit.entries(action="airlock.request.request_changes")] == [
        "changes_requested"]


def test_review_options_are_checked(tmp_path, settings, registry):
    cfg = _config(tmp_path, settings)
    run = CliRunner().invoke
    rid = _submit(run, cfg, tmp_path, ("a.csv", "age,count\n18-40,120\n40-65,230\n"))
    base = ["-c", _as(cfg, "olga"), "airlock", "review", rid]
    for args, message in [([], "give --decision"), (["--verdict", "0"], "FILE=DECISION"),
                          (["--verdict", "7=approve"], "no file '7'"),
                          (["--verdict", "9" * 5000 + "=approve"], "no file '999"),  # int() refused it
                          (["--verdict", "\u0663=approve"], "no file '\u0663'"),  # Arabic-Indic 3: not a number
                          (["--verdict", "0=approve", "--verdict", "a.csv=approve"], "two verdicts"),
                          (["--file", "0"], "give --decision too"),
                          (["--verdict", "0=maybe"], "is not one of")]:
        out = run(app, [*base, *args])
        assert isinstance(out.exception, InvalidInput) and message in str(out.exception), (args, out.exception)


def test_show_file_prints_what_the_checker_votes_on(tmp_path, settings, registry, runtime):
    cfg = _config(tmp_path, settings)
    run = CliRunner().invoke
    table = "sex,count\nM,120\nF,4\n"
    rid = _submit(run, cfg, tmp_path, ("t.csv", table))
    out = run(app, ["-c", _as(cfg, "olga"), "airlock", "show", rid, "--file", "0"])
    assert out.exit_code == 0, out.output
    assert table in out.output  # the exact text, before the findings
    assert "t.csv: [fail] small-cell at row 2 col 2: 4 is below the threshold" in out.output
    views = runtime.audit.entries(action="airlock.file.view")
    assert [(e.actor, e.outcome, e.details["file"]) for e in views] == [("olga", "ok", 0)]
    out = run(app, ["-c", _as(cfg, "mallory"), "airlock", "show", rid, "--file", "0"])
    assert isinstance(out.exception, PermissionDenied) and table not in out.output
    assert runtime.audit.entries(action="airlock.file.view")[-1].outcome == "denied"


def test_show_file_renders_workbooks_as_tables(tmp_path, settings, registry):
    import pandas as pd

    cfg = _config(tmp_path, settings)
    book = tmp_path / "t.xlsx"
    pd.DataFrame({"sex": ["M", "F"], "count": [120, 4]}).to_excel(book, index=False)
    run = CliRunner().invoke
    out = run(app, ["-c", _as(cfg, "root"), "airlock", "submit", "--project", PROJECT,
                    "--author", "alice", "--why", "table", str(book)])
    rid = re.search(r"request ([a-f0-9]{32})", out.output).group(1)
    out = run(app, ["-c", _as(cfg, "olga"), "airlock", "show", rid, "--file", "0"])
    assert out.exit_code == 0, out.output
    assert "4 (!)" in out.output and "120" in out.output
