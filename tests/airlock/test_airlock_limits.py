"""Airlock limits: loaded from the settings (file or ``PDS_AIRLOCK__*``, parsed by the settings
alone); enforced by the service with a reason (request total size, allowed types)."""

from __future__ import annotations

import pytest
from airlock_factories import PROJECT, SAFE_TABLE, files

from pds_kernel.airlock.checks.filetypes import KINDS
from pds_kernel.airlock.limits import AirlockLimits, load_limits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.errors import InvalidInput
from pds_kernel.settings import load_settings


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    """No pds.yaml in the working directory, no PDS_CONFIG: only what a test passes counts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PDS_CONFIG", raising=False)


def test_defaults(no_config):
    limits = load_limits(load_settings(environ={}))
    assert limits == AirlockLimits()
    assert limits.allowed_extensions == frozenset(KINDS) and ".joblib" not in limits.allowed_extensions


def test_settings_from_the_environment(no_config):
    settings = load_settings(environ={"PDS_AIRLOCK__MAX_TOTAL_BYTES": "1234", "PDS_AIRLOCK__MAX_FILES": "3",
                                      "PDS_AIRLOCK__ALLOWED_EXTENSIONS": "csv, .PNG,", "PDS_AIRLOCK__AUTO_RELEASE": "off"})
    limits = load_limits(settings)
    assert (limits.max_total_bytes, limits.max_files, limits.auto_release) == (1234, 3, False)
    assert limits.allowed_extensions == frozenset({".csv", ".png"})


def test_settings_from_the_config_file(no_config, tmp_path):
    config = tmp_path / "pds.yaml"
    config.write_text("airlock:\n  max_file_bytes: 2048\n  allowed_extensions: '.csv,.txt'\n")
    limits = load_limits(load_settings(config, environ={}))
    assert limits.max_file_bytes == 2048 and limits.allowed_extensions == frozenset({".csv", ".txt"})


def test_defaults_are_written_once_in_the_settings(no_config):
    """AirlockLimits() is what an empty configuration gives: its defaults are the settings'."""
    from dataclasses import fields

    from pds_kernel.settings import Airlock

    limits, section = AirlockLimits(), Airlock()
    for f in fields(AirlockLimits):
        if f.name != "allowed_extensions":  # a set here, the settings' text there ("" = every type)
            assert getattr(limits, f.name) == getattr(section, f.name), f.name
    assert load_limits(load_settings(environ={"OTHER": "x"})) == limits


def test_bad_values_are_refused_with_the_setting_named(no_config):
    with pytest.raises(InvalidInput, match="airlock.max_files: expected an integer"):
        load_settings(environ={"PDS_AIRLOCK__MAX_FILES": "ten"})
    with pytest.raises(InvalidInput, match="airlock.max_total_bytes: expected an integer"):
        load_settings(environ={"PDS_AIRLOCK__MAX_TOTAL_BYTES": "100MB"})
    for extensions in (".exe", "csv,.joblib", ".docx"):  # blocked or without checks: never allowed
        with pytest.raises(InvalidInput, match="no checks exist for"):
            load_limits(load_settings(environ={"PDS_AIRLOCK__ALLOWED_EXTENSIONS": extensions}))


def test_request_total_size_is_enforced(no_config, runtime, registry, settings):
    limits = load_limits(load_settings(environ={"PDS_AIRLOCK__MAX_TOTAL_BYTES": str(len(SAFE_TABLE) * 2 - 1)}))
    svc = AirlockService(runtime, limits=limits, registry=registry)
    with pytest.raises(InvalidInput, match="b.csv is larger than what is left of the request's size limit"):
        svc.create("alice", PROJECT, files(("a.csv", SAFE_TABLE), ("b.csv", SAFE_TABLE)), "why")
    assert [p for p in settings.paths.staging.rglob("*") if p.is_file()] == []
    assert svc.create("alice", PROJECT, files(("a.csv", SAFE_TABLE)), "why").state == "submitted"


def test_allowed_types_setting_is_enforced(no_config, runtime, registry):
    limits = load_limits(load_settings(environ={"PDS_AIRLOCK__ALLOWED_EXTENSIONS": ".csv"}))
    svc = AirlockService(runtime, limits=limits, registry=registry)
    with pytest.raises(RefusedFiles, match=r"notes.txt: file type .txt is not allowed .*\(allowed: .csv\)"):
        svc.create("alice", PROJECT, files(("a.csv", SAFE_TABLE), ("notes.txt", b"method\n")), "why")
