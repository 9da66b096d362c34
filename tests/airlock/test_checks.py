"""Disclosure checks on hand-built tables with known answers, and on ACRO's own outputs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pds_kernel.airlock.checks import Thresholds, check_file, content

T = Thresholds()


def run(tmp_path: Path, name: str, data: bytes, **kw):
    path = tmp_path / name
    path.write_bytes(data)
    return check_file(path, name, kw.pop("thresholds", T), **kw)


def cells(result, rule):
    return sorted((f.row, f.col) for f in result.findings if f.rule == rule)


COUNTS = {"tables": {"t.csv": {"counts": ["count"]}}}  # declared: distinct persons


def test_safe_count_table_passes_when_declared(tmp_path):
    # issue #12: undeclared counts are not verifiable (are they distinct persons?): review, not pass
    data = b"age;count\n18-40;120\n40-65;230\n"
    r = run(tmp_path, "t.csv", data, context=COUNTS)
    assert r.status.value == "pass" and r.findings == []
    undeclared = run(tmp_path, "t.csv", data)
    assert undeclared.status.value == "review" and "undeclared" in undeclared.rule_status


def test_small_cells_zero_and_margin(tmp_path):
    data = b"sex,A,B,Total\nM,12,5,17\nF,0,*,20\nTotal,12,25,37\n"
    r = run(tmp_path, "t.csv", data)
    assert r.status.value == "fail"
    assert cells(r, "small-cell") == [(0, 2)]
    assert cells(r, "zero") == [(1, 1)]
    assert cells(r, "margin-recovery") == [(1, 2)]


def test_two_suppressed_cells_in_row_are_not_recoverable_from_that_row(tmp_path):
    data = b"g,A,B,C,Total\nx,*,*,30,50\ny,20,20,30,70\n"
    r = run(tmp_path, "t.csv", data)
    assert cells(r, "margin-recovery") == []


def test_threshold_is_per_project(tmp_path):
    data = b"g,n\na,5\nb,40\n"
    declared = {"tables": {"t.csv": {"counts": ["n"]}}}
    assert run(tmp_path, "t.csv", data, context=declared).status.value == "fail"
    assert run(tmp_path, "t.csv", data, context=declared, thresholds=Thresholds(min_cell=3)).status.value == "pass"


def test_year_index_is_a_label_not_a_count(tmp_path):
    r = run(tmp_path, "t.csv", b"year,n\n2010,50\n2011,60\n2012,70\n", context={"tables": {"t.csv": {"counts": "n"}}})
    assert r.status.value == "pass"


def test_magnitudes_without_evidence_need_review(tmp_path):
    r = run(tmp_path, "t.csv", b"g,mean_cost\na,10.5\nb,20.25\n")
    assert r.status.value == "review" and "magnitude" in r.rule_status


@pytest.mark.parametrize("value", ["ab" * 32, "1 85 12 75 123 456 78"])
def test_identifiers_in_tables_are_refused(tmp_path, value):
    # issue #12: a column of person identifiers is a pre-gate (refused), no longer a cell finding
    r = run(tmp_path, "t.csv", f"person,n\nx,50\n{value},60\n".encode())
    assert r.verdict == "refused" and r.rule_status["person-identifier"].value == "fail"
    assert [f.col for f in r.findings if f.rule == "person-identifier"] == [0]


def test_dates_free_text_in_tables(tmp_path):
    data = (b"group,when,note,n\na,2021-03-04,ok,50\n"
            b"b,2021-03,this is a long sentence written by hand about one patient,60\n")
    r = run(tmp_path, "t.csv", data)
    assert r.status.value == "review"
    assert cells(r, "day-date") == [(0, 1)]
    assert cells(r, "free-text") == [(1, 2)]


@pytest.mark.parametrize("header", ["BEN_NIR_PSA", "PERSON_ID", "person_id"])
def test_person_key_header_is_refused(tmp_path, header):
    r = run(tmp_path, "t.csv", f"{header},n\nx,50\n".encode())
    assert r.verdict == "refused" and r.rule_status["person-identifier"].value == "fail"
    assert [f.col for f in r.findings if f.rule == "person-identifier"] == [0]


@pytest.mark.parametrize("value,hit", [
    ("185127512345678", True), ("2 85 03 2A 123 456 78", True), ("12345", False),
    ("the year 2021 had 123456789012 rows", False), ("3851275123456", False),
])
def test_nir_pattern(value, hit):
    assert bool(content.NIR.search(value)) == hit


def test_text_files_always_need_review(tmp_path):
    assert run(tmp_path, "notes.txt", b"Method: logistic regression.\n").status.value == "review"
    r = run(tmp_path, "notes.txt", b"ok\nborn 04/03/1985\n")
    assert [f.line for f in r.findings if f.rule == "day-date"] == [2]


def _png() -> bytes:
    raw = b"\x00\x00"  # the filter byte and the one pixel: more would be data no viewer shows
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_figures_need_their_table(tmp_path):
    alone = run(tmp_path, "plot.png", _png())
    assert alone.status.value == "fail"
    paired = run(tmp_path, "plot.png", _png(), other_files=["plot.csv"])
    assert paired.status.value == "review"
    declared = run(tmp_path, "fig1.png", _png(), other_files=["t.csv"], context={"figures": {"fig1.png": "t.csv"}})
    assert declared.status.value == "review"


@pytest.mark.parametrize("name,data,why", [
    ("x.zip", b"PK\x03\x04", "blocked"), ("x.pkl", b"\x80\x04", "blocked"), ("x.exe", b"MZ", "blocked"),
    ("m.joblib", b"\x80\x04\x95", "pickles"),
    ("x.docx", b"PK", "not allowed"), ("x.png", b"MZ\x90\x00", "not PNG"), ("x.csv", b"\x7fELF\x02", "binary"),
])
def test_blocked_unknown_and_disguised_types_fail(tmp_path, name, data, why):
    r = run(tmp_path, name, data)
    assert r.status.value == "fail" and why in r.findings[0].message


def _onnx() -> bytes:
    """A genuine (tiny) ONNX model: the gate validates the whole protobuf, not the first byte."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph).SerializeToString()


