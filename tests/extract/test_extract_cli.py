"""``pds extract``: the commands work end to end; mistakes are one line and a non-zero exit code."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from dataclasses import fields
from datetime import date
from pathlib import Path

import pytest
import yaml
from extract_lake import DIABETES_SPEC, write_spec

pytestmark = pytest.mark.slow  # each command starts a Python process (a few seconds on a busy machine)

PDS = str(Path(sys.executable).with_name("pds"))


def _pds(config: Path, *args: str, actor: str = "root"):
    """``pds extract ...`` run by the OS user, whom the configuration maps to ``actor``."""
    mapped = config.with_name(f"pds-{actor}.yaml")
    mapped.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()),
                                      "cli": {"identities": {getpass.getuser(): actor}}}))
    env = {**{k: v for k, v in os.environ.items() if k != "PDS_ACTOR"}, "COLUMNS": "200"}
    return subprocess.run([PDS, "--config", str(mapped), "extract", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _config(settings, tmp_path) -> Path:
    path = tmp_path / "pds.yaml"
    path.write_text(yaml.safe_dump({"paths": {f.name: str(getattr(settings.paths, f.name))
                                              for f in fields(settings.paths)}}))
    return path


def test_validate_build_check_show(settings, registry, small_lake, tmp_path):
    config = _config(settings, tmp_path)
    spec = write_spec(tmp_path, DIABETES_SPEC)
    result = _pds(config, "validate", str(spec))
    assert result.returncode == 0, result.stderr
    assert "valid against the lake" in result.stdout and "include drug" in result.stdout
    # what the spec asks for and its generalisation keeps out, said before the build and by it
    withheld = ["not copied: IR_BEN_R.BEN_NAI_MOI: a birth month, and birth dates go to the year",
                "not copied: T_MCOaaC.SEJ_NUM: a count of days"]
    assert all(line in result.stdout for line in withheld), result.stdout
    result = _pds(config, "build", "diab-study", "--spec", str(spec))
    assert result.returncode == 0, result.stderr
    assert "published" in result.stdout and "COHORT" in result.stdout
    assert all(line in result.stdout for line in withheld), result.stdout
    result = _pds(config, "check", "diab-study")
    assert result.returncode == 0 and "conforms" in result.stdout, result.stdout + result.stderr
    result = _pds(config, "show", "diab-study", actor="alice")
    assert result.returncode == 0 and "persons" in result.stdout, result.stderr


def test_errors_are_one_line(settings, registry, small_lake, tmp_path):
    config = _config(settings, tmp_path)
    bad = write_spec(tmp_path, DIABETES_SPEC.replace("A10", "A1O"))
    result = _pds(config, "validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "is not an ATC code prefix" in result.stderr
    result = _pds(config, "build", "diab-study", "--spec", str(write_spec(tmp_path, DIABETES_SPEC)), actor="alice")
    assert result.returncode == 4 and "only an administrator" in result.stderr and "Traceback" not in result.stderr
    registry.add_member("root", "diab-study", "alice", "researcher", date(2024, 6, 30))
    result = _pds(config, "show", "diab-study", actor="alice")
    assert result.returncode == 4 and "expired" in result.stderr


def test_check_of_a_tampered_extract_exits_with_the_refusal_code(settings, runtime, registry, small_lake, tmp_path):
    import polars as pl

    from pds_kernel.errors import DisclosureRisk
    from pds_kernel.extract.build import run_build
    from pds_kernel.extract.spec import parse_spec

    config = _config(settings, tmp_path)
    result = run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")
    cohort = result.path / "COHORT.parquet"
    os.chmod(result.path, 0o755)
    os.chmod(cohort, 0o644)
    tampered = pl.read_parquet(cohort)
    pl.concat([tampered, tampered.head(1).with_columns(pl.lit("0" * 64).alias("PERSON_ID"))]).write_parquet(cohort)
    result = _pds(config, "check", "diab-study")
    assert result.returncode == DisclosureRisk.exit_code, result.stdout + result.stderr
    assert "does not conform" in result.stderr and "Traceback" not in result.stderr
    assert "refused: file COHORT.parquet does not match the SHA-256 recorded in the manifest" in result.stdout
    assert "refused: COHORT holds 1 person(s) outside the cohort" in result.stdout  # counted, never quoted
    assert "0" * 64 not in result.stdout + result.stderr
    assert runtime.audit.entries(action="extract.check")[-1].outcome == "failed"


def test_verify_rehashes_a_real_build_and_records_the_result(settings, runtime, registry, small_lake, tmp_path):
    """``pds extract verify`` on a built extract: OK with the files' state recorded; after a
    same-size change of a file, exit 7, the failure recorded, and workspaces refused (even once the
    bytes are put back, until a verification succeeds again)."""
    from pds_kernel.errors import IntegrityError
    from pds_kernel.extract.build import run_build
    from pds_kernel.extract.mount_check import ExtractRefused, check_for_workspace
    from pds_kernel.extract.spec import parse_spec

    config = _config(settings, tmp_path)
    built = run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")
    publication = runtime.audit.entries(action="extract.build")[-1]
    assert publication.details["files_fingerprint"] and publication.details["bytes"] > 0
    assert all(f.get("size") for entry in built.manifest["tables"].values() for f in entry.get("files", [entry]))
    assert check_for_workspace(settings, runtime.audit, "diab-study").hashed  # small: re-hashed at the start
    result = _pds(config, "verify", "diab-study")
    assert result.returncode == 0 and "is the published one" in result.stdout, result.stdout + result.stderr
    assert runtime.audit.entries(action="extract.verify")[-1].details["files_fingerprint"] == \
        publication.details["files_fingerprint"]

    cohort = built.path / "COHORT.parquet"
    original = cohort.read_bytes()
    os.chmod(cohort, 0o644)
    cohort.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    result = _pds(config, "verify", "diab-study")
    assert result.returncode == IntegrityError.exit_code, result.stdout + result.stderr
    assert "COHORT.parquet is not the published file" in result.stderr and "Traceback" not in result.stderr
    assert runtime.audit.entries(action="extract.verify")[-1].outcome == "failed"
    cohort.write_bytes(original)
    with pytest.raises(ExtractRefused, match="last full verification"):
        check_for_workspace(settings, runtime.audit, "diab-study")
    assert _pds(config, "verify", "diab-study").returncode == 0
    check_for_workspace(settings, runtime.audit, "diab-study")
