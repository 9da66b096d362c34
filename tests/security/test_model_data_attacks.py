"""Red team: the model file as a container of the project's data itself.

Each test submits one model through the real airlock service and asserts the gate refuses it or
sends it to a checker with a failing ``model-data`` (gate) or ``model-attack`` (platform check)
finding that names the problem: instance-based estimators (their state is training rows),
identifiers in the strings any format allows (ONNX metadata, safetensors ``__metadata__``, XGBoost
feature names and attributes, skops attributes), tensors and nodes nothing uses, and declarations
or leaves that do not match the training rows. The rules: pds_kernel/airlock/checks/model_data.py,
model_formats.py (ONNX dead weight), pds_kernel/modelcheck/run.py (leaves, extra state);
docs/ai.md, "What the model file may carry"."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from model_data_support import (
    DAY,
    NIR,
    id_bytes,
    lightgbm_text,
    npy,
    onnx_linear,
    onnx_svm,
    rows_tensor,
    safetensors_of,
    skops_of,
    with_member,
    xgboost_bytes,
    xy,
)
from model_export_support import (
    FEATURES,
    PROJECT,
    home,
    make_service,
    overfit_tree,
    people,
    publish_cohort,
    submit,
    write_rows,
)
from model_format_support import airlock

from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.runtime import Runtime

ROWS = people(PROJECT, 400, seed=7)
IDS = list(ROWS.PERSON_ID[:50])


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    with airlock(tmp_path_factory.mktemp("model-data")) as (service, settings):
        yield service, settings


def findings(service, view) -> list[dict]:
    return service.get_request("olga", view.id).files[0].check["findings"]


def flagged(gate, name: str, data: bytes, words: str) -> None:
    """Submitted without a declaration, ``data`` is kept with a failing ``model-data`` finding
    that says ``words``: a checker sees the problem named, the file cannot pass."""
    service, _ = gate
    view = submit(service, name, data, None)
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert any(f["rule"] in ("model-data", "identifier") and f["status"] == "fail" and words in f["message"]
               for f in found), found


def refused(gate, name: str, data: bytes, reason: str) -> None:
    service, _ = gate
    with pytest.raises(RefusedFiles) as caught:
        submit(service, name, data, None)
    assert reason in caught.value.reasons[name], caught.value.reasons


# ---- 1. instance-based estimators -------------------------------------------------------------

@pytest.mark.parametrize("estimator", ["knn", "svc", "gp"])
def test_instance_based_estimator_as_skops_fails_naming_the_stored_rows(gate, estimator):
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    X, y = xy(ROWS, 100)
    model = {"knn": KNeighborsClassifier(1), "svc": SVC(probability=True), "gp": GaussianProcessClassifier()}[estimator]
    flagged(gate, f"{estimator}.skops", skops_of(model.fit(X, y)), "export a model that summarises the rows")


def test_instance_based_estimator_as_joblib_or_pickle_is_refused(gate):
    import pickle

    from sklearn.neighbors import KNeighborsClassifier

    X, y = xy(ROWS, 100)
    data = pickle.dumps(KNeighborsClassifier(1).fit(X, y))
    for name in ("knn.joblib", "knn.pkl", "knn.skops", "knn.onnx"):
        with pytest.raises(RefusedFiles):
            submit(gate[0], name, data, None)


def test_onnx_svm_classifier_carrying_support_vectors_fails(gate):
    flagged(gate, "svm.onnx", onnx_svm(ROWS), "support_vectors are training rows")


# ---- 2. tensors that are the extract ----------------------------------------------------------

def test_safetensors_tensor_of_person_id_bytes_fails(gate):
    weights = np.full((6, 1), 0.5, dtype=np.float32)
    flagged(gate, "w.safetensors", safetensors_of({"weight": weights, "embedding": id_bytes(IDS)}),
            "hexadecimal characters")


def test_safetensors_tensor_of_nir_digits_next_to_genuine_weights_fails(gate):
    digits = np.frombuffer((NIR + "\n").encode() * 30, dtype=np.uint8).copy()
    flagged(gate, "w.safetensors", safetensors_of({"weight": np.ones(6, dtype=np.float32), "aux": digits}), "NIR")


def test_onnx_initializer_read_by_no_node_is_refused(gate):
    refused(gate, "m.onnx", onnx_linear(extra_initializers=[rows_tensor(ROWS)]), "is read by no node")


def test_onnx_initializer_returned_as_an_output_is_refused(gate):
    refused(gate, "m.onnx", onnx_linear(extra_initializers=[rows_tensor(ROWS)], outputs=("Y", "rows")),
            "returns a stored tensor unchanged")


def test_onnx_constant_node_whose_output_nobody_reads_is_refused(gate):
    from onnx import helper

    node = helper.make_node("Constant", [], ["stash"], value=rows_tensor(ROWS, "stash"))
    refused(gate, "m.onnx", onnx_linear(extra_nodes=[node]), "contributes to no output")


def test_onnx_local_function_no_node_calls_is_refused(gate):
    from onnx import helper

    const = helper.make_node("Constant", [], ["out"], value=rows_tensor(ROWS, "c"))
    function = helper.make_function("com.example", "stash", [], ["out"], [const],
                                    [helper.make_opsetid("", 17)])
    refused(gate, "m.onnx", onnx_linear(functions=[function]), "called by no node")


def test_genuine_onnx_with_every_initializer_used_still_goes_to_a_checker(gate):
    service, _ = gate
    view = submit(service, "linear.onnx", onnx_linear(), None)
    assert view.files[0].check_status == "review"
    assert not [f for f in findings(service, view) if f["rule"] == "model-data"]


# ---- 3 and 4. strings: ONNX metadata, safetensors __metadata__, XGBoost, LightGBM, skops ------

@pytest.mark.parametrize("field", ["doc_string", "producer_name", "domain", "metadata"])
def test_onnx_text_field_carrying_person_ids_fails(gate, field):
    value = {"cohort": " ".join(IDS[:5])} if field == "metadata" else " ".join(IDS[:5])
    flagged(gate, f"{field}.onnx", onnx_linear(**{field: value}), "project pseudonym")


def test_onnx_metadata_carrying_nir_and_days_of_care_fails(gate):
    service, _ = gate
    view = submit(service, "meta.onnx", onnx_linear(metadata={"p1": f"{NIR} {DAY}", "p2": f"{NIR[:-2]}"}), None)
    found = [f for f in findings(service, view) if f["rule"] == "model-data"]
    assert any("NIR" in f["message"] and f["status"] == "fail" for f in found), found
    assert any("day-level date" in f["message"] for f in found), found


def test_safetensors_metadata_carrying_rows_fails(gate):
    rows = "\n".join(f"{pid};{DAY};{NIR}" for pid in IDS[:10])
    flagged(gate, "w.safetensors", safetensors_of({"w": np.ones(3, dtype=np.float32)}, {"notes": rows}),
            "project pseudonym")


def test_xgboost_json_feature_names_and_attributes_carrying_identifiers_fail(gate):
    import xgboost as xgb

    X, y = xy(ROWS)
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    booster = model.get_booster()
    booster.feature_names = IDS[:6]
    flagged(gate, "names.json", xgboost_bytes(booster), "project pseudonym")
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    model.get_booster().set_attr(cohort=NIR)
    flagged(gate, "attr.json", xgboost_bytes(model), "NIR")
    flagged(gate, "attr.ubj", xgboost_bytes(model, ".ubj"), "NIR")


def test_xgboost_feature_named_person_id_fails(gate):
    import xgboost as xgb

    X, y = xy(ROWS)
    booster = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y).get_booster()
    booster.feature_names = ["PERSON_ID", *[f"f{i}" for i in range(1, 6)]]
    flagged(gate, "pid.json", xgboost_bytes(booster), "person-key column")


def test_lightgbm_text_feature_names_carrying_identifiers_fail(gate):
    """A LightGBM text model named .txt is checked as text (identifiers fail there already)."""
    import lightgbm as lgb

    X, y = xy(ROWS)
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 20},
                        lgb.Dataset(X, y, feature_name=[f"p_{i}" for i in IDS[:6]]), num_boost_round=3)
    flagged(gate, "lgbm.txt", lightgbm_text(booster), "project pseudonym")
    import tempfile
    from pathlib import Path

    from pds_kernel.airlock.checks.model_data import scan_model

    with tempfile.TemporaryDirectory() as tmp:  # and as a model, where the gate sniffs one
        path = Path(tmp) / "m.txt"
        path.write_bytes(lightgbm_text(booster))
        assert any("project pseudonym" in f.message and f.status.value == "fail" for f in scan_model(path, "lightgbm"))


def test_skops_estimator_with_an_extra_string_attribute_of_ids_fails(gate):
    from sklearn.linear_model import LogisticRegression

    X, y = xy(ROWS)
    model = LogisticRegression().fit(X, y)
    model.cohort_ = ";".join(IDS[:10])
    flagged(gate, "lr.skops", skops_of(model), "project pseudonym")
    model = LogisticRegression().fit(X, y)
    model.cohort_ = np.array(IDS[:10])  # a NumPy text array: fixed-width items end to end
    flagged(gate, "lr2.skops", skops_of(model), "project pseudonym")


def test_skops_pipeline_step_named_with_a_nir_fails(gate):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = xy(ROWS)
    model = Pipeline([(NIR, StandardScaler()), ("lr", LogisticRegression())]).fit(X, y)
    flagged(gate, "pipe.skops", skops_of(model), "NIR")


def test_skops_file_with_a_member_its_schema_never_reads_fails(gate):
    from sklearn.linear_model import LogisticRegression

    X, y = xy(ROWS)
    data = skops_of(LogisticRegression().fit(X, y))
    flagged(gate, "lr.skops", with_member(data, "12345.npy", npy(ROWS[["f0", "f1"]].to_numpy())),
            "its schema never reads")


# ---- 3 and 5. the platform's check: leaves and declarations that are not the training rows ----

@pytest.fixture
def checked(settings):
    """(service, alice's home) with a real check sandbox, few shadow models (the leaf and state
    rules do not depend on the attacks' strength)."""
    from pds_kernel.settings import ModelCheck

    settings = replace(settings, model_check=replace(ModelCheck(), shadow_models=2, worst_case_reps=2))
    runtime = Runtime(settings)
    publish_cohort(settings, PROJECT, ROWS)
    try:
        yield make_service(runtime), home(settings, PROJECT, "alice")
    finally:
        runtime.close()


def _attack_fails(service, view, words: str) -> None:
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert any(f["rule"] == "model-attack" and f["status"] == "fail" and words in f["message"] for f in found), found


@pytest.mark.slow
def test_declaration_naming_other_rows_than_the_training_rows_fails(checked):
    """The tree memorises rows 0-39; the declaration says it was trained on rows 100-139."""
    service, alice = checked
    declaration = write_rows(alice, ROWS, ROWS.PERSON_ID[100:140], ROWS.PERSON_ID[200:400])
    view = submit(service, "tree.skops", overfit_tree(ROWS, 40), declaration)
    _attack_fails(service, view, "declared training rows")


@pytest.mark.slow
def test_xgboost_leaves_no_training_row_reaches_carrying_values_fail(checked, tmp_path):
    """A genuine model whose first tree's root is rewritten so its left branch is never taken:
    the leaves there hold whatever the author stored (an identifier's digits), unseen by any attack."""
    import xgboost as xgb

    service, alice = checked
    X, y = xy(ROWS, 200)
    model = xgb.XGBClassifier(n_estimators=10, max_depth=2, min_child_weight=10).fit(X, y)
    raw = json.loads(xgboost_bytes(model))
    tree = raw["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["split_conditions"][0] = -1e30
    for node, left in enumerate(tree["left_children"]):
        if left == -1 and tree["parents"][node] == 1:
            tree["split_conditions"][node] = tree["base_weights"][node] = float(NIR) / 1e14
    declaration = write_rows(alice, ROWS, ROWS.PERSON_ID[:200], ROWS.PERSON_ID[200:400])
    view = submit(service, "stash.json", json.dumps(raw).encode(), declaration)
    _attack_fails(service, view, "leaves hold none of the declared training rows")


@pytest.mark.slow
def test_skops_estimator_carrying_the_table_as_an_extra_array_fails(checked):
    from sklearn.linear_model import LogisticRegression

    service, alice = checked
    X, y = xy(ROWS, 200)
    model = LogisticRegression().fit(X, y)
    model.calibration_rows_ = ROWS[["f0", "f1", "f2", "outcome"]].to_numpy()
    declaration = write_rows(alice, ROWS, ROWS.PERSON_ID[:200], ROWS.PERSON_ID[200:400])
    view = submit(service, "lr.skops", skops_of(model), declaration)
    _attack_fails(service, view, "calibration_rows_")


# ---- 6. declarations padded with rows the model never saw (a scikit-learn estimator is fitted again) ----

def _forest(X, y):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=40, random_state=0).fit(X, y)


@pytest.mark.slow
def test_declaration_padded_with_rows_the_forest_never_saw_fails(checked):
    """A seeded forest of fully grown trees memorises rows 0-149. Declared as trained on rows 0-299,
    half of its "members" are rows it never saw, which the membership attacks cannot tell from the
    test rows; every leaf is still reached (the leaf rule sees a superset). Before: no failing
    finding. The same forest fitted on the declared rows is another forest."""
    service, alice = checked
    model = _forest(ROWS[FEATURES].to_numpy()[:150], ROWS["outcome"].to_numpy()[:150])
    declaration = write_rows(alice, ROWS, ROWS.PERSON_ID[:300], ROWS.PERSON_ID[300:400])
    view = submit(service, "forest.skops", skops_of(model), declaration)
    _attack_fails(service, view, "the declaration does not name the rows the model was trained on")


@pytest.mark.slow
def test_training_rows_hidden_among_the_declared_test_rows_fail(checked):
    """The logistic regression (no seed: its solver draws nothing) was fitted on rows 0-299, but rows
    150-299 are declared as test rows: members on both sides of the attack. Before: no failing finding."""
    from sklearn.linear_model import LogisticRegression

    service, alice = checked
    model = LogisticRegression(C=100.0).fit(ROWS[FEATURES].to_numpy()[:300], ROWS["outcome"].to_numpy()[:300])
    declaration = write_rows(alice, ROWS, ROWS.PERSON_ID[:150], ROWS.PERSON_ID[150:400])
    view = submit(service, "lr.skops", skops_of(model), declaration)
    _attack_fails(service, view, "the declaration does not name the rows the model was trained on")


@pytest.mark.slow
def test_exact_declaration_of_a_seeded_forest_is_re_made_and_an_unseeded_one_goes_to_review(checked):
    """Controls: the declared rows, in the order the forest was fitted on, re-make it (no failing
    reproduction finding); without a seed the platform cannot tell, and says so to the checker."""
    from sklearn.ensemble import RandomForestClassifier

    service, alice = checked
    X, y = ROWS[FEATURES].to_numpy(), ROWS["outcome"].to_numpy()
    declaration = write_rows(alice, ROWS, ROWS.PERSON_ID[:300], ROWS.PERSON_ID[300:400])
    seeded = submit(service, "seeded.skops", skops_of(_forest(X[:300], y[:300])), declaration)
    assert not [f for f in findings(service, seeded) if "rows the model was trained on" in f["message"]
                or "could not re-make" in f["message"]], findings(service, seeded)
    unseeded = RandomForestClassifier(n_estimators=40).fit(X[:150], y[:150])
    view = submit(service, "unseeded.skops", skops_of(unseeded), declaration)
    assert any(f["rule"] == "model-attack" and f["status"] == "review" and "random_state" in f["message"]
               for f in findings(service, view)), findings(service, view)


# ---- 7. LightGBM: its file records its training parameters, seeds included (trained again too) ----

def _lightgbm(rows: int) -> bytes:
    """A LightGBM model of bagged trees (drawn rows: its seeds matter), trained on the first ``rows``."""
    import lightgbm as lgb

    X, y = ROWS[FEATURES].to_numpy(), ROWS["outcome"].to_numpy()
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=15, min_child_samples=5, subsample=0.7, subsample_freq=1,
                               colsample_bytree=0.8, verbose=-1).fit(X[:rows], y[:rows])
    return lightgbm_text(model.booster_)


