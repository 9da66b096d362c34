"""A model's numbers must not be the extract's rows: rule ``model-tensors``.

A model can carry the project's extract *as numbers* in a tensor its graph really uses, where no
string scan (:mod:`.model_data`) and no dead-weight rule (:mod:`.model_formats`) sees it, and where
the platform's attack (which judges what a model outputs) cannot. Every number the gate can read
from the model (:mod:`.model_arrays`) is compared with the numbers of the project's extract
(:mod:`.model_reference`), and an ONNX graph is read for contributions it nullifies:

- **values of a column** (fail): more than :data:`MIN_VALUES` distinct values of one numeric or
  date column (as days, SAS days or ``YYYYMMDD``), beyond what chance gives. Chance is measured,
  not assumed: the same tensors are compared with the column's values moved by one unit in the
  last place (floats) or by one (integers), and only the excess counts. Values that any model
  holds (integers and quarters under 1024) are not counted, and a tree's thresholds, which are data
  values, stay under the limit (XGBoost and LightGBM keep at most 256 cut points per feature);
- **rows in order** (fail): a run of the model's numbers, along any axis of a tensor, equal to
  consecutive values of a column in the extract's row order (repeats collapsed), over at least
  :data:`MIN_WINDOWS` windows beyond chance; the window is long enough that chance matches one
  with probability under :data:`CHANCE` given the entropy of the column's steps from row to row,
  and chance is measured too: the model's runs are matched with the column in shuffled order.
  Windows of fewer than :data:`MIN_DISTINCT` values and progressions (``0, 1, 2...``) do not count:
  structured arrays of any model (node counts, ids, offsets) match a column's alternations and
  counters;
- **pseudonyms as numbers** (fail): at least :data:`MIN_IDS` distinct integers spelt by the first
  6 to 13 hexadecimal digits of the project's pseudonyms, or the first 8 bytes of their binary form
  anywhere in the file's bytes;
- **ONNX nullified contributions** (fail, :mod:`.model_graph`): a multiplication by a stored
  zero, a Gemm with ``alpha`` or ``beta`` 0, an If or Where on a stored condition, a Gather or
  Slice reading a fixed small part of a stored tensor;
- **size** (review): a safetensors or ONNX tensor with one entry per row of an extract table, or
  as many numbers as a table's rows (1,000 or more) times a few columns;
- **unread** (review): a format or part of a model whose numbers the gate cannot read, and a
  project without a published extract: never a silent pass.

What statistics cannot find is said in docs/output-checking.md: values transformed or encrypted
before they are stored, rounded, or spread across tensors in another row order and fewer than
:data:`MIN_VALUES` per column. A column cut into pieces across several files or exports is judged
by :mod:`.model_split`, from what :func:`column_evidence` finds of each.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .model_arrays import Arrays, Unreadable, read_arrays
from .model_graph import graph_findings
from .model_reference import Column, Reference
from .result import Finding, Status

RULE = "model-tensors"
#: distinct values of one column, beyond chance, that fail a model
MIN_VALUES = 300
#: distinct values of one column, beyond chance, that a checker is told about
REVIEW_VALUES = 50
#: distinct pseudonyms (as numbers or bytes) that fail a model
MIN_IDS = 5
#: windows of consecutive extract values, in row order, that fail a model
MIN_WINDOWS = 20
#: the chance that a window of the model's numbers equals one of a column's windows
CHANCE = 1e-6
#: the largest window length
MAX_WINDOW = 64
#: distinct values a window needs to count
MIN_DISTINCT = 4
#: bytes of the file searched for binary pseudonyms, at most
MAX_BYTES_SEARCHED = 256 * 1024 * 1024
_PRIME = np.uint64(1_000_003)


def _finding(status: Status, message: str) -> Finding:
    return Finding(RULE, status, message)


def _kind(array: np.ndarray) -> str:
    if array.dtype.kind == "f":
        return {8: "f64", 4: "f32"}.get(array.dtype.itemsize, "low")
    return "int"


def _cast(values: np.ndarray, kind: str) -> np.ndarray:
    """Reference values (float64) as the array of ``kind`` would store them (sorted, distinct)."""
    if kind == "f32":
        return np.unique(values.astype(np.float32))
    if kind in ("int", "low"):
        return values[values == np.round(values)]  # only what these types hold exactly
    return values


def _shifted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference values moved by one step either way, the chance level: whole numbers by one
    (in a dense range such as days or counters, any whole number matches: chance explains them),
    others by one unit in the last place of their type."""
    whole = values == np.round(values)
    up = np.where(whole, values + 1, np.nextafter(values, values.dtype.type(np.inf)))
    down = np.where(whole, values - 1, np.nextafter(values, values.dtype.type(-np.inf)))
    return up.astype(values.dtype), down.astype(values.dtype)


