"""Red team 14A: person-level data carried out inside a model file, past the automatic checks.

Each attack submits a real model (built with the real libraries) through the real airlock service,
on a project with a real extract built from a synthetic delivery, and asserts the gate fails it
(or refuses it) with a finding that names the problem. Each docstring says whether the attack got
through before this round's fix (then the file went to a checker as "review" with no finding that
says it holds rows). The places attacked are the ones the gate's readers skipped: numbers written
as text (safetensors ``__metadata__``, ONNX metadata and doc strings, XGBoost attributes, LightGBM
lines that are no ``key=numbers``), bytes after the end a format's reader stops at (a UBJ model, a
skops array, a ZIP comment) and the low bits of genuine float weights. Rules:
pds_kernel/airlock/checks/model_arrays.py, model_text.py, models.py; docs/output-checking.md,
"A model's numbers"."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from model_tensor_support import checker_findings as findings
from model_tensor_support import mlp_weights, onnx_mlp, person_rows, safetensors_bytes, saved, submit, tensor_gate
from redteam14_models_support import as_text, bf16_file, in_low_bits, skops_rewritten, with_zip_comment, zipped_claims

from pds_kernel.airlock.staging import RefusedFiles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """(airlock service, the project's demo extract), for the whole module."""
    with tensor_gate(tmp_path_factory.mktemp("redteam14-models")) as pair:
        yield pair


def _fails(gate, name: str, data: bytes, words: str, rules=("model-tensors", "model-data")) -> list[dict]:
    """Refused at submission with ``words`` in the reason, or kept with a failing finding of one of
    ``rules`` saying ``words``."""
    service, _ = gate
    if "file-type" in rules:
        with pytest.raises(RefusedFiles) as caught:
            submit(service, name, data, None)
        assert words in caught.value.reasons[name], caught.value.reasons
        return []
    view = submit(service, name, data, None)
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert any(f["rule"] in rules and f["status"] == "fail" and words in f["message"] for f in found), found
    return found


def _amounts(extract) -> np.ndarray:
    """The paid amounts of the claims, in the extract's row order (person-level rows)."""
    return extract.claims.PRS_PAI_MNT.dropna().to_numpy()[:2000]


def _weights(extract) -> dict:
    return mlp_weights(*person_rows(extract), steps=50)


# ---- 1. numbers written as text in a model's strings --------------------------------------------

def test_safetensors_metadata_holding_a_column_as_text_fails(gate):
    """Got through before: ``__metadata__`` was read for identifiers only; numbers there were skipped."""
    _, extract = gate
    from safetensors.numpy import save

    data = save(_weights(extract), metadata={"training_log": as_text(_amounts(extract))})
    _fails(gate, "net.safetensors", data, "ER_PRS_F.PRS_PAI_MNT")


def test_safetensors_metadata_one_number_per_key_fails(gate):
    """Got through before: each value a lone number (the string scan skips a number as a weight)."""
    _, extract = gate
    from safetensors.numpy import save

    meta = {f"step_{i}": repr(float(v)) for i, v in enumerate(_amounts(extract))}
    _fails(gate, "net.safetensors", save(_weights(extract), metadata=meta), "ER_PRS_F.PRS_PAI_MNT")


def test_onnx_metadata_and_doc_string_holding_a_column_as_text_fail(gate):
    """Got through before: ONNX strings were read for identifiers only."""
    import onnx

    _, extract = gate
    for where in ("metadata", "doc_string"):
        model = onnx.load_from_string(onnx_mlp(_weights(extract)))
        if where == "metadata":
            onnx.helper.set_model_props(model, {"calibration": as_text(_amounts(extract), ",")})
        else:
            model.graph.doc_string = as_text(_amounts(extract), "\n")
        _fails(gate, f"{where}.onnx", model.SerializeToString(), "ER_PRS_F.PRS_PAI_MNT")


def test_xgboost_attribute_holding_a_column_as_text_fails(gate):
    """Got through before: a JSON string was read as a number only when it was one number."""
    import xgboost as xgb

    _, extract = gate
    X, y = person_rows(extract)
    raw = json.loads(saved(xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, y), ".json"))
    raw["learner"].pop("attributes", None)  # last, as XGBoost would not write it: the head stays a model's
    raw["learner"]["attributes"] = {"notes": as_text(_amounts(extract), ";")}
    _fails(gate, "gbm.json", json.dumps(raw).encode(), "ER_PRS_F.PRS_PAI_MNT")


