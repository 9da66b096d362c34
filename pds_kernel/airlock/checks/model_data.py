"""The model file as a container of the data itself: rule ``model-data``.

A model leaves through the gate as one file, and every format the gate accepts can carry more than
a model: free-text fields (ONNX ``doc_string``, ``producer_name``, ``metadata_props``; safetensors
``__metadata__``; XGBoost ``feature_names`` and ``attributes``; extra attributes of a skops
estimator), tensors or arrays nobody reads, and estimators that keep their training rows by design.
These rules run on every model file at submission, before the platform's attack (which only sees
what the model *outputs*, and so misses data a model carries without using it):

- **identifiers in any string of the model** (fail): every string the file holds is read (the
  JSON of XGBoost and skops models key by key, LightGBM's text token by token, the printable runs
  of binary files and of each skops array, as bytes and as UTF-16/32 text) and checked with the
  table rules of :mod:`.content`: NIR-like numbers and project pseudonyms fail, a person-key column
  name as a string (``PERSON_ID``, ``BEN_NIR_PSA``) fails, SNDS-shaped keys and day-level dates go to
  review;
- **instance-based estimators** (fail): scikit-learn estimators whose fitted state *is* training
  rows (k-nearest neighbours, support vector machines, Gaussian processes, kernel ridge, label
  propagation...) named anywhere in a skops file, and ONNX's SVM operators (their
  ``support_vectors`` attribute holds training rows);
- **leaves of fewer than** :data:`MIN_LEAF` **training rows** (fail without a declaration, review
  with one): a scikit-learn tree or any tree of an ensemble (skops: every estimator's node array,
  up to :data:`MAX_TREES` trees), a LightGBM model (``leaf_count``) or an XGBoost model of squared
  error (``sum_hessian``, a row's hessian being 1) (:mod:`.model_leaves`).

Unused ONNX initializers, dead nodes and unused local functions are refused by
:mod:`.model_formats`; extra attributes of a skops estimator, and leaves or declarations that do not
match the declared training rows, are found by the platform's check (:mod:`pds_kernel.modelcheck.run`).
"""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from . import content
from .model_leaves import MIN_LEAF, booster_leaves
from .result import Finding, Status

#: bytes of a model (or of one archive member, decompressed) the string scan reads, at most; a
#: larger model is read up to this and the rest is said to be unread
MAX_SCAN_BYTES = 256 * 1024 * 1024
#: the shortest printable run of a binary file read as a string (a NIR has 13 digits)
MIN_RUN = 8
_RUN = re.compile(rb"[\x20-\x7e]{%d,}" % MIN_RUN)
_UTF16 = re.compile(rb"(?:[\x20-\x7e]\x00){%d,}" % MIN_RUN)
_UTF32 = re.compile(rb"(?:[\x20-\x7e]\x00\x00\x00){%d,}" % MIN_RUN)
#: a number written with a decimal point or an exponent (thresholds and weights of text models)
_DECIMAL = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\d+[eE][-+]?\d+$|^[-+]?(?:inf|nan)$",
                      re.IGNORECASE)
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{64,}")
_TOKENS = re.compile(r"[\s=,:;\[\]{}()]+")
#: the longest token (no space or punctuation) of 32 or more distinct characters a model's string
#: may hold: names and short metadata are shorter; base64 or another encoding of a file is longer
MAX_TOKEN = 256

#: scikit-learn estimators whose fitted state holds training rows (module prefix or module.class)
INSTANCE_BASED = {
    "sklearn.neighbors": "k-nearest-neighbour estimators keep every training row",
    "sklearn.svm._classes.SVC": "a support vector machine keeps its support vectors, which are training rows",
    "sklearn.svm._classes.NuSVC": "a support vector machine keeps its support vectors, which are training rows",
    "sklearn.svm._classes.SVR": "a support vector machine keeps its support vectors, which are training rows",
    "sklearn.svm._classes.NuSVR": "a support vector machine keeps its support vectors, which are training rows",
    "sklearn.svm._classes.OneClassSVM": "a support vector machine keeps its support vectors, which are training rows",
    "sklearn.gaussian_process": "a Gaussian process keeps its training rows (X_train_)",
    "sklearn.kernel_ridge": "kernel ridge regression keeps its training rows (X_fit_)",
    "sklearn.semi_supervised": "label propagation keeps its training rows (X_)",
    "sklearn.decomposition._kernel_pca": "kernel PCA keeps its training rows (X_fit_)",
    "sklearn.kernel_approximation.Nystroem": "the Nystroem approximation keeps training rows (components_)",
    "sklearn.manifold": "manifold learners keep their training rows or their embedding",
    "sklearn.cluster._dbscan": "DBSCAN keeps its core samples, which are training rows",
    "sklearn.cluster._optics": "OPTICS keeps per-row orderings and distances",
    "sklearn.cluster._affinity_propagation": "affinity propagation's centres are training rows",
    "sklearn.cluster._hdbscan": "HDBSCAN keeps per-row labels and probabilities",
}
EXPORT_INSTEAD = ("export a model that summarises the rows instead (logistic regression, a tree ensemble with "
                  "large leaves), or its coefficients as a table")
