"""``%request_export``: the notebook-friendly way to ask for an export (loaded with %load_ext)."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from pds_kernel import workspace as ws
from pds_kernel.errors import InvalidInput


def test_magic_line_is_files_then_justification():
    assert ws._parse_magic_line("a.csv 'my fig.png' -- counts per month") == (
        ["a.csv", "my fig.png"], "counts per month")
    for bad in ("a.csv", "a.csv --", "-- why", "'a.csv -- why"):
        with pytest.raises(InvalidInput):
            ws._parse_magic_line(bad)


def test_load_ext_registers_the_magic_and_refusals_are_one_line(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("n\n12\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "pds_kernel.workspace")
        assert "request_export" in shell.magics_manager.magics["line"]
        result = shell.run_line_magic("request_export", f"{outside} -- counts")
        assert result is None
        out = capsys.readouterr().out
        assert out.startswith("export refused:") and "not in your home" in out
        assert out.count("\n") == 1
    finally:
        InteractiveShell.clear_instance()