def test_lightgbm_text_with_lines_of_numbers_that_are_no_key_fails(gate):
    """Got through before: only ``key=numbers`` lines were read; LightGBM's parser stops at the
    end of its sections and ignores the rest."""
    import lightgbm as lgb

    _, extract = gate
    X, y = person_rows(extract)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 5)
    rows = "\n".join(as_text(chunk) for chunk in np.array_split(_amounts(extract), 200))
    _fails(gate, "lgbm.txt", saved(booster, ".txt") + b"\n" + rows.encode() + b"\n", "ER_PRS_F.PRS_PAI_MNT")


# ---- 2. bytes after the end a reader stops at --------------------------------------------------

def test_ubj_model_followed_by_the_amounts_as_float32_fails(gate):
    """Got through before: the UBJ reader returned at the end of the document; what follows was
    neither read nor refused (XGBoost's loader ignores it too)."""
    import xgboost as xgb

    _, extract = gate
    X, y = person_rows(extract)
    data = saved(xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, y), ".ubj")
    _fails(gate, "gbm.ubj", data + _amounts(extract).astype("<f4").tobytes(), "after", rules=("file-type",))


def test_skops_array_followed_by_the_amounts_fails(gate):
    """Got through before: ``numpy.load`` reads the shape its header says; bytes after it in the
    member were neither compared nor refused (skops loads the model)."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    _, extract = gate
    X, y = person_rows(extract)
    data = sio.dumps(LogisticRegression().fit(X, y))
    payload = _amounts(extract).astype("<f8").tobytes()
    data = skops_rewritten(data, lambda name, raw: raw + payload if name.endswith(".npy") else raw)
    _fails(gate, "lr.skops", data, "after", rules=("file-type",))


def test_skops_zip_comment_holding_rows_fails(gate):
    """Got through before: only the archive's members were read, not its comment (65,535 bytes)."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    _, extract = gate
    X, y = person_rows(extract)
    data = with_zip_comment(sio.dumps(LogisticRegression().fit(X, y)), as_text(_amounts(extract)[:3000]).encode())
    _fails(gate, "lr.skops", data, "comment", rules=("file-type",))


def test_lightgbm_text_followed_by_an_archive_of_the_claims_is_refused(gate):
    """Got through before: the bytes after LightGBM's sections were read as text (no identifier,
    no number) and nothing said the file was not text."""
    import lightgbm as lgb

    _, extract = gate
    X, y = person_rows(extract)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 5)
    _fails(gate, "lgbm.txt", saved(booster, ".txt") + zipped_claims(extract), "not UTF-8 text", rules=("file-type",))


def test_base64_of_an_archive_in_metadata_and_attributes_fails(gate):
    """Got through before: an encoded file is neither identifiers nor numbers; now a string of more
    than 256 characters without a space or punctuation fails wherever it is."""
    import xgboost as xgb
    from safetensors.numpy import save

    _, extract = gate
    blob = base64.b64encode(zipped_claims(extract)).decode()
    _fails(gate, "net.safetensors", save(_weights(extract), metadata={"config": blob}), "unbroken string")
    X, y = person_rows(extract)
    raw = json.loads(saved(xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, y), ".json"))
    raw["learner"].pop("attributes", None)
    raw["learner"]["attributes"] = {"checkpoint": blob}
    _fails(gate, "gbm.json", json.dumps(raw).encode(), "unbroken string")


# ---- 3. the low bits of genuine weights ------------------------------------------------------

