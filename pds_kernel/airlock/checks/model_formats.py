"""Structural validation of the tensor formats the gate lets out unattacked: safetensors and ONNX.

The platform attacks skops, XGBoost and LightGBM models (:mod:`pds_kernel.modelcheck`); ONNX and
safetensors files go to a checker with the reason. Before that, the gate reads their whole
structure with its own small parsers (no ``onnx``, no ``safetensors`` library, no native code on
hostile bytes) and refuses a file that a reader could be tricked by:

- safetensors: the 8-byte header length must fit the file and :data:`MAX_SAFETENSORS_HEADER`; the
  header must be a UTF-8 JSON object without duplicate names, nested exactly as the format says;
  each tensor needs a known dtype, a shape of non-negative integers and ``data_offsets`` inside
  the data whose length is the shape's; the tensors must tile the data exactly (no overlap, no
  hole, no trailing bytes: a gap is room for hidden records);
- ONNX: a well-formed protobuf ``ModelProto`` (every length inside its parent, nesting at most
  :data:`MAX_ONNX_DEPTH`, at most :data:`MAX_ONNX_FIELDS` fields); no tensor anywhere (initializers, sparse initializers, node
  attributes, subgraphs, training graphs, local functions) whose data is *external*: ``onnx.load``
  resolves ``external_data`` ``location`` entries against the model's directory, and a location
  such as ``../../etc/passwd`` or ``/home/...`` makes whoever opens the model read that file into
  a tensor (CVE-2024-27318 and CVE-2024-27319 were such traversals); and no operator or opset of
  a domain outside ONNX's own or the model's local functions (a custom operator runs a native
  library the reader would have to load); and no dead weight: an initializer no live node reads, a
  node whose outputs reach no model output, an initializer returned unchanged as an output, a local
  function no node calls, training information (each can only carry data).

Each function returns why the file is refused, or None.
"""

from __future__ import annotations

import json
import math
import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the largest safetensors header accepted (the format's reference reader allows 100 MB; a header
#: costs ~100 bytes per tensor, so this is over 100,000 tensors)
MAX_SAFETENSORS_HEADER = 16 * 1024 * 1024
#: bytes per element of each safetensors dtype
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
_TENSOR_KEYS = {"dtype", "shape", "data_offsets"}


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the name {key[:80]!r} appears twice")
        out[key] = value
    return out


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_problem(name: str, entry) -> tuple[str | None, tuple[int, int] | None]:
    if not isinstance(entry, dict) or set(entry) != _TENSOR_KEYS:
        return f"the entry of tensor {name[:80]!r} is not {{dtype, shape, data_offsets}}", None
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        return f"tensor {name[:80]!r} has the unknown dtype {str(dtype)[:40]!r}", None
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        return f"the shape of tensor {name[:80]!r} is not a list of non-negative integers", None
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
            or offsets[0] > offsets[1]):
        return f"the data_offsets of tensor {name[:80]!r} are not [begin, end] with 0 <= begin <= end", None
    if offsets[1] - offsets[0] != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
        return (f"tensor {name[:80]!r} spans {offsets[1] - offsets[0]} bytes but its dtype and shape need "
                f"{math.prod(shape) * SAFETENSORS_DTYPES[dtype]}"), None
    return None, (offsets[0], offsets[1])


