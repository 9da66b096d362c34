"""ACRO records travel with the files sdc saved, and count only for the bytes they were made for.

Service level: ``create`` with ``context={"acro": ...}`` whose SHA-256 matches or not. Workspace
level: ``pds_kernel.sdc`` then ``workspace.request_export`` (and the ``%request_export`` magic,
and ``resubmit_export``) against the gate's real web service on loopback.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import pytest
from airlock_factories import PROJECT
from airlock_web import FakeIdentity, live_server

from pds_kernel import sdc
from pds_kernel import workspace as ws
from pds_kernel.airlock.checks import ACRO_MISMATCH, Thresholds
from pds_kernel.airlock.web import make_app

PREFIX = "/services/airlock/"


@pytest.fixture
def microdata() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame({"year": rng.choice([2010, 2011, 2012], n),
                          "grant": rng.choice(list("ABCDEFG"), n, p=[.4, .3, .1, .1, .05, .04, .01]),
                          "inc": rng.exponential(1000, n)})
    frame.loc[0, "inc"] = 1e7  # one contributor dominates its cell
    return frame


def rules(file_view) -> dict:
    return file_view.check["rules"] if hasattr(file_view, "check") else file_view["check"]["rules"]


def messages(file_view, rule: str) -> list[str]:
    check = file_view.check if hasattr(file_view, "check") else file_view["check"]
    return [f["message"] for f in check["findings"] if f["rule"] == rule]


def checker_view(service, request_id: str, index: int = 0):
    """The file as an output checker sees it: the author's view of findings carries no messages
    from the data (docs/output-checking.md, "Who sees what")."""
    return service.get_request("olga", request_id).files[index]


def saved_means(tmp_path, microdata, name="means.csv"):
    session = sdc.Session(Thresholds())
    table = session.crosstab(microdata.year, microdata.grant, values=microdata.inc, aggfunc="mean")
    return session, session.save(table, tmp_path / name)


@pytest.mark.parametrize("name", ["means.csv", "means.xlsx"])
def test_matching_record_drives_the_magnitude_checks(service, tmp_path, microdata, name):
    session, path = saved_means(tmp_path, microdata, name)
    record = session.evidence()[name]
    assert len(record["sha256"]) == 64 and record["file"] == name
    view = service.create("alice", PROJECT, [(name, io.BytesIO(path.read_bytes()))], "Table 3",
                          {"acro": session.evidence()})
    f = view.files[0]
    assert rules(f)["dominance"] == "fail" and "magnitude" not in rules(f) and "acro" not in rules(f)
    nk = {(x["row"], x["col"]) for x in f.check["findings"] if x["rule"] == "dominance"}
    assert nk == {(int(r), int(c) + 1) for r, c in record["sdc"]["cells"]["NKCheck"]}
    checked = service.get_request("olga", view.id)  # the checkers match the record with what was submitted
    submitted = checked.files[0].check.get("submitted", {}).get("sha256", f.sha256)  # a rebuilt workbook: ADR 10
    assert checked.context["acro"][name]["sha256"] == submitted == hashlib.sha256(path.read_bytes()).hexdigest()
    assert view.context == {} and view.justification == ""  # the author's view: nothing sent is echoed


def test_record_of_other_bytes_is_ignored_with_the_reason(service, tmp_path, microdata):
    session, path = saved_means(tmp_path, microdata)
    edited = pd.read_csv(path).round(1).to_csv(index=False).encode()  # the file changed after sdc saved it
    view = service.create("alice", PROJECT, [("means.csv", io.BytesIO(edited))], "Table 3",
                          {"acro": session.evidence()})
    f = checker_view(service, view.id)
    assert f.check_status == "review"
    assert "dominance" not in rules(f)  # nothing of the stale record is used
    assert [m.startswith(ACRO_MISMATCH) and "other bytes" in m for m in messages(f, "acro")] == [True]
    assert rules(f)["magnitude"] == "review"  # judged as a table of magnitudes without evidence


def test_record_without_a_hash_is_ignored(service, tmp_path, microdata):
    session, path = saved_means(tmp_path, microdata)
    record = {k: v for k, v in session.evidence()["means.csv"].items() if k != "sha256"}
    view = service.create("alice", PROJECT, [("means.csv", io.BytesIO(path.read_bytes()))], "Table 3",
                          {"acro": {"means.csv": record}})
    f = checker_view(service, view.id)
    assert "dominance" not in rules(f) and "carries no SHA-256" in messages(f, "acro")[0]


def test_malformed_record_is_a_finding_not_a_crash(service, tmp_path, microdata):
    session, path = saved_means(tmp_path, microdata)
    record = {**session.evidence()["means.csv"], "sdc": {"cells": {"NKCheck": [["x", None]]}}}
    view = service.create("alice", PROJECT, [("means.csv", io.BytesIO(path.read_bytes()))], "Table 3",
                          {"acro": {"means.csv": record}})
    assert "malformed" in messages(checker_view(service, view.id), "acro")[0]


def test_save_refuses_other_formats_and_foreign_outputs(tmp_path, microdata):
    session, _ = saved_means(tmp_path, microdata)
    table = session.crosstab(microdata.year, microdata.grant)
    with pytest.raises(Exception, match="as .csv or .xlsx"):
        session.save(table, tmp_path / "t.parquet")
    with pytest.raises(Exception, match="not produced by this sdc.Session"):
        session.save(table.copy(), tmp_path / "t.csv")


# ---- from the notebook: sdc -> request_export -> the gate's API ---------------------------------
@pytest.fixture
def workspace_env(runtime, service, tmp_path, monkeypatch):
    """A researcher's kernel: HOME, cwd, and the gate's URL and token (FakeIdentity trusts it)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    monkeypatch.setenv("PDS_PROJECT", PROJECT)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "fake-alice")
    monkeypatch.delenv("PDS_AIRLOCK_SOCKET", raising=False)
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)) as url:
        monkeypatch.setenv("PDS_AIRLOCK_URL", url + PREFIX)
        yield home


