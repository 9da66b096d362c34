from pathlib import Path

import pytest

from pds_kernel.errors import InvalidInput
from pds_kernel.settings import load_settings


def test_defaults_resolve_against_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.paths.lake == (tmp_path / "var/lake").resolve()
    assert s.database_url == f"sqlite:///{(tmp_path / 'var/state/pds.db').resolve()}"
    assert s.disclosure.min_cell == 10


def test_file_then_environment_override(tmp_path):
    cfg = tmp_path / "conf" / "pds.yaml"
    cfg.parent.mkdir()
    cfg.write_text("paths:\n  lake: data/lake\ndisclosure:\n  min_cell: 5\n")
    s = load_settings(cfg, environ={"PDS_DISCLOSURE__MIN_CELL": "7", "PDS_PATHS__OUTBOX": "/srv/out"})
    assert s.paths.lake == (tmp_path / "conf/data/lake").resolve()
    assert s.disclosure.min_cell == 7
    assert s.paths.outbox == Path("/srv/out")


@pytest.mark.parametrize(
    "text, message",
    [
        ("nope:\n  a: 1\n", "unknown section 'nope'"),
        ("paths:\n  lakes: x\n", "unknown setting paths.lakes"),
        ("disclosure:\n  min_cell: ten\n", "expected an integer"),
        ("- a\n- b\n", "must hold a mapping"),
    ],
)
def test_bad_config_gives_clear_error(tmp_path, text, message):
    cfg = tmp_path / "pds.yaml"
    cfg.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_settings(cfg, environ={})


def test_repository_default_config_loads():
    s = load_settings(Path(__file__).parents[2] / "pds.yaml", environ={})
    assert s.hub.port == 8000 and s.ingest.encoding == "latin-1"
