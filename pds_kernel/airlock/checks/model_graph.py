"""What an ONNX graph tells statically about its stored tensors (rule ``model-tensors``).

A tensor the graph reads is not dead weight (:mod:`.model_formats` refuses that), but its
contribution can still be nullified by what the graph does with it. Each of these **fails**:

- a ``Mul``, ``MatMul``, ``Gemm`` or ``And`` one of whose operands is a stored constant (an
  initializer or a ``Constant`` node) of zeros, or of magnitude under :data:`NEGLIGIBLE`; a ``Mul``
  of two stored tensors one of which holds zeros (the entries it zeroes);
- a ``Gemm`` with ``alpha`` 0 (its A·B) or ``beta`` 0 with a C input;
- an ``If`` on a stored condition, a ``Where`` on a stored condition that is all true or all false
  (a branch that never counts);
- a ``Gather`` or ``Slice`` of a stored tensor at stored positions that reads less than half of it
  and leaves at least :data:`MIN_UNREAD` numbers unread.

Nullification the graph computes at run time (``Sub(x, x)``, a mask derived from the input) is not
found here: see docs/output-checking.md.
"""

from __future__ import annotations

import numpy as np

from .result import Finding, Status

RULE = "model-tensors"
#: magnitude under which a multiplier nullifies what it multiplies
NEGLIGIBLE = 1e-20
#: numbers of a stored tensor left unread by a fixed Gather or Slice that fail a model
MIN_UNREAD = 100
#: the largest stored tensor whose read positions are worked out
MAX_POSITIONS = 16_000_000
_MULTIPLIERS = {"Mul", "MatMul", "Gemm", "And", "BitwiseAnd", "MatMulInteger"}


def _read_share(node, inputs: list[str], constants: dict) -> int | None:
    """How many numbers of the stored tensor a Gather or Slice with stored positions reads, when it
    reads less than half of them and leaves :data:`MIN_UNREAD` unread; else None."""
    data = constants[inputs[0]]
    given = node.inputs + [""] * 5  # Slice's optional axes and steps may be left empty
    if data.ndim == 0 or data.size > MAX_POSITIONS or len(inputs) < 2 or not all(i in constants for i in inputs[1:]):
        return None
    positions = np.arange(data.size, dtype=np.int32).reshape(data.shape)
    try:
        if node.op == "Gather":
            axis = int(node.attributes.get("axis") or 0)
            picked = np.take(positions, constants[inputs[1]].astype(np.int64), axis=axis)
        else:
            starts, ends = (constants[i].astype(np.int64).ravel() for i in given[1:3])
            axes = constants[given[3]].astype(np.int64).ravel() if given[3] else np.arange(len(starts))
            steps = constants[given[4]].astype(np.int64).ravel() if given[4] else np.ones(len(starts), int)
            index = [slice(None)] * data.ndim
            for start, end, axis, step in zip(starts, ends, axes, steps):
                index[int(axis)] = slice(int(start), int(end), int(step))
            picked = positions[tuple(index)]
    except (IndexError, ValueError, TypeError):
        return None
    read = len(np.unique(picked))
    return read if read * 2 < data.size and data.size - read >= MIN_UNREAD else None


def _nullifies(value) -> bool:
    if not isinstance(value, np.ndarray) or value.size == 0:
        return False
    values = value.astype(np.float64)
    return bool(np.all(np.abs(values) < NEGLIGIBLE))


def graph_findings(graphs) -> list[Finding]:
    """``model-tensors`` failures of ONNX graphs given as (constants, nodes) (see the module)."""
    out = []
    for constants, nodes in graphs:
        for node in nodes:
            what = f"ONNX node {node.op} (output {(node.outputs or [''])[0][:60]!r})"
            inputs = [i for i in node.inputs if i]
            if node.op in _MULTIPLIERS:
                zero = [i for i in inputs[:2] if _nullifies(constants.get(i))]
                if zero:
                    out.append(f"{what} multiplies by the stored constant {zero[0][:60]!r}, whose values are all zero "
                               "(or negligible): what it multiplies never counts, so it can only carry data")
                elif len(inputs) >= 2 and all(i in constants for i in inputs[:2]) and node.op == "Mul":
                    masked = [i for i in inputs[:2] if np.any(constants[i] == 0)]
                    if masked:
                        out.append(f"{what} multiplies two stored tensors and {masked[0][:60]!r} holds zeros: the "
                                   "entries it zeroes never count, so they can only carry data")
            if node.op == "Gemm":
                if node.attributes.get("alpha") == 0.0:
                    out.append(f"{what} has alpha 0: its A·B never counts")
                if node.attributes.get("beta") == 0.0 and len(inputs) >= 3:
                    out.append(f"{what} has beta 0: its input C never counts")
            if node.op in ("If", "Where") and inputs and inputs[0] in constants:
                condition = constants[inputs[0]]
                if node.op == "If" or np.all(condition) or not np.any(condition):
                    out.append(f"{what} decides on a stored constant: one of its branches never counts")
            if node.op in ("Gather", "Slice") and inputs and inputs[0] in constants:
                read = _read_share(node, inputs, constants)
                if read is not None:
                    out.append(f"{what} reads {read} of the {constants[inputs[0]].size} numbers of the stored tensor "
                               f"{inputs[0][:60]!r} at fixed positions: the others never count")
    return [Finding(RULE, Status.FAIL, f"{message}; export the model without it") for message in dict.fromkeys(out)][:10]


__all__ = ["graph_findings", "NEGLIGIBLE", "MIN_UNREAD"]
