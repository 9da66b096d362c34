"""Red team: the project's extract carried as *numbers* in a model's tensors (rule model-tensors).

Each attack submits a real model file through the real airlock service, with a real extract built
from a synthetic delivery, and asserts the gate fails it with a ``model-tensors`` finding that
names the problem. Each docstring says whether the attack got through before the rule (then the
file went to a checker as "review", with "the platform does not attack this format" or no
declaration, and no failing finding). The honest models at the end, trained on the same extract
with the libraries workspaces use, must get no failing ``model-tensors`` finding. The rule:
pds_kernel/airlock/checks/model_tensors.py; docs/output-checking.md, "A model's numbers"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_tensor_support import checker_findings as findings
from model_tensor_support import (
    claim_rows,
    days_since_1970,
    mlp_weights,
    onnx_forest,
    onnx_mlp,
    person_rows,
    safetensors_bytes,
    saved,
    submit,
    tensor_gate,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """(airlock service, the project's demo extract), for the whole module."""
    with tensor_gate(tmp_path_factory.mktemp("model-tensors")) as pair:
        yield pair


def tensor_fails(gate, name: str, data: bytes, words: str) -> list[dict]:
    service, _ = gate
    view = submit(service, name, data, None)
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert any(f["rule"] == "model-tensors" and f["status"] == "fail" and words in f["message"] for f in found), found
    return found


def no_tensor_failure(gate, name: str, data: bytes) -> list[dict]:
    service, _ = gate
    view = submit(service, name, data, None)
    found = findings(service, view)
    assert not [f for f in found if f["rule"] == "model-tensors" and f["status"] == "fail"], found
    assert view.files[0].check_status == "review", found
    return found


def honest_weights(extract) -> dict:
    return mlp_weights(*person_rows(extract))


# ---- 1. a column's values or rows as a tensor ----------------------------------------------

def test_safetensors_tensor_of_amounts_in_row_order_next_to_genuine_weights_fails(gate):
    """Got through before (review: 'the platform does not attack safetensors models')."""
    _, extract = gate
    weights = honest_weights(extract)
    weights["fc1.scale"] = extract.claims.PRS_PAI_MNT.to_numpy().astype(np.float32)
    found = tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "in the extract's row order")
    assert any("distinct values of the extract's column ER_PRS_F.PRS_PAI_MNT" in f["message"] for f in found), found


def test_safetensors_amounts_shuffled_across_two_tensors_fail_by_their_values(gate):
    """Got through before. The order is lost (no row sequence), the values are still the column's."""
    _, extract = gate
    values = np.random.default_rng(1).permutation(extract.claims.BSE_REM_MNT.dropna().unique()).astype(np.float32)
    weights = honest_weights(extract)
    half = len(values) // 2
    weights["norm.running_mean"], weights["norm.running_var"] = values[:half], values[half:]
    tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "distinct values of the extract's column "
                 "ER_PRS_F.BSE_REM_MNT")


def test_safetensors_days_of_care_as_integers_in_row_order_fail(gate):
    """Got through before. Day counts are a dense range (any integer tensor there matches them as a
    set): the rows in order are what give them away."""
    _, extract = gate
    weights = honest_weights(extract)
    weights["position_ids"] = days_since_1970(extract.claims.EXE_SOI_DTD.dropna()).astype(np.int32)
    tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "EXE_SOI_DTD (days since 1970)")


def test_safetensors_dates_as_yyyymmdd_integers_in_row_order_fail(gate):
    """Got through before."""
    _, extract = gate
    dates = extract.tables["ER_PHA_F"].FLX_TRT_DTD.dropna()
    weights = honest_weights(extract)
    weights["fc1.bias_table"] = np.array([d.year * 10000 + d.month * 100 + d.day for d in dates],
                                         dtype=np.int32).reshape(-1, 1)
    tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "FLX_TRT_DTD (YYYYMMDD)")


def test_safetensors_birth_years_of_every_person_as_float16_in_row_order_fail(gate):
    """Got through before. Few distinct values (a set says nothing): the sequence does."""
    _, extract = gate
    weights = honest_weights(extract)
    weights["age_embedding"] = extract.tables["IR_BEN_R"].BEN_NAI_ANN.to_numpy().astype(np.float16)
    tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "IR_BEN_R.BEN_NAI_ANN")


