"""Issue #12: what a pass means (declared tables), the rules on common outputs (rounding,
suppression, zeros, percentages, survival tables, regressions, magnitudes), code and models,
and `pds airlock check` / `ws.check`, each asserting the verdict."""

from __future__ import annotations

import getpass
import io
import json
import struct
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from airlock_factories import PROJECT, files
from typer.testing import CliRunner

from pds_kernel.airlock.checks import Thresholds, check_file

T = Thresholds()



def _as(cfg, user: str) -> str:
    """The configuration ``cfg`` with the OS user running the tests mapped to registry user ``user``
    (``cli.identities``): the CLI acts as its OS user, ``--as`` is for administrators only."""
    data = yaml.safe_load(cfg.read_text())
    data["cli"] = {"identities": {getpass.getuser(): user}}
    path = cfg.with_name(f"pds-as-{user}.yaml")
    path.write_text(yaml.safe_dump(data))
    return str(path)

def run(tmp_path: Path, name: str, data: bytes, declared: dict | None = None, **kw):
    path = tmp_path / name
    path.write_bytes(data)
    context = {"tables": {name: declared}} if declared is not None else kw.pop("context", None)
    return check_file(path, name, kw.pop("thresholds", T), context=context, **kw)


def where(result, rule):
    return sorted((f.row, f.col) for f in result.findings if f.rule == rule)


# ---- the correct table of the issue, and what pass means ---------------------------------------
YEAR_SEX = b"year,BEN_SEX_COD,persons\n2019,1,52\n2019,2,60\n2020,1,70\n2020,2,81\n"


def test_year_by_sex_code_is_not_read_as_counts(tmp_path):
    undeclared = run(tmp_path, "t.csv", YEAR_SEX)
    assert undeclared.verdict == "review" and "small-cell" not in undeclared.rule_status  # was fail: 1 < 10
    assert run(tmp_path, "t.csv", YEAR_SEX, {"counts": ["persons"]}).verdict == "pass"


def test_declared_small_cell_names_the_cell_by_its_labels(tmp_path):
    r = run(tmp_path, "t.csv", YEAR_SEX.replace(b"81", b"4"), {"counts": ["persons"]})
    finding = next(f for f in r.findings if f.rule == "small-cell")
    assert r.verdict == "fail" and finding.cell == "year=2020, BEN_SEX_COD=2 / persons"
    assert "threshold of 10" in finding.message


def test_counts_of_rows_need_review(tmp_path):
    r = run(tmp_path, "t.csv", b"month,claims\n2020-01,120\n2020-02,130\n", {"counts": ["claims"], "unit": "rows"})
    assert r.verdict == "review" and "unit" in r.rule_status


def test_declaration_of_other_bytes_is_ignored(tmp_path):
    r = run(tmp_path, "t.csv", YEAR_SEX, {"counts": ["persons"], "sha256": "0" * 64})
    assert r.verdict == "review" and "declaration" in r.rule_status


# ---- rounding, suppression, zeros, percentages -------------------------------------------------
def test_rounded_counts_pass_and_rounding_does_not_rescue_a_small_cell(tmp_path):
    assert run(tmp_path, "t.csv", b"g,n\na,15\nb,40\n", {"counts": ["n"], "rounding": 5}).verdict == "pass"
    assert run(tmp_path, "t.csv", b"g,n\na,5\nb,40\n", {"counts": ["n"], "rounding": 5}).verdict == "fail"
    off = run(tmp_path, "t.csv", b"g,n\na,17\nb,40\n", {"counts": ["n"], "rounding": 5})
    assert off.verdict == "review" and "rounding" in off.rule_status


@pytest.mark.parametrize("rounding", [5.7, True, "\u0665", "5 ", -5.5])
def test_a_rounding_base_that_is_not_a_whole_number_is_not_taken_as_one(tmp_path, rounding):
    """``int()`` read 5.7 as 5, True as 1 and "٥" (Arabic-Indic 5) as 5: the table passed as if
    rounded to a base the researcher never declared. The declaration is now a problem to review."""
    result = run(tmp_path, "t.csv", b"g,n\na,15\nb,40\n", {"counts": ["n"], "rounding": rounding})
    assert result.verdict == "review"
    assert any("rounding" in f.message and "not a whole number" in f.message for f in result.findings)
    assert run(tmp_path, "u.csv", b"g,n\na,15\nb,40\n", {"counts": ["n"], "rounding": 5.0}).verdict == "pass"


