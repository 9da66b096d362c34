"""``pds snds`` through the real entry point; mistakes give one line and a non-zero exit code.

Most tests call :func:`pds_kernel.cli.main` in-process with a patched ``sys.argv`` (fast); one runs
the installed ``pds`` script to check the console entry point itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pds_kernel.cli import main

PDS = Path(sys.executable).with_name("pds")


def pds(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["pds", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_generate_writes_a_delivery_and_prints_a_summary(tmp_path, monkeypatch, capsys):
    code, out, err = pds(monkeypatch, capsys, "snds", "generate", "--out", "out", "--patients", "60",
                         "--years", "2023", "--seed", "4")
    assert code == 0, err
    assert "ER_PRS_F" in out and "total" in out
    assert (tmp_path / "out" / "IR_BEN_R.csv").is_file()
    assert len(list((tmp_path / "out").glob("ER_PRS_F_2023??.csv"))) == 12


@pytest.mark.parametrize("years", ["2024-2023", "23-24", "2022-2023-2024", "1800-1801"])
def test_bad_years_are_one_line_errors(tmp_path, monkeypatch, capsys, years):
    code, _, err = pds(monkeypatch, capsys, "snds", "generate", "--out", "out", "--years", years)
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert "years" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_installed_command_reports_a_mistake_in_one_line(tmp_path):
    result = subprocess.run([str(PDS), "snds", "generate", "--out", "out", "--years", "2024-2023"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2  # InvalidInput
    assert result.stderr.strip().splitlines() == ["error: --years 2024-2023: the first year comes after the last"]


def test_non_empty_directory_is_refused_unless_forced(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "ER_PRS_F_201901.csv").write_text("stale")
    args = ("snds", "generate", "--out", "out", "--patients", "30", "--years", "2023")
    code, _, err = pds(monkeypatch, capsys, *args)
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert "not empty" in err
    assert not (out / "IR_BEN_R.csv").exists()

    code, _, err = pds(monkeypatch, capsys, *args, "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"  # not a delivery file: kept
    assert not (out / "ER_PRS_F_201901.csv").exists()  # a stale delivery file: replaced
    assert (out / "IR_BEN_R.csv").is_file()


def test_tables_lists_the_profile_and_the_catalogue(monkeypatch, capsys):
    from pds_kernel.snds.catalogue import entries
    from pds_kernel.snds.tables import TABLES

    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = pds(monkeypatch, capsys, "snds", "tables")
    assert code == 0
    for name in ("IR_BEN_R", "ER_PRS_F", "T_MCOaaC", "KI_CCI_R", "ER_UCD_F", "T_SSRaaB", "BE_IDE_R"):
        assert name in out
    assert f"{len(set(entries()) | set(TABLES))} tables" in out  # every catalogued table + the profile's
    assert "T_MCO23B.csv" in out and "ER_UCD_F_202301.csv" in out
    code, out, _ = pds(monkeypatch, capsys, "snds", "tables", "--product", "PMSI")
    assert code == 0 and "T_HADaaB" in out and "ER_PRS_F" not in out
    code, out, _ = pds(monkeypatch, capsys, "snds", "tables", "T_MCOaaB")
    assert code == 0 and "MS_CIM_V:CIM_COD" in out
    code, out, _ = pds(monkeypatch, capsys, "snds", "tables", "ER_PHA_F")
    assert code == 0 and "PHA_PRS_C13" in out
    code, _, err = pds(monkeypatch, capsys, "snds", "tables", "NOPE")
    assert code == 3 and "NOPE" in err  # NotFound
