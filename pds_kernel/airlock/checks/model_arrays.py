"""The numbers a model file holds, as NumPy arrays, read by the gate itself (rule ``model-tensors``).

No model library runs on the submitted bytes: safetensors tensors are read from the offsets its
header gives (after :func:`.model_formats.safetensors_problem` validated them), ONNX tensors and
numeric attributes from the protobuf fields :func:`.model_formats.onnx_messages` walks, skops
arrays with ``numpy.load(allow_pickle=False)`` (structured arrays field by field) plus the numbers
of its schema, XGBoost JSON and UBJ (:mod:`.ubjson`) as every list of numbers in the document, and
LightGBM text as every ``key=numbers`` line. Arrays of the same key in XGBoost and LightGBM models
(``split_conditions`` of every tree...) are concatenated in file order. An ONNX model also gives
its nodes (operator, inputs, outputs, attributes), for the graph rules.

A format the gate cannot read this way (RDS, 8-bit floats, numbers past :data:`MAX_ELEMENTS`) is
named in :attr:`Arrays.unread`: the rule says so, it never passes silently.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: numbers the gate reads from one model, at most
MAX_ELEMENTS = 64_000_000
#: numbers of varint-encoded ONNX fields decoded one by one, at most (exporters use raw bytes)
MAX_VARINTS = 2_000_000

SAFETENSORS_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                     "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1"}
#: ONNX TensorProto.DataType -> NumPy dtype of its raw bytes (16 is bfloat16, read as uint16)
ONNX_NUMPY = {1: "<f4", 2: "u1", 3: "i1", 4: "<u2", 5: "<i2", 6: "<i4", 7: "<i8", 9: "u1", 10: "<f2", 11: "<f8",
              12: "<u4", 13: "<u8", 16: "<u2"}
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
#: numbers written as text inside a string (metadata, doc strings, attributes, lines of text)
_TEXT_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
#: printable text of a binary file (ONNX doc strings and metadata, UBJ strings)
_PRINTABLE = re.compile(rb"[\x20-\x7e\t\n\r]{8,}")


class Unreadable(Exception):
    """The gate cannot read the numbers of this model (the reason goes to the checker)."""


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, object]  #: name -> number, list of numbers or array


@dataclass
class Arrays:
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    graphs: list[tuple[dict[str, np.ndarray], list[Node]]] = field(default_factory=list)  #: ONNX (constants, nodes)
    unread: list[str] = field(default_factory=list)
    elements: int = 0

    def add(self, name: str, array: np.ndarray) -> None:
        if array.size == 0:
            return
        if self.elements + array.size > MAX_ELEMENTS:
            self.unread.append(f"{name[:80]} and what follows (the gate reads {MAX_ELEMENTS} numbers of a model)")
            return
        if array.dtype.kind == "b":
            array = array.astype(np.uint8)
        self.elements += array.size
        key, n = name, 1
        while key in self.arrays:
            n += 1
            key = f"{name} #{n}"
        self.arrays[key] = array


def bfloat16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def text_numbers(text: str) -> np.ndarray:
    """The numbers written in ``text``, in order (a column pasted as text is still the column)."""
    found = _TEXT_NUMBER.findall(text[:64_000_000])
    return np.asarray([float(v) for v in found], dtype=np.float64)


def _add_text(strings, what: str, out: Arrays) -> None:
    """Numbers written as text: each string of two or more numbers is an array (its order kept),
    and the strings of one number, in file order, are one more."""
    lone: list[float] = []
    for text in strings:
        numbers = text_numbers(text)
        if len(numbers) == 1:
            lone.append(float(numbers[0]))
        elif len(numbers) > 1:
            out.add(f"{what} (numbers written as text)", numbers)
    if lone:
        out.add(f"{what} (numbers written one per string)", np.asarray(lone))


def _printable(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        data = fh.read(256 * 1024 * 1024)
    return [m.group().decode("ascii") for m in _PRINTABLE.finditer(data)]


# ---- safetensors ------------------------------------------------------------------------------

def _safetensors(path: Path, out: Arrays) -> None:
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(length))
        meta = header.get("__metadata__")
        if isinstance(meta, dict):
            _add_text([str(v) for item in meta.items() for v in item], "the safetensors metadata", out)
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = SAFETENSORS_NUMPY.get(entry["dtype"])
            if entry["dtype"] == "BF16":
                dtype = "<u2"
            if dtype is None:
                out.unread.append(f"tensor {name[:80]!r} ({entry['dtype']}: 8-bit floats are not compared)")
                continue
            begin, end = entry["data_offsets"]
            count = (end - begin) // np.dtype(dtype).itemsize
            if out.elements + count > MAX_ELEMENTS:
                out.unread.append(f"tensor {name[:80]!r} and what follows (the gate reads {MAX_ELEMENTS} numbers)")
                continue
            fh.seek(8 + length + begin)
            array = np.fromfile(fh, dtype=dtype, count=count).reshape(entry["shape"])
            out.add(f"tensor {name[:80]!r}", bfloat16(array) if entry["dtype"] == "BF16" else array)


# ---- ONNX -------------------------------------------------------------------------------------

def _varints(buf, start: int, end: int, out: list[int]) -> None:
    pos = start
    while pos < end:
        if len(out) >= MAX_VARINTS:
            raise Unreadable(f"more than {MAX_VARINTS} numbers in varint fields (save the model with raw tensor data)")
        value = shift = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        out.append(value - (1 << 64) if value >= 1 << 63 else value)


def _ints(buf, values: list) -> list[int]:
    out: list[int] = []
    for wire, a, b in values:
        if wire == 0:
            out.append(a - (1 << 64) if a >= 1 << 63 else a)
        elif wire == 2:
            _varints(buf, a, b, out)
    return out


def _fixed(buf, values: list, dtype: str) -> np.ndarray:
    parts = [np.frombuffer(bytes(buf[a:b]), dtype=dtype) for wire, a, b in values if wire in (1, 2, 5)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _tensor(buf, tensor: dict) -> np.ndarray | None:
    kind = _ints(buf, tensor.get(2, []))
    dtype = ONNX_NUMPY.get(kind[-1] if kind else 1)
    if dtype is None:
        return None  # strings, complex numbers, 4-bit and 8-bit floats
    if tensor.get(9):
        data = np.frombuffer(bytes(buf[tensor[9][-1][1]:tensor[9][-1][2]]), dtype=dtype)
    elif tensor.get(4):
        data = _fixed(buf, tensor[4], "<f4")
    elif tensor.get(10):
        data = _fixed(buf, tensor[10], "<f8")
    elif tensor.get(5) or tensor.get(7) or tensor.get(11):
        data = np.array(_ints(buf, tensor.get(5, []) + tensor.get(7, []) + tensor.get(11, [])), dtype=np.float64)
        if kind and kind[-1] in (10, 16):
            data = data.astype(np.uint16).view("<f2" if kind[-1] == 10 else "<u2")
    else:
        return np.empty(0)
    if kind and kind[-1] == 16:
        data = bfloat16(data.astype(np.uint16))
    dims = _ints(buf, tensor.get(1, []))
    return data.reshape(dims) if dims and int(np.prod(dims)) == data.size else data


def _strings(buf, values: list) -> list[str]:
    return [bytes(buf[a:b]).decode("utf-8", "replace") for wire, a, b in values if wire == 2]


def _attribute(buf, attribute: dict, where: str, out: Arrays):
    name = _text(buf, attribute, 1)
    # strings (``keys_strings`` of a LabelEncoder...) and string tensors: numbers written as text
    _add_text(_strings(buf, attribute.get(9, []) + attribute.get(4, []))
              + [t for tensor in attribute.get(10, []) + attribute.get(5, []) for t in _strings(buf, tensor.get(6, []))],
              f"{where} attribute {name}", out)
    for tensor in attribute.get(10, []) + [t for sparse in attribute.get(22, []) + attribute.get(23, [])
                                           for t in sparse.get(1, [])]:
        value = _tensor(buf, tensor)
        if value is not None:
            out.add(f"{where} attribute {name}", value)
    if attribute.get(5):
        value = _tensor(buf, attribute[5][-1])
        if value is not None:
            out.add(f"{where} attribute {name}", value)
        return name, value
    if attribute.get(7):
        value = _fixed(buf, attribute[7], "<f4")
        out.add(f"{where} attribute {name}", value)
        return name, value
    if attribute.get(8):
        value = np.array(_ints(buf, attribute[8]), dtype=np.int64)
        out.add(f"{where} attribute {name}", value)
        return name, value
    if attribute.get(2):
        return name, float(_fixed(buf, attribute[2], "<f4")[-1])
    if attribute.get(3):
        return name, _ints(buf, attribute[3])[-1]
    return name, None


def _text(buf, message: dict, number: int) -> str:
    values = message.get(number) or []
    return bytes(buf[values[-1][1]:values[-1][2]]).decode("utf-8", "replace") if values else ""


def _graph(buf, graph: dict, where: str, out: Arrays) -> None:
    constants: dict[str, np.ndarray] = {}
    for tensor in graph.get(5, []):
        name = _text(buf, tensor, 8)
        _add_text(_strings(buf, tensor.get(6, [])), f"{where} string initializer {name[:80]!r}", out)
        value = _tensor(buf, tensor)
        if value is not None:
            constants[name] = value
            out.add(f"{where} initializer {name[:80]!r}", value)
    for sparse in graph.get(15, []):
        for tensor in sparse.get(1, []):
            value = _tensor(buf, tensor)
            if value is not None:
                out.add(f"{where} sparse initializer {_text(buf, tensor, 8)[:80]!r}", value)
    nodes = []
    for node in graph.get(1, []):
        op = _text(buf, node, 4)
        outputs = [bytes(buf[a:b]).decode("utf-8", "replace") for _, a, b in node.get(2, [])]
        attributes = {}
        for attribute in node.get(5, []):
            key, value = _attribute(buf, attribute, f"{where} {op} node", out)
            attributes[key] = value
            for sub in attribute.get(6, []) + attribute.get(11, []):
                _graph(buf, sub, f"{where} > {op} subgraph", out)
        if op == "Constant" and outputs:
            for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
                if attributes.get(key) is not None:
                    constants[outputs[0]] = np.asarray(attributes[key])
        nodes.append(Node(op, [bytes(buf[a:b]).decode("utf-8", "replace") for _, a, b in node.get(1, [])],
                          outputs, attributes))
    out.graphs.append((constants, nodes))


def _onnx(path: Path, out: Arrays) -> None:
    from .model_formats import onnx_messages

    try:
        with onnx_messages(path) as (buf, model):
            for graph in model.get(7, []):
                _graph(buf, graph, "the graph's", out)
            for function in model.get(25, []):
                _graph(buf, {1: function.get(7, [])}, f"local function {_text(buf, function, 1)[:60]!r}'s", out)
    except ValueError as exc:
        raise Unreadable(f"the ONNX model cannot be walked ({exc})") from None
    _add_text(_printable(path), "the ONNX model's strings", out)


# ---- skops, XGBoost, LightGBM ----------------------------------------------------------------

def _json_numbers(value, path: str, groups: dict[str, list]) -> None:
    """Every list of numbers in a JSON value, grouped by its key (list positions dropped)."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            stack.extend((sub, f"{where}.{key}"[-120:]) for key, sub in reversed(list(item.items())))
        elif isinstance(item, list):
            numbers = [v for v in item if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numbers:
                groups.setdefault(where, []).append(np.asarray(numbers, dtype=np.float64))
            stack.extend((sub, where) for sub in reversed(item) if isinstance(sub, (dict, list)))
        elif isinstance(item, np.ndarray):  # a typed UBJSON array
            groups.setdefault(where, []).append(item.astype(np.float64))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            groups.setdefault(where, []).append(np.asarray([item], dtype=np.float64))
        elif isinstance(item, str) and _NUMBER.match(item.strip()):
            groups.setdefault(where, []).append(np.asarray([float(item)], dtype=np.float64))
        elif isinstance(item, str) and len(numbers := text_numbers(item)) > 1:
            groups.setdefault(f"{where} (numbers written as text)", []).append(numbers)


def _add_groups(groups: dict[str, list], what: str, out: Arrays, dtype=np.float64) -> None:
    for key, parts in groups.items():
        out.add(f"{what} {key.lstrip('.') or 'numbers'}", np.concatenate(parts).astype(dtype))


def _skops(path: Path, out: Arrays) -> None:
    with zipfile.ZipFile(path) as archive:
        groups: dict[str, list] = {}
        _json_numbers(json.loads(archive.read("schema.json")), "", groups)
        _add_groups({k: v for k, v in groups.items() if not k.endswith(("__id__", "protocol"))}, "the skops schema's",
                    out)
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                continue
            if member.file_size > MAX_ELEMENTS * 8:
                out.unread.append(f"skops array {member.filename[:40]} ({member.file_size} bytes)")
                continue
            array = np.load(io.BytesIO(archive.read(member)), allow_pickle=False)
            names = array.dtype.names or (None,)
            for name in names:
                part = array[name] if name else array
                if part.dtype.kind in "biuf":
                    out.add(f"skops array {member.filename[:40]}" + (f" field {name}" if name else ""), part)
                elif part.dtype.kind in "US":
                    _add_text([v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in part.ravel()],
                              f"skops text array {member.filename[:40]}", out)


def _xgboost(path: Path, fmt: str, out: Arrays) -> None:
    data = path.read_bytes()
    if fmt == "xgboost-ubj":
        from .ubjson import decode

        document = decode(data)
    else:
        document = json.loads(data)
    if fmt == "xgboost-ubj":
        _add_text(_printable(path), "the UBJ model's strings", out)
    groups: dict[str, list] = {}
    _json_numbers(document, "", groups)
    _add_groups(groups, "the XGBoost model's", out, np.float32)  # XGBoost keeps its numbers as float32


def _lightgbm(path: Path, out: Arrays) -> None:
    groups: dict[str, list] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, sep, value = line.strip().partition("=")
            tokens = value.replace(",", " ").split() if sep else []
            numbers = [t for t in tokens if _NUMBER.match(t)]
            if numbers and len(numbers) == len(tokens):
                groups.setdefault(key, []).append(np.asarray([float(t) for t in numbers]))
            elif len(text := text_numbers(line)) > 1:  # a line LightGBM's parser skips: still numbers
                out.add("the LightGBM model's lines of text (numbers written as text)", text)
    _add_groups(groups, "the LightGBM model's", out)


def read_arrays(path: Path, fmt: str) -> Arrays:
    """The numbers of the model at ``path`` in format ``fmt`` (raises :class:`Unreadable`)."""
    out = Arrays()
    try:
        if fmt == "safetensors":
            _safetensors(path, out)
        elif fmt == "onnx":
            _onnx(path, out)
        elif fmt == "skops":
            _skops(path, out)
        elif fmt in ("xgboost-json", "xgboost-ubj"):
            _xgboost(path, fmt, out)
        elif fmt == "lightgbm":
            _lightgbm(path, out)
        else:
            raise Unreadable(f"the gate does not read the numbers of {fmt} models")
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, struct.error, RecursionError, IndexError) as exc:
        raise Unreadable(f"the gate cannot read this {fmt} model's numbers ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    return out


__all__ = ["Arrays", "Node", "Unreadable", "read_arrays", "text_numbers", "MAX_ELEMENTS"]