def test_pseudonyms_in_the_low_bits_of_float32_weights_fail(gate):
    """Got through before: two bytes per weight, so no 8 bytes of a pseudonym are contiguous in the
    file, and each weight moves by under 1 %: the tensor's values look like weights."""
    _, extract = gate
    weights = _weights(extract)
    rng = np.random.default_rng(3)
    weights["embed.weight"] = rng.normal(scale=0.1, size=(400, 16)).astype(np.float32)
    payload = b"".join(bytes.fromhex(p) for p in extract.ids[:200])
    weights["embed.weight"] = in_low_bits(weights["embed.weight"], payload)
    _fails(gate, "net.safetensors", safetensors_bytes(weights), "low bits")


def test_pseudonyms_in_the_low_byte_of_float16_and_bfloat16_weights_fail(gate):
    """Got through before: one byte per half-precision weight (bfloat16 is read as float32, whose
    low bytes are then zero: its own low byte is the third)."""
    from safetensors.numpy import save

    _, extract = gate
    payload = np.frombuffer(b"".join(bytes.fromhex(p) for p in extract.ids[:100]), dtype=np.uint8)
    rng = np.random.default_rng(4)
    half = rng.normal(scale=0.1, size=len(payload)).astype(np.float16)
    half = ((half.view(np.uint16) & 0xFF00) | payload).astype(np.uint16).view(np.float16)
    _fails(gate, "half.safetensors", save({**_weights(extract), "embed.weight": half}), "low bits")
    bf16 = (rng.normal(scale=0.1, size=len(payload)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bf16 = (bf16 & 0xFF00) | payload
    header = {"embed.weight": {"dtype": "BF16", "shape": [len(bf16)], "data_offsets": [0, 2 * len(bf16)]}}
    _fails(gate, "bf16.safetensors", bf16_file(header, bf16.astype("<u2").tobytes()), "low bits")


# ---- 4. controls and attacks the gate already stopped --------------------------------------------

def test_skops_encoders_holding_pseudonyms_or_a_column_as_categories_fail(gate):
    """Stopped before (regression): an encoder's ``categories_`` or a vectorizer's vocabulary are
    strings the scan reads, and a numeric category list is numbers the tensor rule compares."""
    import skops.io as sio
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import OneHotEncoder

    _, extract = gate
    ids = np.array(extract.ids[:300]).reshape(-1, 1)
    _fails(gate, "ohe.skops", sio.dumps(OneHotEncoder().fit(ids)), "pseudonym")
    _fails(gate, "vec.skops", sio.dumps(CountVectorizer(lowercase=False).fit(list(extract.ids[:300]))), "pseudonym")
    amounts = _amounts(extract).reshape(-1, 1)
    _fails(gate, "ohe-amounts.skops", sio.dumps(OneHotEncoder().fit(amounts)), "ER_PRS_F.PRS_PAI_MNT")


def test_honest_models_still_go_to_a_checker_without_failure(gate):
    """Controls: genuine files of each format touched by this round's fix get no failing finding."""
    import lightgbm as lgb
    import onnx
    import skops.io as sio
    import xgboost as xgb
    from safetensors.numpy import save
    from sklearn.ensemble import RandomForestClassifier

    service, extract = gate
    X, y = person_rows(extract)
    weights = _weights(extract)
    model = onnx.load_from_string(onnx_mlp(weights))
    onnx.helper.set_model_props(model, {"framework": "torch 2.4", "epochs": "50", "lr": "0.001"})
    files = {"net.safetensors": save(weights, metadata={"format": "pt", "epochs": "50"}),
             "net.onnx": model.SerializeToString(),
             "gbm.ubj": saved(xgb.XGBClassifier(n_estimators=50, max_depth=4).fit(X, y), ".ubj"),
             "gbm.json": saved(xgb.XGBClassifier(n_estimators=50, max_depth=4).fit(X, y), ".json"),
             "lgbm.txt": saved(lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 50), ".txt"),
             "rf.skops": sio.dumps(RandomForestClassifier(n_estimators=20, min_samples_leaf=10, random_state=0).fit(X, y))}
    for name, data in files.items():
        view = submit(service, name, data, None)
        found = findings(service, view)
        assert view.files[0].check_status == "review", (name, found)
        assert not [f for f in found if f["status"] == "fail"], (name, found)


def test_a_model_named_for_another_format_is_refused(gate):
    """Stopped before (regression): a UBJ model named .onnx, a skops ZIP named .ubj."""
    import skops.io as sio
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression

    service, extract = gate
    X, y = person_rows(extract)
    for name, data in (("gbm.onnx", saved(xgb.XGBClassifier(n_estimators=2).fit(X, y), ".ubj")),
                       ("lr.ubj", sio.dumps(LogisticRegression().fit(X, y)))):
        with pytest.raises(RefusedFiles):
            submit(service, name, data, None)


# ---- 5. trees whose leaves are persons -----------------------------------------------------------

def test_fully_grown_tree_or_ensemble_without_a_declaration_fails(gate):
    """Got through before: without a declaration the platform cannot attack it, and the checker saw
    only "no declaration" and the generic "model" finding; a tree grown to leaves of one person is a
    lookup table of the training rows (each leaf: a person's box of features and their outcome). An
    ensemble of such trees was named to the checker (review) until red team 16B, which fails it too
    (tests/security/test_redteam16_exports.py)."""
    import skops.io as sio
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.tree import DecisionTreeClassifier

    _, extract = gate
    X, y = person_rows(extract)
    _fails(gate, "tree.skops", sio.dumps(DecisionTreeClassifier(random_state=0).fit(X, y)), "min_samples_leaf=5")
    _fails(gate, "extra.skops", sio.dumps(ExtraTreesClassifier(n_estimators=5, random_state=0).fit(X, y)),
           "min_samples_leaf=5")


def test_onnx_label_encoder_and_string_initializer_holding_a_column_as_text_fail(gate):
    """Got through before: strings of under 8 characters, one protobuf field each, were never read
    as text, and the tensor rule read no string tensor."""
    from onnx import TensorProto, helper, numpy_helper

    _, extract = gate
    keys = [repr(float(v)) for v in _amounts(extract)]
    text_in = [helper.make_tensor_value_info("S", TensorProto.STRING, [None])]
    encoder = helper.make_node("LabelEncoder", ["S"], ["Y"], domain="ai.onnx.ml", keys_strings=keys,
                               values_floats=[0.5] * len(keys))
    concat = helper.make_node("Concat", ["S", "vocabulary"], ["S2"], axis=0)
    graphs = {"encoder.onnx": helper.make_graph([encoder], "le", text_in,
                                                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None])]),
              "vocabulary.onnx": helper.make_graph([concat], "vocabulary", text_in,
                                                   [helper.make_tensor_value_info("S2", TensorProto.STRING, [None])],
                                                   [numpy_helper.from_array(np.array(keys, dtype=object), "vocabulary")])}
    for name, graph in graphs.items():
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
        _fails(gate, name, model.SerializeToString(), "ER_PRS_F.PRS_PAI_MNT")


def test_an_archive_appended_to_onnx_safetensors_or_xgboost_json_is_stopped(gate):
    """Stopped before (regression): protobuf, the safetensors offsets and JSON leave no room after
    the model, so the archive is refused or fails the file."""
    import xgboost as xgb

    service, extract = gate
    X, y = person_rows(extract)
    weights = _weights(extract)
    for name, data in (("net.onnx", onnx_mlp(weights)), ("net.safetensors", safetensors_bytes(weights))):
        with pytest.raises(RefusedFiles):
            submit(service, name, data + zipped_claims(extract), None)
    data = saved(xgb.XGBClassifier(n_estimators=3).fit(X, y), ".json") + zipped_claims(extract)
    _fails(gate, "gbm.json", data, "not a JSON document")