def test_safetensors_table_as_a_matrix_read_along_its_columns_fails(gate):
    """Got through before. A (rows, 3) matrix: each column of the matrix is a column of the table."""
    _, extract = gate
    claims = extract.claims.dropna(subset=["PRS_PAI_MNT", "BSE_REM_MNT"])
    weights = honest_weights(extract)
    weights["memory"] = np.ascontiguousarray(claims[["PRS_PAI_MNT", "BSE_REM_MNT", "BEN_NAI_ANN"]].to_numpy(),
                                             dtype=np.float32)
    found = tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "along axis 0 holds consecutive values")
    assert any(f["status"] == "review" and "one entry per row" in f["message"] for f in found), found


# ---- 2. pseudonyms as numbers ------------------------------------------------------------------

def test_pseudonyms_as_integers_of_their_first_hex_digits_fail(gate):
    """Got through before (numbers are not strings: the string scan never sees them)."""
    _, extract = gate
    weights = honest_weights(extract)
    weights["ids"] = np.array([int(p[:13], 16) for p in extract.ids], dtype=np.float64)
    tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "pseudonyms")


def test_pseudonyms_as_binary_bytes_in_a_u8_tensor_fail(gate):
    """Got through before: the bytes are not printable, so the string scan finds no hex run."""
    _, extract = gate
    weights = honest_weights(extract)
    weights["codebook"] = np.frombuffer(b"".join(bytes.fromhex(p) for p in extract.ids), dtype=np.uint8).reshape(
        len(extract.ids), 32).copy()
    tensor_fails(gate, "net.safetensors", safetensors_bytes(weights), "pseudonyms in binary form")


# ---- 3. ONNX: used tensors, nullified contributions --------------------------------------------

def _rows_times_zero(rows: np.ndarray, offset: float = 0.0, as_node: bool = False):
    """The network, plus ``logit + sum(rows + offset) * 0``: the rows are read, and never count.
    The zero is an initializer, or a Constant node's ``value_float``."""
    def extra(helper, numpy_helper):
        table = numpy_helper.from_array((rows + offset).astype(np.float32), "calib")
        zero = numpy_helper.from_array(np.zeros(1, dtype=np.float32), "gate_scale")
        nodes = [helper.make_node("ReduceSum", ["calib"], ["s"], keepdims=0),
                 helper.make_node("Mul", ["s", "gate_scale"], ["z"]),
                 helper.make_node("Add", ["logit", "z"], ["out"])]
        if as_node:
            nodes.insert(0, helper.make_node("Constant", [], ["gate_scale"], value_float=0.0))
        return nodes, [table] if as_node else [table, zero], "out"
    return extra


def test_onnx_used_initializer_of_table_rows_multiplied_by_zero_fails(gate):
    """Got through before: every initializer is read by a live node, so no dead-weight rule fires."""
    _, extract = gate
    rows = extract.claims[["PRS_PAI_MNT", "BSE_REM_MNT"]].dropna().to_numpy()
    found = tensor_fails(gate, "net.onnx", onnx_mlp(honest_weights(extract), _rows_times_zero(rows)),
                         "multiplies by the stored constant 'gate_scale'")
    assert any("ER_PRS_F.PRS_PAI_MNT" in f["message"] and f["status"] == "fail" for f in found), found


@pytest.mark.parametrize("as_node", [False, True], ids=["initializer", "constant-node"])
def test_onnx_transformed_rows_behind_a_zero_multiplier_fail_by_the_graph(gate, as_node):
    """Got through before. Shifted values match no column: the zero multiplier gives them away."""
    _, extract = gate
    rows = extract.claims[["PRS_PAI_MNT"]].dropna().to_numpy()
    tensor_fails(gate, "net.onnx", onnx_mlp(honest_weights(extract), _rows_times_zero(rows, 0.123, as_node)),
                 "whose values are all zero")


def test_onnx_gather_reading_one_row_of_a_stored_table_fails(gate):
    """Got through before. The table is used (Gather reads it), shifted so no column matches, and
    only its first row counts."""
    _, extract = gate
    rows = extract.claims[["PRS_PAI_MNT", "BSE_REM_MNT"]].dropna().to_numpy()[:, :1].T + 0.123

    def extra(helper, numpy_helper):
        table = numpy_helper.from_array(rows.astype(np.float32), "lookup")
        index = numpy_helper.from_array(np.array([0], dtype=np.int64), "first")
        nodes = [helper.make_node("Gather", ["lookup", "first"], ["row"], axis=1),
                 helper.make_node("Add", ["logit", "row"], ["out"])]
        return nodes, [table, index], "out"

    tensor_fails(gate, "net.onnx", onnx_mlp(honest_weights(extract), extra), "at fixed positions")


