"""``pds extract destroy-key``: only an administrator, only once the project is over, only with --yes.

Runs the real ``pds`` entry point (``pds_kernel.cli.main``: one error line, the error's exit code)
in-process, on the small lake and the registry of the extract fixtures."""

from __future__ import annotations

import getpass
import sys
from dataclasses import fields
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from extract_lake import DIABETES_SPEC, write_spec

from pds_kernel.cli import main
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.extract.build import run_build
from pds_kernel.extract.spec import parse_spec
from pds_kernel.pseudo import KeyStore


@pytest.fixture
def pds(settings, tmp_path, monkeypatch, capsys):
    """``pds(*args, actor=...)`` -> (exit code, stdout, stderr)."""
    paths = {f.name: str(getattr(settings.paths, f.name)) for f in fields(settings.paths)}
    monkeypatch.setenv("COLUMNS", "300")

    def run(*args: str, actor: str) -> tuple[int, str, str]:
        # the CLI acts as its OS user, mapped to ``actor`` by the configuration (cli.identities)
        config = tmp_path / f"pds-{actor}.yaml"
        config.write_text(yaml.safe_dump({"paths": paths, "cli": {"identities": {getpass.getuser(): actor}}}))
        monkeypatch.setattr(sys, "argv", ["pds", "--config", str(config), *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def built(runtime, registry, small_lake):
    return run_build(runtime, "diab-study", parse_spec(DIABETES_SPEC), actor="root")


def _key_file(runtime, project: str) -> Path:
    return runtime.settings.paths.keys / f"{project}.key"


def _destroy_entries(runtime, outcome: str):
    return [e for e in runtime.audit.entries(action="pseudo.key.destroy") if e.outcome == outcome]


def test_a_researcher_is_refused_and_the_refusal_audited(runtime, registry, built, pds):
    registry.close_project("root", "diab-study", reason="end of study")
    for actor in ("alice", "mallory"):  # a member of the project, and an identity the registry lacks
        code, _out, err = pds("extract", "destroy-key", "diab-study", "--yes", actor=actor)
        assert code == PermissionDenied.exit_code
        assert f"{actor} may not destroy pseudonymisation keys: only an administrator may" in err
    assert _key_file(runtime, "diab-study").is_file()
    denied = _destroy_entries(runtime, "denied")
    assert [(e.actor, e.project, e.target) for e in denied] == [
        ("alice", "diab-study", "key:diab-study"), ("mallory", "diab-study", "key:diab-study")]
    assert "only an administrator" in denied[0].details["reason"]
    assert not _destroy_entries(runtime, "ok")


def test_refused_while_the_project_is_open_or_suspended(runtime, registry, built, pds):
    code, _out, err = pds("extract", "destroy-key", "diab-study", "--yes", actor="root")
    assert code == PermissionDenied.exit_code
    assert "project diab-study is active until 2099-12-31: close it" in err
    registry.upsert_project("root", "diab-study", status="suspended")
    code, _out, err = pds("extract", "destroy-key", "diab-study", "--yes", actor="root")
    assert code == PermissionDenied.exit_code and "is suspended" in err
    assert _key_file(runtime, "diab-study").is_file()
    assert [e.actor for e in _destroy_entries(runtime, "denied")] == ["root", "root"]


def test_refused_without_yes(runtime, registry, built, pds):
    registry.close_project("root", "diab-study", reason="end of study")
    code, _out, err = pds("extract", "destroy-key", "diab-study", actor="root")
    assert code == InvalidInput.exit_code
    assert "cannot be undone: confirm it (--yes)" in err
    assert _key_file(runtime, "diab-study").is_file()
    assert not _destroy_entries(runtime, "ok")


def test_an_administrator_destroys_the_key_and_later_builds_are_refused(runtime, registry, built, pds, tmp_path):
    key_before = KeyStore.from_runtime(runtime).get("diab-study")
    registry.close_project("root", "diab-study", reason="end of study")
    code, out, err = pds("extract", "destroy-key", "diab-study", "--yes", actor="root")
    assert code == 0, err
    assert "key of project diab-study destroyed" in out
    assert not _key_file(runtime, "diab-study").exists()
    assert (runtime.settings.paths.keys / "diab-study.destroyed").is_file()
    [entry] = _destroy_entries(runtime, "ok")
    assert (entry.actor, entry.project, entry.target) == ("root", "diab-study", "key:diab-study")
    assert key_before.hex() not in str(runtime.audit.entries()) + out + err
    # the published extract stays; only its link to the lake is gone
    assert (built.path / "COHORT.parquet").is_file()

    spec = str(write_spec(tmp_path, DIABETES_SPEC))
    code, _out, err = pds("extract", "build", "diab-study", "--spec", spec, actor="root")
    assert code == PermissionDenied.exit_code and "project diab-study is closed" in err
    # even if the project were opened again, the tombstone refuses a new key: no silent new pseudonyms
    registry.upsert_project("root", "diab-study", status="active")
    code, _out, err = pds("extract", "build", "diab-study", "--spec", spec, actor="root")
    assert code == PermissionDenied.exit_code
    assert "the key of project diab-study was destroyed at the end of the project" in err
    assert runtime.audit.entries(action="extract.build")[-1].outcome == "failed"
    code, _out, err = pds("extract", "destroy-key", "diab-study", "--yes", actor="root")
    assert code == PermissionDenied.exit_code  # open again: refused before looking for the key


def test_a_project_past_its_end_date_may_have_its_key_destroyed(runtime, registry, small_lake, pds):
    yesterday = date.today() - timedelta(days=1)
    registry.upsert_project("root", "mi-study", end_date=yesterday)  # still "active", but over
    KeyStore.from_runtime(runtime).ensure("mi-study", "root")
    code, _out, err = pds("extract", "destroy-key", "mi-study", "--yes", actor="root")
    assert code == 0, err
    assert not _key_file(runtime, "mi-study").exists()


def test_the_library_applies_the_rule_to_every_caller(runtime, registry, built):
    """Not only the CLI: KeyStore.destroy itself refuses, and a store without a registry refuses all."""
    registry.close_project("root", "diab-study", reason="end of study")
    with pytest.raises(PermissionDenied, match="only an administrator"):
        KeyStore.from_runtime(runtime).destroy("diab-study", "alice", confirm=True)
    with pytest.raises(PermissionDenied, match="needs the project registry"):
        KeyStore(runtime.settings.paths.keys, runtime.audit).destroy("diab-study", "os:ops", confirm=True)
    assert _key_file(runtime, "diab-study").is_file()