def test_request_export_attaches_the_sdc_record_by_itself(workspace_env, service, microdata):
    session, path = saved_means(workspace_env / "out", microdata)
    counts = session.save(session.crosstab(microdata.year, microdata.grant), workspace_env / "out" / "counts.xlsx")
    plain = workspace_env / "out" / "notes.txt"
    plain.write_text("method: means of incomes by year and grant\n")
    answer = ws.request_export([path, counts, plain], "Table 3 and its counts")
    by_name = {f["name"]: f for f in answer["files"]}
    assert rules(by_name["means.csv"])["dominance"] == "fail"
    assert rules(by_name["counts.xlsx"])["small-cell"] == "fail"
    assert "acro" not in rules(by_name["means.csv"]) and "acro" not in rules(by_name["counts.xlsx"])
    stored = service.get_request("olga", answer["id"]).context["acro"]
    assert set(stored) == {"means.csv", "counts.xlsx"}  # notes.txt was not made by sdc
    assert stored["means.csv"]["sha256"] == by_name["means.csv"]["sha256"]


def test_file_changed_after_save_gets_review_with_the_reason(workspace_env, service, microdata):
    _, path = saved_means(workspace_env, microdata)
    path.write_text(path.read_text().replace(".", "0", 1))  # edited by hand after sdc saved it (a digit)
    answer = ws.request_export([path], "Table 3")
    f = answer["files"][0]
    assert f["check_status"] == "review" and "dominance" not in rules(f) and "acro" in rules(f)
    assert messages(checker_view(service, answer["id"]), "acro")[0].startswith(ACRO_MISMATCH)


def test_explicit_context_still_works_and_wins(workspace_env, service, microdata):
    session, path = saved_means(workspace_env, microdata)
    stale = {**session.evidence()["means.csv"], "sha256": "0" * 64}
    answer = ws.request_export([path], "Table 3", context={"acro": {"means.csv": stale}, "notebook": "a.ipynb"})
    assert messages(checker_view(service, answer["id"]), "acro")[0].startswith(ACRO_MISMATCH)
    answer = ws.request_export([path], "Table 3", context={"acro": session.evidence()})
    assert rules(answer["files"][0])["dominance"] == "fail"


def test_magic_and_resubmit_carry_the_record(workspace_env, service, microdata, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    session, path = saved_means(workspace_env, microdata)
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "pds_kernel.workspace")
        answer = shell.run_line_magic("request_export", "means.csv -- Table 3")
    finally:
        InteractiveShell.clear_instance()
    assert "is submitted" in capsys.readouterr().out
    assert rules(answer["files"][0])["dominance"] == "fail"
    for who in ("olga", "omar"):
        service.review(who, answer["id"], {0: {"decision": "request_changes", "comment": "suppress the dominated cells"}})
    safer = microdata.assign(inc=microdata.inc.clip(upper=5000))
    table = session.crosstab(safer.year, safer.grant, values=safer.inc, aggfunc="mean")
    session.save(table, path)
    view = ws.resubmit_export(answer["id"], [path], justification="incomes capped at 5000")
    assert view["round"] == 2
    f = view["files"][0]
    assert "acro" not in rules(f)  # the new record matches the new bytes
    assert service.get_request("olga", answer["id"]).context["acro"]["means.csv"]["sha256"] == f["sha256"]