def safetensors_problem(path: Path) -> str | None:
    """Why the file at ``path`` is not a well-formed safetensors file (see the module), or None."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        prefix = fh.read(8)
        if len(prefix) < 8:
            return "a safetensors file starts with an 8-byte header length; this file is shorter"
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            return f"its header length field says {length} bytes but only {size - 8} follow"
        if length > MAX_SAFETENSORS_HEADER:
            return f"its header of {length} bytes is larger than the gate reads ({MAX_SAFETENSORS_HEADER})"
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        return "its header is JSON nested too deeply"
    except (UnicodeDecodeError, ValueError) as exc:
        return f"its header is not a UTF-8 JSON object ({str(exc)[:120]})"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                return "its __metadata__ is not a map of strings to strings"
            continue
        problem, span = _tensor_problem(name, entry)
        if problem:
            return problem
        spans.append((span, name))
    data = size - 8 - length
    at = 0
    for (begin, end), name in sorted(spans):
        if begin != at:
            return (f"tensor {name[:80]!r} starts at byte {begin} of the data, not {at}: tensors overlap or "
                    "leave a gap (the data must be exactly the tensors)")
        at = end
    if at != data:
        return (f"the tensors end at byte {at} of the data but the data holds {data} bytes (a tensor "
                "points outside the file, or bytes follow that no tensor describes)")
    return None


# ---- ONNX: a protobuf ModelProto, read with a wire-format walker ------------------------------

#: nesting of messages the gate follows (graphs inside node attributes inside graphs ...)
MAX_ONNX_DEPTH = 64
#: the operator domains of ONNX itself (the empty string is ``ai.onnx``)
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"})


class _Damaged(ValueError):
    pass


class _Refused(ValueError):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Damaged("a truncated or over-long integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) of each field of the message in ``buf[start:end]``."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Damaged("a field numbered 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise _Damaged("a truncated fixed-width field")
            yield number, wire, pos, pos + width
            pos += width
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Damaged("a field longer than the message holding it")
            yield number, wire, pos, pos + length
            pos += length
        else:
            raise _Damaged(f"wire type {wire} (groups are not ONNX)")


def _text(buf, start: int, end: int) -> str:
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Damaged("a name that is not UTF-8") from None


#: (message, field number) -> message type of the submessage, for every path that can reach a
#: tensor, a node or an opset. Message fields not listed (type protos, value infos) hold neither.
_SUBMESSAGES = {
    ("model", 7): "graph", ("model", 8): "opset", ("model", 20): "training", ("model", 25): "function",
    ("graph", 1): "node", ("graph", 5): "tensor", ("graph", 15): "sparse",
    ("node", 5): "attribute",
    ("attribute", 5): "tensor", ("attribute", 6): "graph", ("attribute", 10): "tensor", ("attribute", 11): "graph",
    ("attribute", 22): "sparse", ("attribute", 23): "sparse",
    ("sparse", 1): "tensor", ("sparse", 2): "tensor",
    ("training", 1): "graph", ("training", 2): "graph",
    ("function", 7): "node", ("function", 9): "opset", ("function", 11): "attribute",
    ("tensor", 13): "entry",
    ("graph", 11): "value", ("graph", 12): "value",
}


#: the scalar fields the gate reads, per message type (the others are walked over, not kept)
_KEPT = {"model": {1}, "tensor": {1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 14}, "node": {1, 2, 4, 7}, "opset": {1},
         "function": {1, 2, 3, 10}, "entry": {1, 2}, "value": {1}, "attribute": {1, 2, 3, 4, 7, 8, 9}}
#: fields the gate walks, at most: a genuine model keeps its numbers in packed or raw fields (a
#: few per tensor); millions of one-number fields would only cost the gate time and memory
MAX_ONNX_FIELDS = 1_000_000


class _OnnxWalk:
    def __init__(self, buf):
        self.buf = buf
        self.fields = 0
        self.nodes: set[tuple[str, str]] = set()  #: (domain, operator) of every node
        self.opsets: set[str] = set()  #: the domain of every opset import
        self.local: set[tuple[str, str]] = set()  #: (domain, name) of the model's local functions

    def message(self, kind: str, start: int, end: int, depth: int) -> dict[int, list]:
        if depth > MAX_ONNX_DEPTH:
            raise _Refused(f"its messages are nested more than {MAX_ONNX_DEPTH} deep")
        seen: dict[int, list] = {}
        kept = _KEPT.get(kind, ())
        for number, wire, a, b in _fields(self.buf, start, end):
            self.fields += 1
            if self.fields > MAX_ONNX_FIELDS:
                raise _Refused(f"it has more than {MAX_ONNX_FIELDS} protobuf fields (a genuine model keeps its "
                               "numbers in packed or raw fields)")
            sub = _SUBMESSAGES.get((kind, number))
            if sub is not None:
                if wire != 2:
                    raise _Damaged(f"field {number} of a {kind} is not a message")
                seen.setdefault(number, []).append(self.message(sub, a, b, depth + 1))
            elif number in kept:
                seen.setdefault(number, []).append((wire, a, b))
        self.judge(kind, seen)
        return seen

    def string(self, seen: dict, number: int) -> str:
        values = seen.get(number, [])
        if not values:
            return ""
        if not isinstance(values[-1], tuple) or values[-1][0] != 2:
            raise _Damaged(f"field {number} is not a string")
        _, a, b = values[-1]
        return _text(self.buf, a, b)

    def strings(self, seen: dict, number: int) -> list[str]:
        """Every value of the repeated string field ``number``."""
        out = []
        for value in seen.get(number, []):
            if not isinstance(value, tuple) or value[0] != 2:
                raise _Damaged(f"field {number} is not a string")
            out.append(_text(self.buf, value[1], value[2]))
        return out

    def judge(self, kind: str, seen: dict) -> None:
        if kind == "tensor":
            name = self.string(seen, 8)[:80]
            location = [self.string(entry, 2)[:200] for entry in seen.get(13, []) if self.string(entry, 1) == "location"]
            external = any(w == 0 and a == 1 for w, a, _ in seen.get(14, []))
            if seen.get(13) or external:
                where = f" at {location[0]!r}" if location else ""
                raise _Refused(f"tensor {name!r} keeps its data in an external file{where}: opening the model "
                               "would read that path; save the model as one self-contained file "
                               "(onnx.save_model(..., save_as_external_data=False))")
        elif kind == "node":
            self.nodes.add((self.string(seen, 7), self.string(seen, 4)))
        elif kind == "opset":
            self.opsets.add(self.string(seen, 1))
        elif kind == "function":
            self.local.add((self.string(seen, 10), self.string(seen, 1)))

    def foreign(self) -> str | None:
        """The first operator or opset outside ONNX's domains and the model's local functions."""
        local_domains = {domain for domain, _ in self.local}
        for domain, op in sorted(self.nodes):
            if domain not in ONNX_DOMAINS and (domain, op) not in self.local:
                return f"operator {op[:80]!r} belongs to the custom domain {domain[:80]!r}"
        for domain in sorted(self.opsets):
            if domain not in ONNX_DOMAINS and domain not in local_domains:
                return f"the model imports the operator set of the custom domain {domain[:80]!r}"
        return None


def _dead_weight(walk: _OnnxWalk, graph: dict, where: str) -> set[str]:
    """Refuse what a graph carries without using it: initializers no live node reads, nodes whose
    outputs reach no graph output, initializers returned unchanged as outputs. Returns the names the
    graph reads from its enclosing scopes. ONNX nodes are in topological order, so one pass from the
    end finds every live node."""
    outputs = [v for value in graph.get(12, []) for v in walk.strings(value, 1)]
    inputs = {v for value in graph.get(11, []) for v in walk.strings(value, 1)}
    initializers = [walk.string(t, 8) for t in graph.get(5, [])]
    initializers += [walk.string(t, 8) for sparse in graph.get(15, []) for t in sparse.get(1, [])]
    needed = set(outputs)
    produced: set[str] = set()
    for node in reversed(graph.get(1, [])):
        outs = [o for o in walk.strings(node, 2) if o]
        produced.update(outs)
        if not any(o in needed for o in outs):
            op = walk.string(node, 4)[:60]
            raise _Refused(f"{where}: node {op!r} (output {(outs or [''])[0][:80]!r}) contributes to no output of "
                           "the model: a node nobody uses can only carry data; export the model without it (onnx's "
                           "optimizer or onnxsim removes dead nodes)")
        needed.update(i for i in walk.strings(node, 1) if i)
        for attribute in node.get(5, []):
            for sub in attribute.get(6, []) + attribute.get(11, []):
                needed.update(_dead_weight(walk, sub, f"{where} > subgraph of {walk.string(node, 4)[:40]!r}"))
    for name in initializers:
        if name in outputs and name not in produced:
            raise _Refused(f"{where}: the initializer {name[:80]!r} is an output of the model as stored: the "
                           "model returns a stored tensor unchanged, which can only carry data")
        if name not in needed:
            raise _Refused(f"{where}: the initializer {name[:80]!r} is read by no node: a tensor the model "
                           "does not use can only carry data; export the model without it (onnx's optimizer or "
                           "onnxsim removes unused initializers)")
    return needed - produced - set(initializers) - inputs


def _function_dead_weight(walk: _OnnxWalk, function: dict) -> None:
    name = walk.string(function, 1)[:80]
    graph = {1: function.get(7, []), 12: [{1: [v]} for v in function.get(3, [])]}
    needed = set(walk.strings(function, 3))
    for node in reversed(graph[1]):
        outs = [o for o in walk.strings(node, 2) if o]
        if not any(o in needed for o in outs):
            raise _Refused(f"local function {name!r}: node {walk.string(node, 4)[:60]!r} contributes to no "
                           "output of the function: a node nobody uses can only carry data")
        needed.update(i for i in walk.strings(node, 1) if i)
        for attribute in node.get(5, []):
            for sub in attribute.get(6, []) + attribute.get(11, []):
                _dead_weight(walk, sub, f"local function {name!r}")


def _unused(walk: _OnnxWalk, model: dict) -> None:
    """Refuse tensors, nodes and functions the model carries without using them (see :func:`_dead_weight`)."""
    if model.get(20):
        raise _Refused("it holds training information (training_info): an exported model is for inference; "
                       "its initialisation and training graphs can carry data the model does not use")
    for graph in model.get(7, []):
        _dead_weight(walk, graph, "the main graph")
    for function in model.get(25, []):
        key = (walk.string(function, 10), walk.string(function, 1))
        if key not in walk.nodes:
            raise _Refused(f"the local function {key[1][:80]!r} is called by no node: it can only carry data")
        _function_dead_weight(walk, function)


def onnx_problem(path: Path) -> str | None:
    """Why the file at ``path`` is not an ONNX model the gate lets a checker open (see the module)."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return "the file is empty"
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            walk = _OnnxWalk(buf)
            try:
                model = walk.message("model", 0, len(buf), 0)
                if not any(isinstance(v, tuple) and v[0] == 0 for v in model.get(1, [])) or 7 not in model:
                    return "it is not an ONNX model (no ir_version or no graph)"
                foreign = walk.foreign()
                if foreign:
                    return (f"{foreign}: a custom operator needs native code the reader would have to load; "
                            "export with the standard ONNX operators only")
                _unused(walk, model)
            except _Refused as exc:
                return str(exc)
            except _Damaged as exc:
                return f"it is not a well-formed ONNX (protobuf) file: {exc}"
            finally:
                walk.buf = None
    return None


@contextmanager
def onnx_messages(path: Path) -> Iterator[tuple[mmap.mmap, dict]]:
    """(the file's bytes, its ``ModelProto`` as nested ``{field number: [values]}``) of a well-formed
    ONNX model (after :func:`onnx_problem`); a kept scalar field is ``(wire type, value or start, end)``."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        walk = _OnnxWalk(buf)
        try:
            yield buf, walk.message("model", 0, len(buf), 0)
        finally:
            walk.buf = None


def onnx_operators(path: Path) -> set[tuple[str, str]]:
    """(domain, operator) of every node of a well-formed ONNX model (after :func:`onnx_problem`)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        walk = _OnnxWalk(buf)
        try:
            walk.message("model", 0, len(buf), 0)
        except ValueError:
            return set()
        finally:
            walk.buf = None
    return walk.nodes
