"""docs/configuration.md documents every setting, with its real default and environment variable."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from pds_kernel.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_with_its_default():
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    defaults = Settings()
    for section in fields(Settings):
        for f in fields(getattr(defaults, section.name)):
            key = f"{section.name}.{f.name}"
            env = f"PDS_{section.name.upper()}__{f.name.upper()}"
            rows = [line for line in page.splitlines() if line.startswith(f"| `{key}` |")]
            assert len(rows) == 1, f"{key} is not documented (once) in docs/configuration.md"
            assert f"`{env}`" in rows[0]
            value = getattr(getattr(defaults, section.name), f.name)
            text = str(value).lower() if isinstance(value, bool) else value  # as written in YAML
            shown = "empty" if value == "" else f"`{text}`"
            assert f"| {shown} |" in rows[0], f"{key}: default {value!r} not shown as {shown}"


def test_the_documented_default_file_loads_and_matches_the_defaults():
    settings = load_settings(REPO / "pds.yaml", environ={})
    defaults = Settings()
    for section in (f.name for f in fields(Settings) if f.name != "paths"):
        assert getattr(settings, section) == getattr(defaults, section)
    assert settings.paths.lake == (REPO / "var" / "lake").resolve()


def test_environment_overrides_the_file(tmp_path):
    config = tmp_path / "pds.yaml"
    config.write_text("hub: {port: 9000}\npaths: {lake: data/lake}\n")
    settings = load_settings(config, environ={"PDS_HUB__PORT": "9100", "PDS_DATABASE__URL": "sqlite:///x.db"})
    assert settings.hub.port == 9100 and settings.paths.lake == tmp_path / "data" / "lake"
    assert settings.database_url == "sqlite:///x.db"