def test_models_need_review(tmp_path):
    assert run(tmp_path, "m.onnx", _onnx()).status.value == "review"


def test_parquet_and_xlsx_tables(tmp_path):
    frame = pd.DataFrame({"g": ["a", "b"], "n": [3, 40]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_excel(tmp_path / "t.xlsx", index=False)
    for name in ("t.parquet", "t.xlsx"):
        r = check_file(tmp_path / name, name, T)
        assert cells(r, "small-cell") == [(0, 1)]


# ---- ACRO's own examples ---------------------------------------------------------------------
@pytest.fixture
def acro_data():
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame({"year": rng.choice([2010, 2011, 2012], n),
                          "grant": rng.choice(list("ABCDEFG"), n, p=[.4, .3, .1, .1, .05, .04, .01]),
                          "inc": rng.exponential(1000, n)})
    frame.loc[0, "inc"] = 1e7  # one dominant contributor in cell (year of row 0, grant of row 0)
    return frame


def test_acro_record_drives_magnitude_checks(tmp_path, acro_data):
    from pds_kernel import sdc

    session = sdc.Session(Thresholds())
    table = session.crosstab(acro_data.year, acro_data.grant, values=acro_data.inc, aggfunc="mean")
    out = session.save(table, tmp_path / "means.csv")
    evidence = session.evidence()
    record = evidence["means.csv"]
    assert record["sdc"]["cells"]["NKCheck"]
    r = check_file(out, "means.csv", T, evidence={**record, "source": "acro"})
    assert r.status.value == "fail"
    nk = {(f.row, f.col) for f in r.findings if f.rule == "dominance"}
    assert nk == {(int(a), int(b) + 1) for a, b in record["sdc"]["cells"]["NKCheck"]}


def test_acro_counts_agree_with_our_small_cell_rule(tmp_path, acro_data):
    from pds_kernel import sdc

    session = sdc.Session(Thresholds())
    table = session.crosstab(acro_data.year, acro_data.grant)
    out = session.save(table, tmp_path / "counts.csv")
    ours = check_file(out, "counts.csv", T)
    theirs = session.evidence()["counts.csv"]["sdc"]["cells"]["MinimumThresholdCheck"]
    assert cells(ours, "small-cell") == sorted((int(a), int(b) + 1) for a, b in theirs)


def test_acro_regression_dof(tmp_path):
    import statsmodels.api as sm

    from pds_kernel import sdc

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"x": rng.normal(size=14)})
    session = sdc.Session(Thresholds(min_dof=20))
    model = session.ols(rng.normal(size=14), sm.add_constant(x))
    out = session.save(model, tmp_path / "ols.csv")
    record = session.evidence()["ols.csv"]
    r = check_file(out, "ols.csv", Thresholds(min_dof=20), evidence={**record, "source": "acro"})
    assert r.rule_status["dof"].value == "fail"


@pytest.mark.parametrize(("share", "review"), [(0.91, True), (0.89, False), (0.95, True)])
def test_counts_mostly_one_number_ask_for_review(share, review):
    """The most common count is found as the median's copies (no sort): exact at the 90 % line,
    wherever the repeated number stands among the others."""
    from pds_kernel.airlock.checks import pregates

    n = 1000
    repeated = int(share * n)
    for constant in (10.0, 500.0, 2000.0):  # below, among and above the other counts
        counts = np.concatenate([np.full(repeated, constant), np.arange(n - repeated) + 11.5])
        np.random.default_rng(0).shuffle(counts)
        frame = pd.DataFrame({"g": [f"g{i}" for i in range(n)], "n": counts})
        found = pregates.check_microdata(frame, [0], [counts])
        assert any("counts are the same number" in f.message for f in found) == review, (share, constant)