def _in_sorted(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``np.isin`` for a ``ref`` already sorted and distinct (without sorting it again each call)."""
    if not len(ref):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(ref, values), len(ref) - 1)
    return ref[pos] == values


def _trivial(values: np.ndarray) -> np.ndarray:
    return (np.abs(values) < 1024) & (values * 4 == np.round(values * 4))


def _union(reference: Reference, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(every reference value as ``kind`` stores it; the same with their moved copies), sorted."""
    key = ("union", kind)
    if key not in reference.cache:
        every = np.unique(np.concatenate([c.distinct for c in reference.columns] + [reference.id_numbers]))
        exact = _cast(every, kind)
        reference.cache[key] = (exact, np.unique(np.concatenate([exact, *_shifted(exact)])))
    return reference.cache[key]


class _Model:
    """The model's arrays, each with its distinct values near the reference's (the only ones any
    rule counts), and whether enough of its entries are reference values for a run of rows."""

    def __init__(self, arrays: Arrays, reference: Reference):
        self.items = []
        self.every: list[np.ndarray] = []  #: each array's distinct values but NaN (trivial, infinite too)
        for name, array in arrays.arrays.items():
            kind = _kind(array)
            flat = array.ravel()
            if kind == "low":
                flat = flat.astype(np.float64)
            every = np.unique(flat[~np.isnan(flat)] if flat.dtype.kind == "f" else flat)
            finite = every[np.isfinite(every)] if every.dtype.kind == "f" else every
            distinct = finite[~_trivial(finite.astype(np.float64))]
            exact, near = _union(reference, kind)
            distinct = distinct[_in_sorted(distinct.astype(near.dtype), near)]
            members = int(_in_sorted(flat.astype(exact.dtype), exact).sum()) if flat.size > MIN_DISTINCT else 0
            self.items.append((name, array, kind, distinct, members))
            self.every.append(every)

    def matches(self, ref: np.ndarray) -> tuple[set[float], float, str]:
        """(distinct values of the model in ``ref``, as float64; the chance level; an array holding most)."""
        found: set[float] = set()
        chance, best, where = 0.0, 0, ""
        by_kind: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # ref as each kind stores it, moved
        for name, _, kind, distinct, _ in self.items:
            if not len(distinct):
                continue
            if kind not in by_kind:
                target = _cast(ref, kind)
                by_kind[kind] = (target, *(np.unique(moved) for moved in _shifted(target)))
            target, up, down = by_kind[kind]
            values = distinct.astype(target.dtype) if kind != "f32" else distinct.astype(np.float32)
            hit = values[_in_sorted(values, target)]
            chance += (_in_sorted(values, up).sum() + _in_sorted(values, down).sum()) / 2
            found.update(hit.astype(np.float64).tolist())
            if len(hit) > best:
                best, where = len(hit), name
        return found, chance, where


# ---- values, pseudonyms ------------------------------------------------------------------------

def _value_findings(model: _Model, reference: Reference) -> list[Finding]:
    out = []
    for column in reference.columns:
        if len(column.distinct) < REVIEW_VALUES:
            continue
        informative = column.distinct[~_trivial(column.distinct)]
        found, chance, where = model.matches(informative)
        excess = len(found) - chance
        if excess >= MIN_VALUES:
            out.append(_finding(Status.FAIL, f"the model holds {len(found)} distinct values of the extract's column "
                                             f"{column.label} (chance explains {chance:.0f}; most in {where}): its "
                                             "numbers carry the column's values, not what was learnt from them"))
        elif excess >= REVIEW_VALUES:
            out.append(_finding(Status.REVIEW, f"the model holds {len(found)} distinct values of the extract's column "
                                               f"{column.label} (chance explains {chance:.0f}; most in {where}): a "
                                               "checker must confirm they are thresholds a tree learnt"))
    ids = reference.id_numbers[reference.id_numbers >= 1 << 20]
    if len(ids):
        found, chance, where = model.matches(ids)
        if len(found) - chance >= MIN_IDS:
            out.append(_finding(Status.FAIL, f"the model holds {len(found)} numbers spelt by the first hexadecimal "
                                             f"digits of the project's pseudonyms (in {where}): a model carries no "
                                             "person's identifier"))
    return out


def _ids_in(raw: np.ndarray, reference: Reference, found: set[int]) -> None:
    """Add to ``found`` the binary pseudonyms' first 8 bytes at any offset of the uint8 ``raw``."""
    for offset in range(8):
        usable = (len(raw) - offset) // 8 * 8
        view = raw[offset:offset + usable].view("<u8")
        found.update(view[_in_sorted(view, reference.id_bytes)].tolist())


def _id_bytes(path: Path, reference: Reference) -> list[Finding]:
    """The first 8 bytes of binary pseudonyms anywhere in the file (8 aligned views cover every offset)."""
    if not len(reference.id_bytes):
        return []
    found: set[int] = set()
    chunk_size = 8 << 20
    with open(path, "rb") as fh:
        start, tail = 0, b""
        while start < MAX_BYTES_SEARCHED:
            data = tail + fh.read(chunk_size)
            if len(data) < 8:
                break
            _ids_in(np.frombuffer(data, dtype=np.uint8), reference, found)
            tail = data[-7:]
            start += chunk_size
            if len(data) < chunk_size:
                break
    if len(found) >= MIN_IDS:
        return [_finding(Status.FAIL, f"the model's bytes hold {len(found)} of the project's pseudonyms in binary "
                                      "form: a model carries no person's identifier")]
    return []


#: float dtype -> the low bytes of each value a researcher can set without changing the model much
_LOW_BYTES = {4: 2, 8: 4, 2: 1}


def _low_bits(arrays: Arrays, reference: Reference) -> list[Finding]:
    """Binary pseudonyms in the low mantissa bytes of float tensors, read end to end (steganography:
    two bytes per float32 weight move it by under 1 %, and no 8 bytes of the file are contiguous)."""
    if not len(reference.id_bytes):
        return []
    found: set[int] = set()
    for array in arrays.arrays.values():
        if array.dtype.kind not in "fu" or array.dtype.itemsize not in _LOW_BYTES or array.size < 16:
            continue
        if array.dtype.kind == "u" and array.dtype.itemsize != 2:  # bfloat16 bits are read as uint16
            continue
        raw = np.ascontiguousarray(array.ravel()).astype(array.dtype.newbyteorder("<"), copy=False)
        first, width = 0, _LOW_BYTES[array.dtype.itemsize]
        if array.dtype.itemsize == 4 and not (raw.view(np.uint32) & np.uint32(0xFFFF)).any():
            first, width = 2, 1  # bfloat16 read as float32: its low byte is the third
        low = raw.view(np.uint8).reshape(-1, array.dtype.itemsize)[:, first:first + width]
        _ids_in(low.ravel().copy(), reference, found)
    if len(found) >= MIN_IDS:
        return [_finding(Status.FAIL, f"the low bits of the model's weights hold {len(found)} of the project's "
                                      "pseudonyms in binary form, two bytes per weight: a model carries no person's "
                                      "identifier")]
    return []


# ---- rows in order -----------------------------------------------------------------------------

def _collapse(codes: np.ndarray) -> np.ndarray:
    keep = np.ones(len(codes), dtype=bool)
    keep[1:] = codes[1:] != codes[:-1]
    return codes[keep]


def _varied(codes: np.ndarray, k: int, n: int) -> np.ndarray:
    """Which of the ``n`` windows of ``k`` codes hold at least :data:`MIN_DISTINCT` distinct values
    (counted in chunks: a window view is ``k`` times the codes)."""
    out = np.zeros(n, dtype=bool)
    views = np.lib.stride_tricks.sliding_window_view(codes, k)
    for start in range(0, n, 65536):
        block = np.sort(views[start:start + 65536], axis=1)
        out[start:start + len(block)] = (block[:, 1:] != block[:, :-1]).sum(axis=1) + 1 >= MIN_DISTINCT
    return out


def _hashes(codes: np.ndarray, k: int) -> np.ndarray:
    """A polynomial hash of every window of ``k`` codes, leaving out windows that hold -1 (a value
    outside the column), progressions (every step the same: ``0, 1, 2...`` of ids and offsets,
    which any counter of the extract holds too) and windows of fewer than :data:`MIN_DISTINCT`
    values (``5, 7, 5, 7, 5, 3...``: the node counts of small trees, and a column's alternations)."""
    n = len(codes) - k + 1
    if n <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    bad = np.zeros(n, dtype=bool)
    steps = np.diff(codes)
    constant = np.ones(n, dtype=bool)
    with np.errstate(over="ignore"):
        for j in range(k):
            part = codes[j:j + n]
            bad |= part < 0
            if j < k - 1:
                constant &= steps[j:j + n] == steps[:n]
            h = h * _PRIME + part.astype(np.uint64)
    keep = ~bad & ~constant
    if keep.any():
        keep &= _varied(codes, k, n)
    return h[keep]


def _window(column: Column) -> tuple[int, np.ndarray, list[np.ndarray]] | None:
    """(window length, sorted window hashes of the column in row order, the same of two copies of
    the column in shuffled order: the chance level), or None when the column's steps from row to
    row are too few or too even for a window to identify rows (a counter, whose windows any
    increasing sequence of the model matches)."""
    seq = _collapse(np.searchsorted(column.distinct, column.values))
    _, counts = np.unique(np.diff(seq), return_counts=True)  # steps: a counter has one step, +1
    p = counts / counts.sum()
    effective = math.exp(-(p * np.log(p)).sum())
    if effective < 2.5 or len(seq) < 8:
        return None
    k = max(4, math.ceil(math.log(len(seq) / CHANCE) / math.log(effective - 1)))
    if k > MAX_WINDOW or len(seq) < k + MIN_WINDOWS:
        return None
    rng = np.random.default_rng(0)
    shuffled = [np.unique(_hashes(_collapse(rng.permutation(seq)), k)) for _ in range(2)]
    return k, np.unique(_hashes(seq, k)), shuffled


def _sequences(array: np.ndarray):
    """The array read along each of its axes (C order puts the last axis first)."""
    if array.ndim <= 1:
        yield "", array.ravel()
        return
    for axis in range(array.ndim - 1, -1, -1):
        yield f" along axis {axis}", np.moveaxis(array, axis, -1).ravel()


def _order_runs(model: _Model, reference: Reference, least: int = MIN_WINDOWS):
    """(column, array name and axis, windows matched, chance, window length) of each array read
    along each axis, for each column whose windows identify rows; an array is read when it holds at
    least ``least`` windows of the column's values."""
    cache = reference.cache
    for column in reference.columns:
        key = ("windows", column.label)
        if key not in cache:
            cache[key] = _window(column)
        if cache[key] is None:
            continue
        k, windows, shuffled = cache[key]
        for (name, array, kind, _, members), every in zip(model.items, model.every):
            if members < k + least:
                continue
            target = column.distinct.astype(np.float32) if kind == "f32" else column.distinct
            if int(_in_sorted(every.astype(target.dtype), target).sum()) < MIN_DISTINCT:
                continue  # a window keeps MIN_DISTINCT of the column's values (_hashes): none can here
            for axis, seq in _sequences(array):
                values = seq.astype(target.dtype)
                pos = np.clip(np.searchsorted(target, values), 0, len(target) - 1)
                codes = np.where(target[pos] == values, pos, -1).astype(np.int64)
                if (codes >= 0).sum() < k + least:
                    continue
                hashes = _hashes(_collapse(codes), k)
                matched = int(_in_sorted(hashes, windows).sum())
                chance = max(int(_in_sorted(hashes, control).sum()) for control in shuffled) if matched else 0
                yield column, f"{name}{axis}", matched, chance, k


def _order_findings(model: _Model, reference: Reference) -> list[Finding]:
    out: list[Finding] = []
    failed: set[tuple[str, str]] = set()
    for column, where, matched, chance, k in _order_runs(model, reference):
        array = where.split(" along axis")[0]
        if matched - chance >= MIN_WINDOWS and (column.label, array) not in failed:
            failed.add((column.label, array))
            out.append(_finding(Status.FAIL, f"{where} holds consecutive values of the extract's "
                                             f"column {column.label} in the extract's row order ({matched} "
                                             f"runs of {k} rows): the model carries the column's rows"))
    return out


def column_evidence(arrays: Arrays, reference: Reference) -> dict[str, tuple[set[float], float, int]]:
    """What one model holds of each extract column, for judging several models together
    (:mod:`.model_split`): label -> (its distinct values in the model, the chance level of that
    count, windows of the column's rows in row order beyond chance, summed over the arrays).
    Windows are counted from a single one, not :data:`MIN_WINDOWS`: a piece may be short."""
    model = _Model(arrays, reference)
    out: dict[str, tuple[set[float], float, int]] = {}
    for column in reference.columns:
        if len(column.distinct) >= REVIEW_VALUES:
            found, chance, _ = model.matches(column.distinct[~_trivial(column.distinct)])
            if found:
                out[column.label] = (found, chance, 0)
    best: dict[tuple[str, str], int] = {}
    for column, where, matched, chance, _ in _order_runs(model, reference, least=1):
        key = (column.label, where.split(" along axis")[0])
        best[key] = max(best.get(key, 0), matched - chance)
    for (label, _), windows in best.items():
        if windows > 0:
            found, chance, before = out.get(label, (set(), 0.0, 0))
            out[label] = (found, chance, before + windows)
    return out


# ---- size ---------------------------------------------------------------------------

def _size_findings(arrays: Arrays, reference: Reference) -> list[Finding]:
    out = []
    tables = {t: n for t, n in reference.rows.items() if n >= 100}
    for name, array in arrays.arrays.items():
        for table, rows in tables.items():
            if rows in array.shape:
                out.append(_finding(Status.REVIEW, f"{name} has one entry per row of the extract's table {table} "
                                                   f"({rows} rows, shape {array.shape}): a checker must confirm it "
                                                   "is not the table"))
                break
            if rows >= 1000 and array.size % rows == 0 and array.size // rows <= 64:
                out.append(_finding(Status.REVIEW, f"{name} holds {array.size} numbers, {array.size // rows} per row "
                                                   f"of the extract's table {table} ({rows} rows): a checker must "
                                                   "confirm it is not the table"))
                break
    return out[:10]


def check_tensors(path: Path, fmt: str, reference: Reference | None) -> list[Finding]:
    """``model-tensors`` findings of the model at ``path`` (format ``fmt``) against the project's
    extract ``reference`` (None: the project has none published)."""
    try:
        arrays = read_arrays(path, fmt)
    except Unreadable as exc:
        return [_finding(Status.REVIEW, f"{exc}: its numbers were not compared with the extract; a checker must "
                                        "confirm they are not the extract's values")]
    out = [_finding(Status.REVIEW, f"not compared with the extract: {why}") for why in arrays.unread[:5]]
    out.extend(graph_findings(arrays.graphs))
    if reference is None:
        out.append(_finding(Status.REVIEW, "the model's numbers were not compared with the project's extract (none "
                                           "is published, or the check ran without a project)"))
        return out
    if reference.unread:
        out.append(_finding(Status.REVIEW, f"only the first rows of the extract's tables {', '.join(reference.unread[:5])} "
                                           "were compared with the model"))
    model = _Model(arrays, reference)
    out.extend(_value_findings(model, reference))
    out.extend(_order_findings(model, reference))
    out.extend(_id_bytes(path, reference))
    out.extend(_low_bits(arrays, reference))
    if fmt in ("safetensors", "onnx"):  # tensors (tree models are lists of nodes, concatenated here)
        out.extend(_size_findings(arrays, reference))
    return out


__all__ = ["check_tensors", "column_evidence", "RULE", "MIN_VALUES", "MIN_IDS", "MIN_WINDOWS", "REVIEW_VALUES"]