def test_primary_and_secondary_suppression(tmp_path):
    counts = {"counts": ["A", "B", "C", "Total"]}
    alone = b"g,A,B,C,Total\nx,*,30,40,75\ny,20,20,30,70\nTotal,25,50,70,145\n"
    assert run(tmp_path, "t.csv", alone, counts).rule_status["margin-recovery"].value == "fail"
    paired = b"g,A,B,C,Total\nx,*,*,40,75\ny,*,*,30,70\nTotal,45,50,70,145\n"
    r = run(tmp_path, "t.csv", paired, counts)
    assert "margin-recovery" not in r.rule_status and r.verdict == "pass"
    hidden_sum_small = b"g,A,B,C,Total\nx,*,*,40,47\ny,20,20,30,70\n"
    assert run(tmp_path, "t.csv", hidden_sum_small, counts).rule_status["differencing"].value == "fail"


def test_zero_cells_need_review(tmp_path):
    r = run(tmp_path, "t.csv", b"g,n\na,0\nb,40\n", {"counts": ["n"]})
    assert r.verdict == "review" and where(r, "zero") == [(0, 1)]


def test_percentages_pass_with_their_counts_and_need_review_alone(tmp_path):
    both = run(tmp_path, "t.csv", b"g,n,pct\na,40,40.0\nb,60,60.0\n",
               {"counts": ["n"], "magnitudes": {"pct": "percent"}})
    assert both.verdict == "pass"
    alone = run(tmp_path, "t.csv", b"g,pct\na,40.0\nb,60.0\n", {"labels": ["g"], "magnitudes": {"pct": "percent"}})
    assert alone.verdict == "review"


# ---- survival tables and regressions -----------------------------------------------------------
def test_survival_table_by_year_passes_and_by_day_fails(tmp_path):
    declared = {"labels": ["time"], "counts": ["at_risk", "events"], "magnitudes": {"survival": "survival"}}
    yearly = b"time,at_risk,events,survival\n1,500,40,0.92\n2,460,35,0.85\n3,425,30,0.79\n"
    assert run(tmp_path, "s.csv", yearly, declared).verdict == "pass"
    daily = b"time,at_risk,events,survival\n1,500,1,0.998\n2,499,2,0.994\n3,497,1,0.992\n"
    r = run(tmp_path, "s.csv", daily, declared)
    assert r.verdict == "fail" and where(r, "small-cell") == [(0, 2), (1, 2), (2, 2)]


def _ols(tmp_path, rows: int, min_dof: int):
    import statsmodels.api as sm

    from pds_kernel import sdc

    rng = np.random.default_rng(3)
    x = pd.DataFrame({"x": rng.normal(size=rows)})
    session = sdc.Session(Thresholds(min_dof=min_dof))
    out = session.save(session.ols(rng.normal(size=rows), sm.add_constant(x)), tmp_path / "ols.csv")
    context = {"tables": sdc.declarations_for([out]), "acro": sdc.evidence_for([out])}
    return check_file(out, "ols.csv", Thresholds(min_dof=min_dof), context=context,
                      evidence={**context["acro"]["ols.csv"], "source": "acro"})


def test_regression_with_enough_degrees_of_freedom_passes(tmp_path):
    assert _ols(tmp_path, 200, 10).verdict == "pass"


def test_regression_with_too_few_degrees_of_freedom_fails(tmp_path):
    r = _ols(tmp_path, 14, 20)
    assert r.verdict == "fail" and r.rule_status["dof"].value == "fail"


def test_undeclared_regression_output_needs_review(tmp_path):
    r = run(tmp_path, "coefs.csv", b"variable,coef,std_err\nconst,0.12,0.03\nx,1.5,0.2\n")
    assert r.verdict == "review"


# ---- magnitudes from contributions, through sdc ------------------------------------------------
@pytest.fixture
def claims() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 6000
    return pd.DataFrame({"month": rng.choice(["2020-01", "2020-02", "2020-03"], n),
                         "PERSON_ID": rng.choice([f"{i:064x}" for i in range(900)], n),
                         "amount": rng.exponential(40, n)})


