"""CLI round trip: submit on behalf, review twice, release, download; errors are one line."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields

import yaml
from typer.testing import CliRunner

from airlock_factories import PROJECT
from pds_kernel.cli.app import app


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
    out = run(app, ["-c", str(cfg), "--as", "root", "airlock", "submit", "--project", PROJECT,
                    "--author", "alice", "--why", "figure 2", str(table)])
    assert out.exit_code == 0, out.output
    rid = re.search(r"request ([a-f0-9]{32})", out.output).group(1)
    for checker in ("olga", "omar"):
        out = run(app, ["-c", str(cfg), "--as", checker, "airlock", "review", rid, "--decision", "approve"])
        assert out.exit_code == 0, out.output
    assert "state released" in out.output  # auto-release after the second approval
    out = run(app, ["-c", str(cfg), "--as", "olga", "airlock", "release", rid])
    assert out.exit_code != 0 and "cannot release a request that is released" in str(out.exception)
    dest = tmp_path / "got"
    out = run(app, ["-c", str(cfg), "--as", "alice", "airlock", "download", rid, "--dest", str(dest)])
    assert out.exit_code == 0, out.output
    assert (dest / "ages.csv").read_text() == table.read_text()
    out = run(app, ["-c", str(cfg), "--as", "olga", "airlock", "list", "--scope", "all"])
    assert rid[:10] in out.output


def test_errors_are_one_line_with_exit_code(tmp_path, settings, registry):
    cfg = _config(tmp_path, settings)
    proc = subprocess.run([sys.executable, "-c", "from pds_kernel.cli.app import main; main()",
                           "-c", str(cfg), "--as", "mallory", "airlock", "show", "a" * 32],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
