"""Support of tests/security/test_model_tensor_attacks.py: a real demo extract (synthetic delivery
→ ingestion → extract build) for the model-check project, the tables models are trained on, and
model files built with the real libraries (safetensors, onnx, XGBoost, LightGBM, scikit-learn/skops)."""

from __future__ import annotations

import io
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai"))  # its helper module

from model_check_support import PROJECT, make_service, submit  # noqa: F401  (submit: re-exported)

from pds_kernel.extract.build import extract_dir, run_build
from pds_kernel.extract.layout import read_tables
from pds_kernel.extract.spec import parse_spec
from pds_kernel.ingest import ingest_delivery
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.snds.generator import generate
from tests.conftest import make_settings

#: people dispensed an antidiabetic drug (ATC A10) in 2021-2022, with their claims and stays
SPEC = (f"project: {PROJECT}\nyears: [2021, 2022]\ninclude: [{{drug: {{atc: [A10]}}}}]\n"
        "tables: {IR_BEN_R: all, ER_PRS_F: all, ER_PHA_F: all, T_MCOaaC: all}\n")


@dataclass
class Extract:
    tables: dict[str, pd.DataFrame]
    path: Path  #: the published extract (what a workspace sees at /data)

    @property
    def claims(self) -> pd.DataFrame:
        return self.tables["ER_PRS_F"]

    @property
    def ids(self) -> list[str]:
        return list(self.tables["COHORT"].PERSON_ID)


def build_extract(runtime, root: Path, patients: int = 3000) -> Extract:
    """Generate a delivery, ingest it and build the project's extract, as ``make run`` does."""
    delivery = root / "delivery"
    generate(delivery, patients=patients, years=(2021, 2022), seed=11)
    ingest_delivery(runtime, delivery, actor="test")
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)
    registry.upsert_project("root", PROJECT, title=PROJECT, start_date=date(2020, 1, 1), end_date=date(2099, 12, 31))
    run_build(runtime, PROJECT, parse_spec(SPEC), actor="root")
    path = extract_dir(runtime.settings, PROJECT)
    return Extract({name: frame.to_pandas() for name, frame in read_tables(path).items()}, path)


def checker_findings(service, view) -> list[dict]:
    """The findings a checker sees for the first file of a request."""
    return service.get_request("olga", view.id).files[0].check["findings"]


@contextmanager
def tensor_gate(root: Path):
    """(airlock service, the project's extract): a fresh platform whose model-check project has a
    real extract built from a synthetic delivery."""
    runtime = Runtime(make_settings(root / "pds"))
    try:
        service = make_service(runtime)
        yield service, build_extract(runtime, root)
    finally:
        runtime.close()


@contextmanager
def authors_gate(root: Path, authors: tuple[str, ...]):
    """(airlock service, the project's extract, a network's genuine weights): :func:`tensor_gate`
    with ``authors`` researchers of its project, each test submitting as its own."""
    from pds_kernel.registry import Role

    with tensor_gate(root) as (service, extract):
        for name in authors:
            service.registry.upsert_user("root", name)
            service.registry.add_member("root", PROJECT, name, Role.RESEARCHER, date(2099, 12, 31))
        yield service, extract, mlp_weights(*person_rows(extract), steps=20)


class SentRequests:
    """The requests a test sent, withdrawn after it: withdrawn requests are not judged with later
    ones (the gate judges a model, text or code file with every author's recent exports of the
    project: red team 18B), so each attack is judged on its own pieces."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def send(self, service, author: str, files: dict[str, bytes], context: dict | None = None):
        view = service.create(author, PROJECT, [(n, io.BytesIO(d)) for n, d in files.items()], "for the paper",
                              context or {})
        self.sent.append((author, view.id))
        return view

    def withdraw_all(self, service) -> None:
        while self.sent:
            author, request_id = self.sent.pop()
            service.withdraw(author, request_id, "test over")


def claim_rows(extract: Extract) -> tuple[np.ndarray, np.ndarray]:
    """One row per claim: amounts, base, birth year, day of care; target: a GP's claim."""
    claims = extract.claims.dropna(subset=["PRS_PAI_MNT", "BSE_REM_MNT", "EXE_SOI_DTD"])
    days = pd.to_datetime(claims.EXE_SOI_DTD).to_numpy().astype("datetime64[D]").astype(np.int64)
    X = np.column_stack([claims.PRS_PAI_MNT, claims.BSE_REM_MNT, claims.BEN_NAI_ANN, days, claims.PRS_ACT_QTE])
    return X.astype(np.float64), (claims.PSE_SPE_COD.to_numpy() == 1).astype(int)


def person_rows(extract: Extract) -> tuple[np.ndarray, np.ndarray]:
    """One row per person: age, sex, claims, total paid, stays; target: at least one stay."""
    claims = extract.claims.groupby("PERSON_ID").agg(n=("PRS_PAI_MNT", "size"), paid=("PRS_PAI_MNT", "sum"))
    people = extract.tables["IR_BEN_R"].set_index("PERSON_ID").join(claims).fillna(0)
    stays = extract.tables["T_MCOaaC"].groupby("PERSON_ID").size()
    X = np.column_stack([2022 - people.BEN_NAI_ANN, people.BEN_SEX_COD, people.n, people.paid]).astype(np.float64)
    return X, people.index.isin(stays.index).astype(int)


