"""Files crafted to smuggle data past the gate's disclosure checks (issue #12), each submitted for
real: to the checks, or to the gate's service on a real database. An attack fails when the file
does not ``pass`` (and, for the pre-gates, when the gate refuses it before it becomes part of a
request). Thresholds as in the issue: 10 persons, dominance n=2 k=90 %.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
from disclosure_support import PROJECT, build_service, check, files, pickle_zip

from pds_kernel.airlock.staging import RefusedFiles, request_dir

RNG = np.random.default_rng(12)


def person_level(rows: int) -> pd.DataFrame:
    """One row per person, integer columns only: what a count table looks like to a naive check."""
    return pd.DataFrame({"age": RNG.integers(18, 90, rows), "sex": RNG.integers(1, 3, rows),
                         "visits": RNG.integers(0, 30, rows), "cost": RNG.integers(0, 5000, rows)})


@pytest.mark.parametrize("name", ["persons.csv", "persons.parquet"])
def test_person_level_file_of_100000_rows_is_refused(tmp_path, name):
    r = check(tmp_path, name, person_level(100_000))
    assert r.verdict == "refused" and r.rule_status["max-rows"].value == "fail"


def test_person_level_file_under_the_row_limit_is_refused_as_microdata(tmp_path):
    neutral = person_level(3_000).rename(columns={"age": "c1", "sex": "c2", "visits": "c3", "cost": "c4"})
    r = check(tmp_path, "t.csv", neutral)
    assert r.verdict == "refused" and r.rule_status["microdata"].value == "fail"


def test_nir_numbers_in_an_unsorted_numeric_column_with_a_neutral_header_are_refused(tmp_path):
    frame = pd.DataFrame({"group": list("abcdef"),
                          "code": [41, 185127512345678, 7, 295039912345612, 12, 3],
                          "n": [50, 60, 70, 80, 90, 100]})
    r = check(tmp_path, "t.csv", frame, context={"tables": {"t.csv": {"labels": ["group", "code"], "counts": ["n"]}}})
    assert r.verdict == "refused" and r.rule_status["person-identifier"].value == "fail"
    assert "185127512345678" not in json.dumps(r.to_dict())  # the finding does not repeat the identifier


def test_nir_written_as_text_with_spaces_in_a_value_column_is_refused(tmp_path):
    data = b"region;note;n\nN;ok;50\nS;1 85 12 75 123 456 78;60\n"
    assert check(tmp_path, "t.csv", data).verdict == "refused"


def test_the_start_of_a_project_person_id_is_refused(tmp_path):
    pid = "3fa9c0d2e1b4" + "7" * 52
    r = check(tmp_path, "t.csv", f"key,n\n{pid[:16]},50\nzz,60\n".encode(), known_ids=frozenset({pid[:12]}))
    assert r.verdict == "refused" and "PERSON_ID" in r.refusals[0]


def test_sums_with_whole_numbers_are_not_taken_for_counts(tmp_path):
    # ACRO writes 10500.0 for a sum; 10524 looks like a count
    r = check(tmp_path, "t.csv", b"region,cost\nN,10524\nS,10500.0\nE,20013\n")
    assert r.verdict != "pass" and "undeclared" in r.rule_status


def test_dominated_sum_declared_with_its_contributions_fails(tmp_path):
    declared = {"labels": ["region"], "magnitudes": {"cost": "sum"},
                "contributions": {"cost": [[20, 10524, [9000, 1000]], [25, 20000, [2000, 1500]]]}}
    r = check(tmp_path, "t.csv", b"region,cost\nN,10524\nS,20000\n", context={"tables": {"t.csv": declared}})
    assert r.verdict == "fail" and [(f.row, f.col) for f in r.findings if f.rule == "dominance"] == [(0, 1)]


def test_contributions_that_do_not_reproduce_the_cell_are_not_trusted(tmp_path):
    # harmless-looking contributions attached to another total: the gate checks they add up
    declared = {"labels": ["region"], "magnitudes": {"cost": "sum"},
                "contributions": {"cost": [[20, 50000, [2000, 1500]]]}}
    r = check(tmp_path, "t.csv", b"region,cost\nN,10524\n", context={"tables": {"t.csv": declared}})
    assert r.verdict == "review" and "dominance" not in r.rule_status


def test_a_total_row_exceeding_its_visible_cells_by_3_fails(tmp_path):
    r = check(tmp_path, "t.csv", b"sex,n\nM,50\nF,60\nTotal,113\n", context={"tables": {"t.csv": {"counts": ["n"]}}})
    assert r.verdict == "fail" and r.rule_status["differencing"].value == "fail"


def test_a_total_column_exceeding_its_cells_by_2_fails(tmp_path):
    data = b"year,A,B,All\n2020,40,50,92\n2021,45,55,100\n"
    r = check(tmp_path, "t.csv", data, context={"tables": {"t.csv": {"counts": ["A", "B", "All"]}}})
    assert r.verdict == "fail" and [(f.row, f.col) for f in r.findings if f.rule == "differencing"] == [(0, 3)]


def test_declaring_the_count_column_a_label_does_not_pass(tmp_path):
    r = check(tmp_path, "t.csv", b"group,n\na,3\nb,4\n", context={"tables": {"t.csv": {"labels": ["group", "n"]}}})
    assert r.verdict != "pass"


def test_exact_dates_of_birth_are_refused(tmp_path):
    r = check(tmp_path, "t.csv", b"date_of_birth,n\n1985-03-04,50\n1990-11-23,60\n")
    assert r.verdict == "refused" and r.rule_status["exact-date"].value == "fail"


def test_seventeen_character_keys_are_refused(tmp_path):
    r = check(tmp_path, "t.csv", b"ref,n\nA1B2C3D4E5F6G7H8J,50\nb,60\n")
    assert r.verdict == "refused"


def test_pickle_renamed_model_pt_is_refused(tmp_path):
    r = check(tmp_path, "model.pt", pickle.dumps({"rows": [[1, 2], [3, 4]]}, protocol=4))
    assert r.verdict == "refused" and r.rule_status["pickle"].value == "fail"


def test_text_pickle_renamed_csv_is_refused(tmp_path):
    # a protocol-0 pickle is ASCII: it would pass a binary-content test
    data = pickle.dumps(OrderedDict(rows=[[185, 12], [290, 3]]), protocol=0)
    r = check(tmp_path, "table.csv", data)
    assert r.verdict == "refused"


@pytest.mark.parametrize("name", ["model.pt", "model.onnx", "model.skops"])
def test_zip_holding_a_pickle_is_refused_whatever_its_name(tmp_path, name):
    r = check(tmp_path, name, pickle_zip())
    assert r.verdict == "refused"


def test_base64_block_in_a_notebook_fails(tmp_path):
    payload = base64.b64encode(RNG.bytes(8192)).decode()
    notebook = {"cells": [{"cell_type": "code", "source": [f"data = '{payload}'\n"], "outputs": [],
                           "metadata": {}, "execution_count": None}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    r = check(tmp_path, "analysis.ipynb", json.dumps(notebook).encode())
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


def test_notebook_output_printing_a_nir_fails(tmp_path):
    notebook = {"cells": [{"cell_type": "code", "source": ["df.head()"], "execution_count": 1, "metadata": {},
                           "outputs": [{"output_type": "stream", "name": "stdout",
                                        "text": ["   nir  cost\n", "0  185127512345678  12\n"]}]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    r = check(tmp_path, "analysis.ipynb", json.dumps(notebook).encode())
    assert r.verdict == "fail" and r.rule_status["identifier"].value == "fail"


def test_literal_table_in_a_script_fails(tmp_path):
    rows = "\n".join(f"    [{RNG.integers(18, 90)}, {RNG.integers(1, 3)}, {RNG.integers(0, 5000)}]," for _ in range(40))
    r = check(tmp_path, "rebuild.py", f"rows = [\n{rows}\n]\n".encode())
    assert r.verdict == "fail" and r.rule_status["embedded-data"].value == "fail"


# ---- against the gate's service: refused at submission, never staged, differencing across releases
def test_person_level_file_is_refused_at_submission_and_never_staged(runtime):
    service, _ = build_service(runtime)
    buffer = io.BytesIO()
    person_level(6_000).to_parquet(buffer, index=False)
    with pytest.raises(RefusedFiles, match="persons.parquet") as refused:
        service.create("alice", PROJECT, files(("persons.parquet", buffer.getvalue())), "table 1")
    assert "6000 rows" in refused.value.reasons["persons.parquet"]
    assert service.list_requests("alice") == []
    staged = list((runtime.settings.paths.staging / PROJECT).rglob("*")) if \
        (runtime.settings.paths.staging / PROJECT).exists() else []
    assert [p for p in staged if p.is_file()] == []


def test_differencing_against_a_released_table_is_flagged_with_both_request_ids(runtime):
    service, _ = build_service(runtime)
    declared = {"tables": {"t.csv": {"labels": ["region"], "counts": ["persons"]}}}
    first = b"region,persons\nN,120\nS,230\nE,310\n"
    view = service.create("alice", PROJECT, files(("t.csv", first)), "all adults", declared)
    assert view.files[0].check_status == "pass"
    for who in ("olga", "omar"):
        service.review(who, view.id, {0: {"decision": "approve"}})
    service.release("olga", view.id)
    second = b"region,persons\nN,117\nS,230\nE,310\n"  # "adults but one age": 3 persons isolated
    again = service.create("alice", PROJECT, files(("t.csv", second)), "adults over 19", declared)
    assert again.files[0].check_status == "review"
    f = service.get_request("olga", again.id).files[0]  # the checker's view: the author's is redacted
    message = next(x["message"] for x in f.check["findings"] if x["rule"] == "differencing")
    assert view.id in message and again.id in message
    assert request_dir(runtime.settings.paths.staging, PROJECT, again.id).is_dir()
