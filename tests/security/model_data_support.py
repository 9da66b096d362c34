"""Support of tests/security/test_model_data_attacks.py: model files that carry the project's rows
themselves (instance-based estimators, identifiers in names and metadata, unused tensors), built
with the real libraries (scikit-learn/skops, safetensors, onnx, XGBoost, LightGBM)."""

from __future__ import annotations

import io
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai"))  # its helper module

from model_check_support import FEATURES

#: a NIR-shaped number (sex, year, month, department, commune, order, key) and a day of care
NIR = "185127512345678"
DAY = "2021-03-14"


def xy(frame, n: int = 200):
    rows = frame.iloc[:n]
    return rows[FEATURES].to_numpy(), rows["outcome"].to_numpy()


def skops_of(model) -> bytes:
    import skops.io as sio

    return sio.dumps(model)


def with_member(data: bytes, name: str, payload: bytes) -> bytes:
    """The ZIP ``data`` with one more member."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr(name, payload)
    return out.getvalue()


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def safetensors_of(tensors: dict, metadata: dict | None = None) -> bytes:
    from safetensors.numpy import save

    return save(tensors, metadata=metadata)


def id_bytes(ids) -> np.ndarray:
    """PERSON_IDs as a U8 tensor of their ASCII bytes, one row per person."""
    return np.frombuffer("".join(ids).encode(), dtype=np.uint8).reshape(len(ids), -1).copy()


# ---- ONNX ------------------------------------------------------------------------------------

def onnx_linear(extra_initializers=(), extra_nodes=(), outputs=("Y",), functions=(), **model_fields) -> bytes:
    """Y = X @ W + B: a genuine linear model, with whatever else the attack adds."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((6, 1), 0.5, dtype=np.float32), "W")
    b = numpy_helper.from_array(np.zeros(1, dtype=np.float32), "B")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["XW"]), helper.make_node("Add", ["XW", "B"], ["Y"]),
             *extra_nodes]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6])],
                              outs, [w, b, *extra_initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pds-tests",
                              functions=list(functions))
    for key, value in model_fields.items():
        if key == "metadata":
            helper.set_model_props(model, value)
        else:
            setattr(model, key, value)
    return model.SerializeToString()


def rows_tensor(frame, name: str = "rows"):
    from onnx import numpy_helper

    return numpy_helper.from_array(frame[FEATURES].to_numpy().astype(np.float32), name)


def onnx_svm(frame) -> bytes:
    """An SVMClassifier (ai.onnx.ml) whose support_vectors are 20 training rows."""
    from onnx import TensorProto, helper

    sv = frame[FEATURES].to_numpy()[:20]
    node = helper.make_node("SVMClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml",
                            classlabels_ints=[0, 1], coefficients=[1.0] * 20, kernel_type="RBF",
                            kernel_params=[0.1, 0.0, 3.0], rho=[0.0], support_vectors=sv.ravel().tolist(),
                            vectors_per_class=[10, 10])
    graph = helper.make_graph([node], "svm", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
                             ).SerializeToString()


# ---- boosted trees ---------------------------------------------------------------------------

def xgboost_bytes(model, suffix: str = ".json") -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{suffix}"
        model.save_model(path)
        return path.read_bytes()


def lightgbm_text(booster) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.txt"
        booster.save_model(str(path))
        return path.read_bytes()