@pytest.mark.slow
def test_lightgbm_declared_with_rows_it_never_saw_fails_and_its_exact_declaration_passes(checked):
    """Bagged LightGBM trees fitted on rows 0-149, declared as trained on rows 0-299 (padded): before,
    the leaf rule saw every leaf reached and the file went to review like any boosted model (a
    LightGBM declaration was not verified). LightGBM trained again from the parameters its own file
    records makes another model on those rows: fail. Control: the same file declared with rows 0-149
    is re-made (no reproduction finding), and LiRA trained its shadow models from the same parameters
    (skipped for LightGBM before)."""
    service, alice = checked
    model = _lightgbm(150)
    padded = submit(service, "gbm.txt", model, write_rows(alice, ROWS, ROWS.PERSON_ID[:300], ROWS.PERSON_ID[300:400]))
    _attack_fails(service, padded, "the declaration does not name the rows the model was trained on")
    exact = submit(service, "gbm.txt", model, write_rows(alice, ROWS, ROWS.PERSON_ID[:150], ROWS.PERSON_ID[300:400]))
    found = findings(service, exact)
    assert not [f for f in found if "rows the model was trained on" in f["message"]
                or "could not re-make" in f["message"] or "could not compare" in f["message"]], found
    report = service.get_request("olga", exact.id).files[0].check["model_check"]
    assert "auc" in report.get("lira", {}) and "lira" not in report.get("skipped", {}), report  # shadow LightGBMs now
