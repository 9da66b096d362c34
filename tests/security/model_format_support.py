"""Support of tests/security/test_model_format_attacks.py: one airlock service for the module, and
genuine or hostile safetensors and ONNX files (built with the ``safetensors`` and ``onnx`` libraries
where the format allows it, by hand where the attack is a malformed structure)."""

from __future__ import annotations

import json
import struct
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai"))  # its helper module

from model_check_support import make_service, submit  # noqa: F401

from pds_kernel.runtime import Runtime
from tests.conftest import make_settings


@contextmanager
def airlock(root: Path):
    """(service, settings): a fresh platform under ``root`` with the model-check project."""
    settings = make_settings(root)
    runtime = Runtime(settings)
    try:
        yield make_service(runtime), settings
    finally:
        runtime.close()


# ---- safetensors ------------------------------------------------------------------------------

def genuine_safetensors() -> bytes:
    from safetensors.numpy import save

    return save({"weight": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.zeros(3, dtype=np.float32)})


def safetensors(header, data: bytes = b"", length: int | None = None) -> bytes:
    """A file with ``header`` (an object, JSON-encoded, or raw bytes) and ``data``; ``length``
    overrides the 8-byte header length field."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def tensor(dtype: str, shape: list, offsets: list) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


# ---- ONNX -------------------------------------------------------------------------------------

def _graph(name: str, initializers=(), nodes=None):
    from onnx import TensorProto, helper

    nodes = nodes if nodes is not None else [helper.make_node("Add", ["X", "W"], ["Y"])]
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3])],
                             [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3])], list(initializers))


def _weights(name: str = "W"):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array([1.0, 2.0, 3.0], dtype=np.float32), name)


def _model(graph, opsets=(("", 17),)):
    from onnx import helper

    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                             producer_name="pds-tests")


def genuine_onnx() -> bytes:
    import onnx

    model = _model(_graph("add", [_weights()]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def external(location: str, name: str = "W"):
    """A tensor whose data is read from ``location`` (relative to the model's directory) on load."""
    from onnx import TensorProto
    from onnx.external_data_helper import set_external_data

    weights = _weights(name)
    set_external_data(weights, location=location, offset=0, length=12)
    weights.data_location = TensorProto.EXTERNAL
    weights.ClearField("raw_data")
    return weights


def onnx_with_external(location: str) -> bytes:
    return _model(_graph("add", [external(location)])).SerializeToString()


def onnx_with_external_in_a_subgraph(location: str) -> bytes:
    """The external tensor sits in the ``then`` branch of an If node, not among the initializers."""
    from onnx import TensorProto, helper

    branch = helper.make_graph([helper.make_node("Identity", ["V"], ["Z"])], "then", [],
                               [helper.make_tensor_value_info("Z", TensorProto.FLOAT, [3])], [external(location, "V")])
    other = helper.make_graph([helper.make_node("Identity", ["X"], ["Z2"])], "else", [],
                              [helper.make_tensor_value_info("Z2", TensorProto.FLOAT, [3])])
    cond = helper.make_tensor("C", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["C"], ["Y"], then_branch=branch, else_branch=other)
    return _model(_graph("if", [cond], [node])).SerializeToString()


def onnx_with_custom_operator() -> bytes:
    from onnx import helper

    node = helper.make_node("RunShell", ["X", "W"], ["Y"], domain="com.example.native")
    return _model(_graph("custom", [_weights()], [node]), opsets=(("", 17), ("com.example.native", 1))
                  ).SerializeToString()


def onnx_nested(levels: int) -> bytes:
    """If nodes nested ``levels`` deep (each level: graph > node > attribute > graph)."""
    from onnx import TensorProto, helper

    def leaf(name):
        return helper.make_graph([helper.make_node("Identity", ["X"], [name])], name, [],
                                 [helper.make_tensor_value_info(name, TensorProto.FLOAT, [3])])

    inner = leaf("Z0")
    for level in range(1, levels + 1):
        node = helper.make_node("If", ["C"], [f"Z{level}"], then_branch=inner, else_branch=leaf(f"E{level}"))
        inner = helper.make_graph([node], f"g{level}", [],
                                  [helper.make_tensor_value_info(f"Z{level}", TensorProto.FLOAT, [3])])
    return _model(inner).SerializeToString()