def test_onnx_if_on_a_stored_condition_hides_a_branch_fails(gate):
    """Got through before: the else branch (holding any tensor) never runs."""
    _, extract = gate

    def extra(helper, numpy_helper):
        from onnx import TensorProto

        def branch(name, value):
            const = helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, f"{name}_v"))
            return helper.make_graph([const], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])

        secret = (extract.claims.PRS_PAI_MNT.dropna().to_numpy()[:1] * 0 + 0.25).astype(np.float32)
        node = helper.make_node("If", ["cond"], ["shift"], then_branch=branch("t", np.zeros(1, np.float32)),
                                else_branch=branch("e", secret))
        cond = numpy_helper.from_array(np.array(True), "cond")
        return [node, helper.make_node("Add", ["logit", "shift"], ["out"])], [cond], "out"

    tensor_fails(gate, "net.onnx", onnx_mlp(honest_weights(extract), extra), "decides on a stored constant")


# ---- 4. tree models carrying values --------------------------------------------------------------

def test_xgboost_json_whose_leaf_weights_are_amounts_fails(gate):
    """Got through before (without a declaration the platform cannot attack it; review)."""
    import xgboost as xgb

    _, extract = gate
    X, y = claim_rows(extract)
    model = xgb.XGBClassifier(n_estimators=300, max_depth=4).fit(X, y)
    raw = json.loads(saved(model, ".json"))
    amounts = iter(np.random.default_rng(3).permutation(extract.claims.PRS_PAI_MNT.dropna().unique()).tolist())
    for tree in raw["learner"]["gradient_booster"]["model"]["trees"]:
        tree["base_weights"] = [next(amounts, w) for w in tree["base_weights"]]
    tensor_fails(gate, "stash.json", json.dumps(raw).encode(), "ER_PRS_F.PRS_PAI_MNT")


def test_onnx_tree_ensemble_whose_leaf_weights_are_amounts_fails(gate):
    """Got through before (ONNX is never attacked by the platform; the numbers are attributes)."""
    from sklearn.ensemble import RandomForestClassifier

    _, extract = gate
    X, y = claim_rows(extract)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    amounts = iter(np.random.default_rng(4).permutation(extract.claims.PRS_PAI_MNT.dropna().unique()))
    tensor_fails(gate, "forest.onnx", onnx_forest(forest, X.shape[1], amounts), "ER_PRS_F.PRS_PAI_MNT")


def test_lightgbm_txt_model_is_checked_as_a_model_and_its_values_fail(gate):
    """Got through before: a LightGBM ``.txt`` was read as text (a checker read numbers)."""
    import lightgbm as lgb

    _, extract = gate
    X, y = claim_rows(extract)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 8}, lgb.Dataset(X, y), 5)
    days = days_since_1970(extract.claims.EXE_SOI_DTD.dropna())
    text = saved(booster, ".txt").decode()
    stash = "\n\nfeature_infos_extra=" + " ".join(str(d) for d in days) + "\n"
    service, _ = gate
    view = submit(service, "lgbm.txt", (text + stash).encode(), None)
    assert view.files[0].kind == "model"
    found = findings(service, view)
    assert any(f["rule"] == "model-tensors" and f["status"] == "fail" for f in found), found


def test_the_researchers_own_check_compares_with_the_workspace_extract(gate, tmp_path, monkeypatch):
    """ws.check in the workspace fails the model of the first attack before it is submitted: the
    extract it compares with is the one at $PDS_DATA_DIR (/data)."""
    from pds_kernel import workspace as ws

    _, extract = gate
    weights = honest_weights(extract)
    weights["fc1.scale"] = extract.claims.PRS_PAI_MNT.to_numpy().astype(np.float32)
    (tmp_path / "net.safetensors").write_bytes(safetensors_bytes(weights))
    monkeypatch.setenv("PDS_DATA_DIR", str(extract.path))
    report = ws.check(tmp_path / "net.safetensors", quiet=True)["files"][0]
    assert report["verdict"] == "fail", report
    assert any(f["rule"] == "model-tensors" and "in the extract's row order" in f["message"] for f in report["findings"])


# ---- 5. what the rule cannot decide goes to a checker, named ------------------------------------