def test_sdc_persons_table_passes_when_safe(tmp_path, claims):
    from pds_kernel import sdc

    session = sdc.Session()
    table = session.persons_table(claims, by="month", sums={"amount_paid": "amount"}, events="claims")
    out = session.save(table, tmp_path / "claims.csv")
    r = check_file(out, "claims.csv", T, context={"tables": sdc.declarations_for([out])})
    assert r.verdict == "pass", r.to_dict()
    assert "amount_paid" in out.read_text() and "contributions" not in out.read_text()


def test_sdc_persons_table_with_a_dominant_person_fails(tmp_path, claims):
    from pds_kernel import sdc

    claims.loc[0, "amount"] = 1e9  # one person's claim dominates its month
    session = sdc.Session()
    table = session.persons_table(claims, by="month", sums={"amount_paid": "amount"})
    out = session.save(table, tmp_path / "claims.csv")
    r = check_file(out, "claims.csv", T, context={"tables": sdc.declarations_for([out])})
    assert r.verdict == "fail" and r.rule_status["dominance"].value == "fail"


def test_sdc_crosstab_counts_are_rows_not_persons(tmp_path, claims):
    from pds_kernel import sdc

    session = sdc.Session()
    out = session.save(session.crosstab(claims.month, claims.amount > 40), tmp_path / "c.csv")
    context = {"tables": sdc.declarations_for([out]), "acro": sdc.evidence_for([out])}
    r = check_file(out, "c.csv", T, context=context, evidence={**context["acro"]["c.csv"], "source": "acro"})
    assert r.verdict == "review" and "unit" in r.rule_status


def test_sdc_crosstab_of_means_carries_contributions(tmp_path, claims):
    from pds_kernel import sdc

    session = sdc.Session()
    out = session.save(session.crosstab(claims.month, claims.amount > 40, values=claims.amount, aggfunc="mean"),
                       tmp_path / "m.csv")
    context = {"tables": sdc.declarations_for([out]), "acro": sdc.evidence_for([out])}
    r = check_file(out, "m.csv", T, context=context, evidence={**context["acro"]["m.csv"], "source": "acro"})
    assert r.verdict == "pass", r.to_dict()


# ---- code and models ---------------------------------------------------------------------------
def _notebook(outputs: list) -> bytes:
    return json.dumps({"cells": [{"cell_type": "code", "source": ["import pandas as pd\n", "df.describe()"],
                                  "execution_count": 1, "metadata": {}, "outputs": outputs}],
                       "metadata": {"kernelspec": {"language": "python"}}, "nbformat": 4,
                       "nbformat_minor": 5}).encode()


def test_code_files_go_to_review_as_kind_code(tmp_path):
    for name, data in [("a.py", b"import pandas\n"), ("a.R", b"x <- 1\n"), ("q.sql", b"select 1;\n"),
                       ("run.sh", b"echo ok\n"), ("r.qmd", b"# title\n"), ("r.Rmd", b"# title\n")]:
        r = run(tmp_path, name, data)
        assert (r.kind, r.verdict, set(r.rule_status)) == ("code", "review", {"code"}), name


def test_stripped_notebook_needs_only_a_reading(tmp_path):
    r = run(tmp_path, "a.ipynb", _notebook([]))
    assert r.verdict == "review" and set(r.rule_status) == {"code"}