#: ONNX operators whose attributes hold training rows
ONNX_INSTANCE_OPS = {"SVMClassifier", "SVMRegressor"}


def instance_based(module: str, cls: str) -> str | None:
    """Why the scikit-learn class ``module.cls`` keeps training rows, or None."""
    full = f"{module}.{cls}"
    for prefix, why in INSTANCE_BASED.items():
        if full == prefix or module == prefix or module.startswith(prefix + "."):
            return why
    return None


def _json_strings(value, depth: int = 0) -> Iterator[str]:
    """Every string of a JSON value, keys included (iteratively deep: skops nests one level per node)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, sub in item.items():
                yield str(key)
                stack.append(sub)
        elif isinstance(item, list):
            stack.extend(item)


def _runs(data: bytes) -> Iterator[str]:
    """Printable text in binary bytes: ASCII runs, and UTF-16 and UTF-32 runs (NumPy ``<U`` arrays)."""
    for match in _RUN.finditer(data):
        yield match.group().decode("ascii")
    for pattern, width in ((_UTF16, 2), (_UTF32, 4)):
        for match in pattern.finditer(data):
            yield match.group()[::width].decode("ascii")


def _read(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(MAX_SCAN_BYTES)


def _skops_schema_classes(schema) -> Iterator[tuple[str, str]]:
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("__module__"), str) and isinstance(item.get("__class__"), str):
                yield item["__module__"], item["__class__"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class _Scan:
    def __init__(self):
        self.findings: list[Finding] = []
        self.seen: set[tuple[str, str]] = set()

    def add(self, status: Status, message: str) -> None:
        if (status.value, message) not in self.seen:
            self.seen.add((status.value, message))
            self.findings.append(Finding("model-data", status, message))

    def string(self, value: str, where: str, *, names: bool = True) -> None:
        """Identifier and date rules on one string of the model (numbers are not strings)."""
        value = value.strip()
        if len(value) > MAX_TOKEN:
            longest = max(_TOKENS.split(value[:64_000_000]), key=len)
            # encoded data uses many symbols (base64: 64); a tensor's repeated bytes (``@!@!...``) few
            if len(longest) > MAX_TOKEN and len(set(longest)) >= 32:
                self.add(Status.FAIL, f"{where} holds an unbroken string of {len(longest)} characters "
                                      f"({longest[:24]!r}...): encoded data (base64, a compressed file), not a name "
                                      "or a setting; a model's strings are names and short metadata")
        if len(value) < MIN_RUN and not names:
            return
        if _DECIMAL.match(value):
            if "." in value or "e" in value.lower():
                return  # a weight or a threshold written as text
        if names and value.upper() in content.person_key_columns():
            self.add(Status.FAIL, f"{where} names the person-key column {value[:40]!r}: a model must not "
                                  "use or carry person identifiers")
        for _, status, message in content.identifier_rules(value) + content.date_rules(value):
            self.add(status, f"{where} holds a string that {message}: a model carries no person's identifier "
                             "or day of care (remove it from the file's names, metadata and attributes)")

    def binary(self, data: bytes, where: str) -> None:
        for run in _runs(data):
            hexes = _HEX_RUN.search(run)
            if hexes:
                self.add(Status.FAIL, f"{where} holds a run of {len(hexes.group())} hexadecimal characters: "
                                      "pseudonyms or other keys written end to end")
            for token in _TOKENS.split(run):
                if token:
                    self.string(token, where, names=False)
                    if content.NIR_IN_TOKEN.search(token) and not content.NIR.search(token):
                        # binary formats glue a string to the next field's type marker (UBJ's ``L``)
                        self.add(Status.FAIL, f"{where} holds a string that looks like a NIR (social-security "
                                              "number): a model carries no person's identifier or day of care "
                                              "(remove it from the file's names, metadata and attributes)")
            if " " in run.strip() or len(run) > 64:
                self.string(run, where, names=False)


def scan_model(path: Path, fmt: str, declared: bool = False) -> list[Finding]:
    """``model-data`` findings of the model at ``path`` in format ``fmt`` (see the module);
    ``declared``: its training rows are declared, so the platform's attack judges its leaves."""
    scan = _Scan()
    if path.stat().st_size > MAX_SCAN_BYTES:
        scan.add(Status.REVIEW, f"the model is larger than the gate's string scan reads ({MAX_SCAN_BYTES} bytes): "
                                "its end was not read")
    if fmt in ("lightgbm", "xgboost-json", "xgboost-ubj"):
        _booster_leaf_findings(path, fmt, scan, declared)
    if fmt == "skops":
        _scan_skops(path, scan, declared)
    elif fmt == "xgboost-json":
        try:
            model = json.loads(_read(path))
        except (ValueError, RecursionError):
            scan.add(Status.FAIL, "the XGBoost model is not a JSON document the gate can read in full")
        else:
            for value in _json_strings(model):
                scan.string(value, "the XGBoost model")
    elif fmt == "lightgbm":
        text = _read(path).decode("utf-8", "replace")
        for token in _TOKENS.split(text):
            if token:
                scan.string(token, "the LightGBM model", names=True)
        for line in text.splitlines():  # dates and names with spaces
            if " " in line and not line.startswith(("threshold=", "leaf_value=", "split_gain=", "internal_value=",
                                                   "leaf_weight=", "internal_weight=", "decision_type=",
                                                   "left_child=", "right_child=", "split_feature=",
                                                   "leaf_count=", "internal_count=", "cat_boundaries=", "feature_infos=",
                                                   "cat_threshold=", "feature_importances:")):
                scan.string(line, "the LightGBM model", names=False)
    elif fmt == "rds":
        data = _read(path)
        if data[:2] == b"\x1f\x8b":
            try:
                with gzip.open(path, "rb") as fh:
                    data = fh.read(MAX_SCAN_BYTES)
            except (OSError, EOFError):
                scan.add(Status.FAIL, "the RDS file is damaged compressed data the gate cannot read in full")
        scan.binary(data, "the RDS model")
    else:
        if fmt == "onnx":
            _onnx_instance_ops(path, scan)
        scan.binary(_read(path), f"the {fmt} model")
    return scan.findings


