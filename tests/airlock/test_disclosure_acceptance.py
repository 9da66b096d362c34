"""Issue #12, item by item: the acceptance audit's tests for items no other test pinned (the
table's size pre-gate, 13-digit NIRs and pseudonyms in value columns, a column as distinct as
the rows, the p-ratio rule, "dominance not verifiable", `pds airlock check` on several files,
syntax highlighting of every code kind)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pds_kernel.airlock.checks import Thresholds, check_file
from pds_kernel.airlock.checks.magnitudes import NOT_VERIFIABLE

T = Thresholds()


def run(tmp_path: Path, name: str, data: bytes, declared: dict | None = None, **kw):
    path = tmp_path / name
    path.write_bytes(data)
    context = {"tables": {name: declared}} if declared is not None else None
    return check_file(path, name, kw.pop("thresholds", T), context=context, **kw)


def test_a_table_file_over_the_size_limit_is_refused(tmp_path):
    data = b"g,n\n" + b"".join(b"g%d,%d\n" % (7 * i, 20 + i) for i in range(200))
    r = run(tmp_path, "t.csv", data, {"counts": ["n"]}, max_bytes=1_000)
    assert r.verdict == "refused" and r.rule_status["max-size"].value == "fail"
    assert run(tmp_path, "t.csv", data, {"counts": ["n"]}).verdict == "pass"


@pytest.mark.parametrize("value", ["1851275123456", "a" * 64])
def test_identifiers_in_a_declared_value_column_are_refused(tmp_path, value):
    # a 13-digit NIR (without its key) or a 64-hex pseudonym, in a column declared as counts
    data = f"g,n,m\na,50,60\nb,{value},70\n".encode()
    r = run(tmp_path, "t.csv", data, {"labels": ["g"], "counts": ["n", "m"]})
    assert r.verdict == "refused" and r.rule_status["person-identifier"].value == "fail"


def test_a_category_column_as_distinct_as_its_rows_is_microdata(tmp_path):
    rows = "".join(f"K{i * 7919 % 100000:05d}X{i}Z,{20 + i % 7}\n" for i in range(60))
    r = run(tmp_path, "t.csv", ("key,n\n" + rows).encode(), {"labels": ["key"], "counts": ["n"]})
    assert r.verdict == "refused" and r.rule_status["microdata"].value == "fail"


def test_p_ratio_fails_where_dominance_alone_would_pass(tmp_path):
    # top 2 make 92 % (below k=95) but the rest (8) is under 10 % of the largest (90)
    declared = {"labels": ["g"], "magnitudes": {"cost": "sum"},
                "contributions": {"cost": [[12, 100, [90, 2]], [30, 300, [20, 15]]]}}
    r = run(tmp_path, "t.csv", b"g,cost\na,100\nb,300\n", declared, thresholds=Thresholds(dominance_k=95.0))
    assert r.verdict == "fail" and "dominance" not in r.rule_status
    assert [(f.row, f.col) for f in r.findings if f.rule == "p-ratio"] == [(0, 1)]


def test_magnitudes_without_contributions_say_dominance_not_verifiable(tmp_path):
    r = run(tmp_path, "t.csv", b"g,cost\na,10524\nb,10500\n", {"labels": ["g"], "magnitudes": {"cost": "sum"}})
    messages = [f.message for f in r.findings if f.rule == "magnitude"]
    assert r.verdict == "review" and messages and messages[0].startswith(NOT_VERIFIABLE)


def test_cli_check_of_several_files_lists_each_and_exits_6_unless_all_pass(tmp_path, settings):
    from pds_kernel.cli import app

    safe, undeclared = tmp_path / "safe.csv", tmp_path / "other.csv"
    safe.write_bytes(b"g,n\na,50\nb,60\n")
    undeclared.write_bytes(b"g,n\na,50\nb,60\n")
    cfg = tmp_path / "pds.yaml"
    cfg.write_text(f"paths:\n  state: {settings.paths.state}\n")
    context = json.dumps({"tables": {"safe.csv": {"counts": ["n"]}}})
    runner = CliRunner()
    both = runner.invoke(app, ["-c", str(cfg), "airlock", "check", str(safe), str(undeclared), "--context", context,
                               "--json"])
    report = json.loads(both.output)
    assert both.exit_code == 6
    assert [(f["name"], f["verdict"]) for f in report["files"]] == [("safe.csv", "pass"), ("other.csv", "review")]
    assert all(set(f) >= {"name", "verdict", "findings"} for f in report["files"])
    alone = runner.invoke(app, ["-c", str(cfg), "airlock", "check", str(safe), "--context", context])
    assert alone.exit_code == 0 and "safe.csv: pass" in alone.output


@pytest.mark.parametrize("name,source", [("a.py", "def f(x):\n    return x\n"), ("a.R", "f <- function(x) x\n"),
                                         ("q.sql", "select count(*) from t;\n"), ("run.sh", "echo $HOME\n"),
                                         ("r.qmd", "# Title\n\n*text*\n"), ("r.Rmd", "# Title\n\n*text*\n")])
def test_every_code_kind_is_highlighted_for_reviewers(tmp_path, name, source):
    from types import SimpleNamespace

    from pds_kernel.airlock.web.render import render_file

    path = tmp_path / name
    path.write_text(source)
    r = run(tmp_path, name, source.encode())
    rendered = render_file(SimpleNamespace(name=name, kind=r.kind, check=r.to_dict()), path)
    assert r.kind == "code" and rendered.mode == "code" and "<span style=" in rendered.html


def test_genuine_xgboost_ubj_and_skops_models_go_to_review_as_kind_model(tmp_path):
    import numpy as np
    import skops.io
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    # leaves of 5 training rows or more (min_child_weight): a default booster's one-row leaves fail (model-data)
    xgb.train({"max_depth": 2, "min_child_weight": 5}, xgb.DMatrix(x, label=y),
              num_boost_round=3).save_model(str(tmp_path / "m.ubj"))
    skops.io.dump(LogisticRegression().fit(x, y), tmp_path / "m.skops")
    for name in ("m.ubj", "m.skops"):
        r = check_file(tmp_path / name, name, T)
        assert (r.kind, r.verdict, set(r.rule_status)) == ("model", "review", {"model", "model-tensors"}), name
        # no project extract to compare the numbers with: said, never a silent pass
        assert [f.message for f in r.findings if f.rule == "model-tensors"] == [
            "the model's numbers were not compared with the project's extract (none is published, or the check "
            "ran without a project)"], name


def test_shares_of_the_column_total_pass_with_a_suppressed_row(tmp_path):
    # 4.0 % of 1,000 persons is the row's 40: shares of the total, not of the row's count
    data = b"region,persons,pct\nN,40,4.0\nS,*,*\nE,300,30.0\nW,560,56.0\n"  # S (100 persons) hidden
    declared = {"labels": ["region"], "counts": ["persons"], "magnitudes": {"pct": "percent"}}
    r = run(tmp_path, "t.csv", data, declared)
    assert "small-cell" not in r.rule_status, r.to_dict()["findings"]