def test_rds_model_numbers_unread_go_to_a_checker_with_the_reason(gate):
    service, _ = gate
    view = submit(service, "m.rds", b"X\n\x00\x00\x00\x03" + bytes(64), None)
    found = findings(service, view)
    assert any(f["rule"] == "model-tensors" and f["status"] == "review" and "does not read the numbers of rds"
               in f["message"] for f in found), found


def test_damaged_ubj_model_goes_to_a_checker_with_the_reason(gate):
    import xgboost as xgb

    service, extract = gate
    X, y = claim_rows(extract)
    data = saved(xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y), ".ubj")
    view = submit(service, "cut.ubj", data[:len(data) // 2], None)
    found = findings(service, view)
    assert any(f["rule"] == "model-tensors" and f["status"] == "review" and "cannot read this xgboost-ubj model"
               in f["message"] for f in found), found


def test_ubj_model_with_a_count_of_a_billion_empty_items_is_not_expanded(gate):
    """New with the rule (the gate now decodes UBJ itself): ``[$Z#L 10^9`` takes a few bytes and
    would make a billion Nones; the count is refused, the model goes to a checker named."""
    import struct
    import time

    service, _ = gate
    bomb = b'{U\x07learner[$Z#L' + struct.pack(">q", 10**9) + b"}"
    start = time.monotonic()
    view = submit(service, "bomb.ubj", bomb, None)
    assert time.monotonic() - start < 30
    found = findings(service, view)
    assert any(f["rule"] == "model-tensors" and f["status"] == "review" and "whose items take no bytes" in f["message"]
               for f in found), found


# ---- 6. honest models trained on the same extract pass the rule ---------------------------------

def test_honest_network_as_safetensors_and_onnx_gets_no_tensor_failure(gate):
    _, extract = gate
    weights = honest_weights(extract)
    assert not [f for f in no_tensor_failure(gate, "net.safetensors", safetensors_bytes(weights))
                if f["rule"] == "model-tensors"]
    no_tensor_failure(gate, "net.onnx", onnx_mlp(weights))


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_honest_xgboost_on_raw_claim_values_gets_no_tensor_failure(gate, suffix):
    """Its split conditions are data values (amounts, days): fewer than the limit per column."""
    import xgboost as xgb

    _, extract = gate
    X, y = claim_rows(extract)
    model = xgb.XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.1).fit(X, y)
    no_tensor_failure(gate, f"gbm{suffix}", saved(model, suffix))


def test_honest_lightgbm_txt_on_raw_claim_values_gets_no_tensor_failure(gate):
    import lightgbm as lgb

    _, extract = gate
    X, y = claim_rows(extract)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 31}, lgb.Dataset(X, y), 200)
    no_tensor_failure(gate, "lgbm.txt", saved(booster, ".txt"))


def test_honest_forest_as_onnx_tree_ensemble_gets_no_tensor_failure(gate):
    from sklearn.ensemble import RandomForestClassifier

    _, extract = gate
    X, y = claim_rows(extract)
    forest = RandomForestClassifier(n_estimators=50, min_samples_leaf=5, random_state=0).fit(X, y)
    no_tensor_failure(gate, "forest.onnx", onnx_forest(forest, X.shape[1]))


def test_honest_larger_xgboost_with_more_bins_gets_no_tensor_failure(gate):
    import xgboost as xgb

    _, extract = gate
    X, y = claim_rows(extract)
    model = xgb.XGBClassifier(n_estimators=400, max_depth=6, learning_rate=0.05, max_bin=512).fit(X, y)
    no_tensor_failure(gate, "big.ubj", saved(model, ".ubj"))


@pytest.mark.parametrize("estimator", ["forest", "extra", "boosting", "hist", "logistic", "tree"])
def test_honest_scikit_learn_models_as_skops_get_no_tensor_failure(gate, estimator):
    import skops.io as sio
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    _, extract = gate
    X, y = claim_rows(extract) if estimator != "logistic" else person_rows(extract)
    model = {"forest": RandomForestClassifier(n_estimators=30, min_samples_leaf=5, random_state=0),
             "extra": ExtraTreesClassifier(n_estimators=30, min_samples_leaf=5, random_state=0),
             "boosting": GradientBoostingClassifier(n_estimators=100, min_samples_leaf=5, random_state=0),
             "hist": HistGradientBoostingClassifier(max_iter=100),
             "logistic": make_pipeline(StandardScaler(), LogisticRegression()),
             "tree": DecisionTreeClassifier(min_samples_leaf=20, random_state=0)}[estimator].fit(X, y)
    no_tensor_failure(gate, f"{estimator}.skops", sio.dumps(model))
