"""The platform attacks a model that asks to leave, in a real check sandbox of the project.

Each test trains a real model here, submits it through the real airlock service with the
declaration of its training and test rows, and lets the gate run sacroml (structural attack,
worst-case attack, LiRA) in a fresh bubblewrap sandbox over the check environment
(``.venv-modelcheck``). Verdicts follow ``settings.model_check``'s thresholds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from model_check_support import (
    PROJECT,
    home,
    make_service,
    model_file,
    overfit_tree,
    people,
    publish_cohort,
    reasonable_tree,
    reasonable_xgboost,
    submit,
    write_rows,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airlock"))  # its web helpers
from airlock_web import FakeIdentity, live_server

from pds_kernel.airlock.web import make_app

pytestmark = [pytest.mark.slow, pytest.mark.functional]
PREFIX = "/services/airlock/"


@pytest.fixture
def project(runtime):
    """(service, settings, rows, home) with 600 persons published in the project's extract."""
    settings = runtime.settings
    rows = people(PROJECT, 600, seed=3)
    publish_cohort(settings, PROJECT, rows)
    return make_service(runtime), settings, rows, home(settings, PROJECT, "alice")


def _rules(view_file):
    return {(f["rule"], f["status"]) for f in view_file.check["findings"]}


def test_overfit_tree_fails_and_checkers_see_the_report(project, runtime):
    service, settings, rows, alice_home = project
    train, test = rows.PERSON_ID[:40], rows.PERSON_ID[300:]
    declaration = write_rows(alice_home, rows, train, test)
    view = submit(service, "tree.skops", overfit_tree(rows), declaration)
    f = model_file(view)
    assert f.check_status == "fail"
    report = service.get_request("olga", view.id).files[f.index].check["model_check"]
    assert report["status"] == "ok" and report["model"] == "DecisionTreeClassifier"
    assert report["n_train"] == 40 and report["n_test"] == 300
    assert report["lira"]["auc"] > settings.model_check.max_auc
    assert report["structural"]["k_anonymity_risk"] is True
    assert report["plot_png"]
    assert ("model-attack", "fail") in _rules(service.get_request("olga", view.id).files[f.index])
    author = service.get_request("alice", view.id).files[f.index]
    assert "model_check" not in author.check and author.check_status == "fail"
    assert all("message" not in x or "AUC" not in x["message"] for x in author.check["findings"])

    # The review page: the checker reads the report and its plot; the author gets neither.
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service)) as url:
        page = url + PREFIX + f"requests/{view.id}"
        olga, alice = requests.Session(), requests.Session()
        olga.cookies.set("fake_user", "olga")
        alice.cookies.set("fake_user", "alice")
        seen = olga.get(page)
        assert seen.status_code == 200 and 'id="model-check-0"' in seen.text and "LiRA" in seen.text
        assert "k_anonymity_risk = True" in seen.text and "model-check.png" in seen.text
        plot = olga.get(page + "/files/0/model-check.png")
        assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG") and \
            plot.headers["Content-Type"] == "image/png"
        mine = alice.get(page)
        assert mine.status_code == 200 and "LiRA" not in mine.text and "model-check.png" not in mine.text
        assert alice.get(page + "/files/0/model-check.png").status_code == 403


def test_reasonable_xgboost_passes_the_attacks(project):
    service, settings, rows, alice_home = project
    train, test = rows.PERSON_ID[:300], rows.PERSON_ID[300:]
    declaration = write_rows(alice_home, rows, train, test)
    view = submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
    f = service.get_request("olga", view.id).files[0]
    report = f.check["model_check"]
    assert report["model"] == "XGBClassifier" and report["params"]["max_depth"] == 2
    assert report["lira"]["auc"] < settings.model_check.max_auc
    created = [e for e in service.runtime.audit.entries(action="airlock.request.create")
               if e.target == f"request:{view.id}"]
    assert created[0].details["files"][0]["model_check"]["status"] == "ok"
    assert not [x for x in f.check["findings"] if x["rule"] == "model-attack" and x["status"] == "fail"]
    assert f.check_status == "review"  # a model is always read by a checker


def test_unsupported_model_type_goes_to_review_with_the_reason(project):
    service, _, rows, alice_home = project
    declaration = write_rows(alice_home, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    tensors = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    data = len(tensors).to_bytes(8, "little") + tensors + b"\x00\x00\x80\x3f"
    view = submit(service, "weights.safetensors", data, declaration)
    f = service.get_request("olga", view.id).files[0]
    assert f.check_status == "review"
    assert any(x["rule"] == "model-check" and "does not attack safetensors" in x["message"]
               for x in f.check["findings"])


def test_resubmitted_model_is_attacked_again(project):
    import io

    service, _, rows, alice_home = project
    declaration = write_rows(alice_home, rows, rows.PERSON_ID[:40], rows.PERSON_ID[300:])
    view = submit(service, "tree.skops", overfit_tree(rows), declaration)
    assert view.files[0].check_status == "fail"
    for checker in ("olga", "omar"):
        service.review(checker, view.id, {0: {"decision": "request_changes", "comment": "memorises its rows"}})
    write_rows(alice_home, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    service.resubmit("alice", view.id, [("tree.skops", io.BytesIO(reasonable_tree(rows)))])
    again = service.get_request("olga", view.id)
    report = again.files[0].check["model_check"]
    assert again.round == 2 and report["n_train"] == 300
    assert not [x for x in again.files[0].check["findings"] if x["status"] == "fail"]