def test_notebook_outputs_are_checked_like_what_they_show(tmp_path):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="  # 1x1, whole
    figure = {"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/plain": "<Figure>"}}
    table = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
             "data": {"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "x"}}
    r = run(tmp_path, "a.ipynb", _notebook([figure, table]))
    messages = [f.message for f in r.findings if f.rule == "notebook-output"]
    assert r.verdict == "review" and any("figure" in m for m in messages) and any("table" in m for m in messages)


def test_oversized_code_is_refused(tmp_path):
    r = run(tmp_path, "a.py", b"# x\n" * 300_000)
    assert r.verdict == "refused"


def _onnx() -> bytes:
    """A genuine (tiny) ONNX model: the gate validates the whole protobuf, not the first byte."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph).SerializeToString()


def _safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0)


@pytest.mark.parametrize("name,data", [
    ("m.safetensors", _safetensors()),
    ("m.json", b'{"learner": {"attributes": {}}, "version": [2, 0, 3]}'),
    ("m.onnx", _onnx()),
])
def test_safe_model_formats_go_to_review_as_kind_model(tmp_path, name, data):
    r = run(tmp_path, name, data)
    assert (r.kind, r.verdict) == ("model", "review")


def test_a_model_name_on_unknown_bytes_is_refused(tmp_path):
    assert run(tmp_path, "m.pt", b"not a model at all").verdict == "refused"


# ---- per-project row limit, refusal at submission ----------------------------------------------
def test_max_table_rows_is_a_per_project_setting(runtime, service, registry):
    big = "g,n\n" + "".join(f"g{i},{20 + i}\n" for i in range(60))
    declared = {"tables": {"t.csv": {"counts": ["n"]}}}
    assert service.create("alice", PROJECT, files(("t.csv", big.encode())), "why", declared).files[0].check_status == "pass"
    registry.upsert_project("root", PROJECT, max_table_rows=50)
    with pytest.raises(Exception, match="60 rows: a table file holds at most 50"):
        service.create("alice", PROJECT, files(("t.csv", big.encode())), "why", declared)


def test_person_id_column_name_is_the_extracts():
    from pds_kernel.airlock.checks import content
    from pds_kernel.extract.spec import PERSON_ID

    assert content.PERSON_ID == PERSON_ID and PERSON_ID in content.person_key_columns()


def test_project_person_ids_are_read_from_the_published_extract(runtime):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from published import publish_by_hand

    from pds_kernel.airlock.extract_reads import gate_extract, person_id_prefixes

    settings = runtime.settings
    assert gate_extract(settings, runtime.audit, "p-1") is None  # no extract yet: nothing to check
    assert person_id_prefixes(settings.paths.projects, None) is None
    extract = settings.paths.projects / "p-1" / "extract"
    extract.mkdir(parents=True)
    pq.write_table(pa.table({"PERSON_ID": ["AB" * 32, "cd" * 32]}), extract / "COHORT.parquet")
    publish_by_hand(runtime, "p-1")
    checked = gate_extract(settings, runtime.audit, "p-1")
    assert person_id_prefixes(settings.paths.projects, checked) == frozenset({"ab" * 6, "cd" * 6})


def test_registry_file_sets_max_table_rows():
    from pds_kernel.registry.spec import parse_registry

    spec = parse_registry({"projects": [{"id": "p-1", "title": "t", "start": date(2024, 1, 1),
                                         "end": date(2025, 1, 1), "disclosure": {"max_table_rows": 800}}]})
    assert spec.projects[0].max_table_rows == 800


# ---- pds airlock check, ws.check, the review page ----------------------------------------------
def test_cli_check_exit_codes_and_json(tmp_path, settings):
    from pds_kernel.cli import app

    table = tmp_path / "t.csv"
    table.write_bytes(YEAR_SEX)
    cfg = tmp_path / "pds.yaml"
    cfg.write_text(f"paths:\n  state: {settings.paths.state}\n")
    runner = CliRunner()
    undeclared = runner.invoke(app, ["-c", str(cfg), "airlock", "check", str(table), "--json"])
    assert undeclared.exit_code == 6
    assert json.loads(undeclared.output)["files"][0]["verdict"] == "review"
    context = json.dumps({"tables": {"t.csv": {"counts": ["persons"]}}})
    declared = runner.invoke(app, ["-c", str(cfg), "airlock", "check", str(table), "--context", context, "--json"])
    assert declared.exit_code == 0, declared.output
    report = json.loads(declared.output)
    assert report == {"files": [{"name": "t.csv", "verdict": "pass", "kind": "table", "findings": [], "omitted": {},
                                 "rebuilt": False}]}
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.")
    refused = runner.invoke(app, ["-c", str(cfg), "airlock", "check", str(pickled)])
    assert refused.exit_code == 6 and "refused" in refused.output
    parquet = tmp_path / "t.parquet"
    pd.read_csv(table).to_parquet(parquet, index=False)
    context = json.dumps({"tables": {"t.parquet": {"counts": ["persons"]}}})
    rebuilt = runner.invoke(app, ["-c", str(cfg), "airlock", "check", str(parquet), "--context", context])
    assert rebuilt.exit_code == 0 and "would leave as the gate's copy" in rebuilt.output, rebuilt.output


def test_workspace_check_uses_the_sdc_declaration(tmp_path, claims, capsys):
    from pds_kernel import sdc
    from pds_kernel import workspace as ws

    session = sdc.Session()
    out = session.save(session.persons_table(claims, by="month"), tmp_path / "persons.csv")
    report = ws.check(out)
    assert report["files"][0]["verdict"] == "pass" and "persons.csv: pass" in capsys.readouterr().out


def test_review_page_highlights_code(tmp_path):
    from types import SimpleNamespace

    from pds_kernel.airlock.web.render import render_file

    path = tmp_path / "a.ipynb"
    path.write_bytes(_notebook([{"output_type": "stream", "name": "stdout", "text": ["<b>hello</b>\n"]}]))
    rendered = render_file(SimpleNamespace(name="a.ipynb", kind="code", check={"rules": {}, "findings": []}), path)
    assert rendered.mode == "code" and "<span" in rendered.html and "cell 1 (code)" in rendered.html
    assert "<b>hello" not in rendered.html and "&lt;b&gt;hello" in rendered.html  # escaped


def test_parquet_person_table_passes_through_the_service(service):
    frame = pd.DataFrame({"year": [2020, 2021], "BEN_SEX_COD": [1, 1], "persons": [40, 50]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    view = service.create("alice", PROJECT, files(("t.parquet", buffer.getvalue())), "why",
                          {"tables": {"t.parquet": {"counts": ["persons"]}}})
    assert view.files[0].check_status == "pass"
    checked = service.get_request("olga", view.id)  # the author's view of a check is redacted
    assert checked.files[0].check["verdict"] == "pass"


def test_resubmitted_sdc_table_carries_its_new_declaration(service, tmp_path, claims):
    from pds_kernel import sdc

    session = sdc.Session()
    path = session.save(session.persons_table(claims, by="month"), tmp_path / "persons.csv")
    view = service.create("alice", PROJECT, files(("persons.csv", path.read_bytes())), "why",
                          {"tables": sdc.declarations_for([path])})
    assert view.files[0].check_status == "pass"
    for who in ("olga", "omar"):
        service.review(who, view.id, {0: {"decision": "request_changes", "comment": "by quarter"}})
    fewer = claims[claims.month != "2020-03"]
    session.save(session.persons_table(fewer, by="month"), path)
    again = service.resubmit("alice", view.id, files(("persons.csv", path.read_bytes())),
                             acro=sdc.records_for([path]))
    assert again.round == 2 and again.files[0].check_status == "pass", again.files[0].check


def test_cli_check_with_a_project_uses_its_thresholds_and_members_only(tmp_path, settings, registry):
    from dataclasses import fields

    import yaml

    from pds_kernel.cli.app import app
    from pds_kernel.errors import PermissionDenied

    cfg = tmp_path / "pds.yaml"
    cfg.write_text(yaml.safe_dump({"paths": {f.name: str(getattr(settings.paths, f.name))
                                             for f in fields(settings.paths)}}))
    table = tmp_path / "t.csv"
    table.write_bytes(b"g,n\na,5\nb,40\n")
    context = json.dumps({"tables": {"t.csv": {"counts": ["n"]}}})
    runner = CliRunner()
    args = ["airlock", "check", str(table), "--project", PROJECT, "--context", context, "--json"]
    strict = runner.invoke(app, ["-c", _as(cfg, "alice"), *args])
    assert strict.exit_code == 6 and json.loads(strict.output)["files"][0]["verdict"] == "fail"
    registry.upsert_project("root", PROJECT, min_cell=3)
    lax = runner.invoke(app, ["-c", _as(cfg, "alice"), *args])
    assert lax.exit_code == 0, lax.output
    stranger = runner.invoke(app, ["-c", _as(cfg, "mallory"), *args])
    assert isinstance(stranger.exception, PermissionDenied)