def days_since_1970(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values).to_numpy().astype("datetime64[D]").astype(np.int64)


def standardised(X: np.ndarray) -> np.ndarray:
    return (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-9)


def mlp_weights(X: np.ndarray, y: np.ndarray, hidden: int = 16, steps: int = 300, seed: int = 0) -> dict:
    """A one-hidden-layer network trained by gradient descent (what torch would save), float32."""
    rng = np.random.default_rng(seed)
    X = standardised(X)
    w1, b1 = rng.normal(scale=0.5, size=(X.shape[1], hidden)), np.zeros(hidden)
    w2, b2 = rng.normal(scale=0.5, size=(hidden, 1)), np.zeros(1)
    for _ in range(steps):
        h = np.maximum(X @ w1 + b1, 0)
        p = 1 / (1 + np.exp(-(h @ w2 + b2)))
        g = (p[:, 0] - y)[:, None] / len(y)
        gh = (g @ w2.T) * (h > 0)
        w2, b2 = w2 - 0.5 * h.T @ g, b2 - 0.5 * g.sum(axis=0)
        w1, b1 = w1 - 0.5 * X.T @ gh, b1 - 0.5 * gh.sum(axis=0)
    return {"fc1.weight": w1.T.astype(np.float32), "fc1.bias": b1.astype(np.float32),
            "fc2.weight": w2.T.astype(np.float32), "fc2.bias": b2.astype(np.float32)}


def safetensors_bytes(tensors: dict) -> bytes:
    from safetensors.numpy import save

    return save(tensors)


def onnx_mlp(weights: dict, extra=None) -> bytes:
    """The network of :func:`mlp_weights` as ONNX (MatMul, Add, Relu, Sigmoid); ``extra(helper,
    numpy_helper)`` returns (nodes, initializers, output name) appended after the network's logit."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(weights["fc1.weight"].T.copy(), "W1"), numpy_helper.from_array(weights["fc1.bias"], "B1"),
             numpy_helper.from_array(weights["fc2.weight"].T.copy(), "W2"), numpy_helper.from_array(weights["fc2.bias"], "B2")]
    nodes = [helper.make_node("MatMul", ["X", "W1"], ["h0"]), helper.make_node("Add", ["h0", "B1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["l0"]),
             helper.make_node("Add", ["l0", "B2"], ["logit"])]
    last = "logit"
    if extra is not None:
        more_nodes, more_inits, last = extra(helper, numpy_helper)
        nodes, inits = nodes + more_nodes, inits + more_inits
    nodes.append(helper.make_node("Sigmoid", [last], ["P"]))
    n = weights["fc1.weight"].shape[1]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n])],
                              [helper.make_tensor_value_info("P", TensorProto.FLOAT, [None, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pds-tests"
                             ).SerializeToString()


def saved(model, suffix: str) -> bytes:
    """An XGBoost model or LightGBM booster as its library saves it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{suffix}"
        if hasattr(model, "save_model") and suffix == ".txt":
            model.save_model(str(path))
        else:
            model.save_model(path)
        return path.read_bytes()


def onnx_forest(forest, n_features: int, leaf_values=None) -> bytes:
    """A scikit-learn forest as ONNX-ML ``TreeEnsembleClassifier`` (what skl2onnx writes):
    thresholds in ``nodes_values``, leaf class weights in ``class_weights``; ``leaf_values``
    (an iterator) replaces the weights."""
    from onnx import TensorProto, helper

    nodes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes", "true", "false")}
    classes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}
    for t, est in enumerate(forest.estimators_):
        tree = est.tree_
        for n in range(tree.node_count):
            leaf = tree.children_left[n] == -1
            for key, value in (("treeids", t), ("nodeids", n), ("featureids", max(int(tree.feature[n]), 0)),
                               ("values", float(tree.threshold[n]) if not leaf else 0.0),
                               ("modes", "LEAF" if leaf else "BRANCH_LEQ"),
                               ("true", int(tree.children_left[n]) if not leaf else 0),
                               ("false", int(tree.children_right[n]) if not leaf else 0)):
                nodes[key].append(value)
            if leaf:
                share = tree.value[n][0] / tree.value[n][0].sum()
                for c in (0, 1):
                    weight = share[c] / len(forest.estimators_)
                    classes["treeids"].append(t)
                    classes["nodeids"].append(n)
                    classes["ids"].append(c)
                    classes["weights"].append(float(next(leaf_values, weight)) if leaf_values else float(weight))
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
                            classlabels_int64s=[0, 1], nodes_treeids=nodes["treeids"], nodes_nodeids=nodes["nodeids"],
                            nodes_featureids=nodes["featureids"], nodes_values=nodes["values"],
                            nodes_modes=nodes["modes"], nodes_truenodeids=nodes["true"],
                            nodes_falsenodeids=nodes["false"], class_treeids=classes["treeids"],
                            class_nodeids=classes["nodeids"], class_ids=classes["ids"],
                            class_weights=classes["weights"])
    graph = helper.make_graph([node], "forest", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
                             ).SerializeToString()