_NPY_NAME = re.compile(r"^[0-9]{1,40}\.npy$")


def _skops_files(schema) -> set[str]:
    """The archive members a skops schema reads (its ``file`` entries)."""
    stack, out = [schema], set()
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("file"), str):
                out.add(item["file"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def _npy_strings(data: bytes, scan: _Scan, name: str) -> bool:
    """Scan each string of a NumPy text array (fixed-width items sit end to end in the bytes); False
    when ``data`` is not one (it is then read as binary)."""
    import io

    import numpy as np

    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return False
    if array.dtype.kind not in "US":
        return False
    for value in array.ravel()[:10_000_000]:
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        scan.string(text, f"{name[:80]} of the skops file")
    return True


#: the trees of one skops file whose leaves are counted, at most (a skops file holds at most
#: :data:`.models.MAX_MEMBERS` arrays, about 2,000 trees: this is never the binding limit today)
MAX_TREES = 5_000


def _leaves(data: bytes) -> tuple[int, int] | None:
    """(leaves, leaves of fewer than :data:`MIN_LEAF` training rows) of a scikit-learn tree's node
    array: the ``nodes`` of a ``Tree`` (decision trees, forests, extra trees, gradient boosting:
    ``n_node_samples``) or of a histogram gradient boosting ``TreePredictor`` (``count``); None
    when ``data`` is no such array."""
    import io

    import numpy as np

    try:
        nodes = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    fields = set(nodes.dtype.names or ())
    if {"left_child", "n_node_samples"} <= fields:
        leaf, rows = nodes["left_child"] == -1, nodes["n_node_samples"]
    elif {"is_leaf", "count"} <= fields:
        leaf, rows = nodes["is_leaf"].astype(bool), nodes["count"]
    else:
        return None
    return int(leaf.sum()), int((leaf & (rows < MIN_LEAF)).sum())


def _leaf_findings(trees: list[tuple[int, int]], skipped: int, scan: _Scan, declared: bool,
                   model: str = "decision tree", setting: str = "") -> None:
    """A tree, or any tree of an ensemble, with leaves of fewer than :data:`MIN_LEAF` training rows
    fails when its rows are not declared (nothing attacks it), and goes to a checker when they are
    (the platform's structural attack judges its leaves, every estimator of a forest). ``setting``
    says what to fit it with (scikit-learn's by default)."""
    if skipped:
        scan.add(Status.REVIEW, f"the leaves of {skipped} trees after the first {MAX_TREES} were not counted: a "
                                "checker must confirm their leaves hold 5 training rows or more")
    small = sum(n for _, n in trees)
    if not small:
        return
    leaves = sum(n for n, _ in trees)
    what = f"the {model} has" if len(trees) == 1 else f"{sum(1 for _, n in trees if n)} of its {len(trees)} trees have"
    setting = setting or (f"min_samples_leaf={MIN_LEAF} or more (or a small max_depth"
                          + ("" if len(trees) == 1 else "; HistGradientBoosting: min_samples_leaf, 20 by default") + ")")
    todo = f"fit it with {setting}" + ("" if declared else ", or declare its training rows (ws.declare_model) so the "
                                                          "platform attacks it")
    scan.add(Status.REVIEW if declared else Status.FAIL,
             f"{what} {small} of {leaves} leaves holding fewer than {MIN_LEAF} training rows: each is a few persons' "
             f"features and outcome, a record of them (a leaf of one row is one person's); {todo}")


def _booster_leaf_findings(path: Path, fmt: str, scan: _Scan, declared: bool) -> None:
    """The same rule on an XGBoost or LightGBM model whose file records its leaves' rows."""
    found = booster_leaves(path, fmt)
    if found is not None:
        setting, trees = found
        _leaf_findings(trees, 0, scan, declared, "XGBoost model" if fmt.startswith("xgboost") else "LightGBM model",
                       setting)


def _scan_skops(path: Path, scan: _Scan, declared: bool = False) -> None:
    trees: list[tuple[int, int]] = []
    skipped = 0
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                schema = json.loads(archive.read("schema.json"))
            except (KeyError, ValueError, RecursionError):
                scan.add(Status.FAIL, "the skops schema.json is not JSON the gate can read in full")
                return
            unread = sorted(set(archive.namelist()) - _skops_files(schema) - {"schema.json"})
            if unread:
                scan.add(Status.FAIL, f"the skops file holds {len(unread)} member(s) its schema never reads "
                                      f"({unread[0][:80]!r}...): a file the model does not use can only carry data")
            for member in archive.infolist():
                with archive.open(member) as fh:
                    data = fh.read(MAX_SCAN_BYTES + 1)
                if len(data) > MAX_SCAN_BYTES:
                    scan.add(Status.REVIEW, f"{member.filename} of the skops file is larger than the gate's string "
                                            "scan reads: its end was not read")
                if member.filename == "schema.json":
                    for module, cls in _skops_schema_classes(schema):
                        why = instance_based(module, cls)
                        if why:
                            scan.add(Status.FAIL, f"the skops file holds a {cls[:60]}: {why}, so the file carries "
                                                  f"individual records; {EXPORT_INSTEAD}")
                    for value in _json_strings(schema):
                        if not _NPY_NAME.match(value):  # arrays are named by object ids (15 digits)
                            scan.string(value, "the skops schema")
                elif member.filename.endswith(".npy") and _npy_strings(data, scan, member.filename):
                    continue
                elif member.filename.endswith(".npy") and len(trees) >= MAX_TREES and (b"n_node_samples" in data[:2048] or b"is_leaf" in data[:2048]):
                    skipped += 1
                    scan.binary(data, f"{member.filename[:80]} of the skops file")
                elif member.filename.endswith(".npy") and (counts := _leaves(data)) is not None:
                    trees.append(counts)
                    scan.binary(data, f"{member.filename[:80]} of the skops file")
                else:
                    scan.binary(data, f"{member.filename[:80]} of the skops file")
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, NotImplementedError) as exc:
        scan.add(Status.FAIL, f"the skops archive cannot be read in full ({type(exc).__name__})")
    _leaf_findings(trees, skipped, scan, declared)


def _onnx_instance_ops(path: Path, scan: _Scan) -> None:
    from .model_formats import onnx_operators

    for domain, op in onnx_operators(path):
        if op in ONNX_INSTANCE_OPS and domain in ("ai.onnx.ml",):
            scan.add(Status.FAIL, f"the ONNX model uses {op}, whose support_vectors are training rows: the file "
                                  f"carries individual records; {EXPORT_INSTEAD}")


__all__ = ["scan_model", "instance_based", "INSTANCE_BASED", "MAX_SCAN_BYTES"]
