"""``pds ingest``: exit codes, one-line errors, audit entries that verify."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

from delivery_factory import make_rows, write_delivery

from pds_kernel.runtime import Runtime
from pds_kernel.settings import load_settings


def _pds(config: Path, *args: str) -> subprocess.CompletedProcess:
    """``pds`` run by the OS user, whom the configuration maps to alice (``cli.identities``)."""
    if "identities" not in config.read_text():
        with open(config, "a") as handle:
            handle.write(f"cli:\n  identities:\n    {json.dumps(getpass.getuser())}: alice\n")
    return subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()",
                           "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_exit_codes_summary_and_audit(tmp_path):
    config = tmp_path / "pds.yaml"
    config.write_text("paths:\n  lake: lake\n  reports: reports\n  state: state\n")
    clean = write_delivery(tmp_path / "clean", make_rows(months=("202301",)))
    done = _pds(config, "ingest", str(clean))
    assert done.returncode == 0, done.stderr
    assert "quality report:" in done.stdout and "report.html" in done.stdout
    assert "ER_PRS_F_202301.csv" in done.stdout

    again = _pds(config, "ingest", str(clean))
    assert again.returncode == 0 and "skipped" in again.stdout

    bad = write_delivery(tmp_path / "bad", make_rows(months=("202302",)))
    prs = bad / "ER_PRS_F_202302.csv"
    prs.write_text(prs.read_text(encoding="latin-1") + "not;a;claim\n", encoding="latin-1")
    partial = _pds(config, "ingest", str(bad))
    assert partial.returncode == 3, partial.stdout + partial.stderr
    assert "quarantined" in partial.stdout

    missing = _pds(config, "ingest", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1

    helped = _pds(config, "ingest", "--help")
    assert helped.returncode == 0 and "3" in helped.stdout and "--dask" in helped.stdout

    verify = _pds(config, "audit", "verify")
    assert verify.returncode == 0, verify.stdout
    runtime = Runtime(load_settings(config))
    files = runtime.audit.entries(action="ingest.file")
    runs = runtime.audit.entries(action="ingest.run")
    runtime.close()
    assert {e.actor for e in files + runs} == {"alice"}
    assert [r.outcome for r in runs] == ["ok", "ok", "ok", "failed"], "a refused run is audited too"
    quarantined = [e for e in files if e.target == "ER_PRS_F_202302.csv"]
    assert quarantined[0].details["rows_quarantined"] == 1
    assert quarantined[0].details["rows_read"] == quarantined[0].details["rows_loaded"] + 1
