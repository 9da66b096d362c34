"""How many training rows the leaves of an XGBoost or LightGBM model hold (rule ``model-data``).

A leaf of one training row is that person's features (the path's thresholds) and outcome (the
leaf's value). A scikit-learn tree records its rows per leaf (:mod:`.model_data` counts them); the
boosters' files record them too:

- LightGBM text: ``leaf_count=`` of each tree, the rows in each leaf;
- XGBoost JSON or UBJ: ``sum_hessian`` of each node, the sum of the rows' hessians. It counts the
  rows only when each row's hessian is 1, which squared-error regression (XGBoost's default for a
  regressor) gives: those models are judged. For other objectives (logistic: a row's hessian is
  ``p(1 - p)``, under 1/4 and shrinking as the model grows sure) the cover does not tell the rows,
  and the file goes to a checker as any model does.

The rule is :mod:`.model_data`'s for scikit-learn trees: fail without a declaration, review with one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

#: the fewest training rows a leaf of an exported tree may hold (SACRO-ML's min_samples_leaf)
MIN_LEAF = 5
#: XGBoost objectives whose row hessian is 1, so that a leaf's cover is its rows
UNIT_HESSIAN = frozenset({"reg:squarederror"})
_LEAF_COUNT = re.compile(r"^leaf_count=(.*)$", re.MULTILINE)


def _lightgbm(path: Path) -> list[tuple[int, int]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    trees = []
    for match in _LEAF_COUNT.finditer(text):
        counts = [float(t) for t in match.group(1).split() if re.fullmatch(r"\d+(?:\.\d*)?", t)]
        trees.append((len(counts), sum(1 for c in counts if c < MIN_LEAF)))
    return trees


def _xgboost(path: Path, fmt: str) -> list[tuple[int, int]] | None:
    data = path.read_bytes()
    if fmt == "xgboost-ubj":
        from .ubjson import decode

        document = decode(data)
    else:
        document = json.loads(data)
    learner = document.get("learner", {}) if isinstance(document, dict) else {}
    objective = (learner.get("objective") or {}).get("name") if isinstance(learner.get("objective"), dict) else None
    if objective not in UNIT_HESSIAN:
        return None
    model = ((learner.get("gradient_booster") or {}).get("model") or {})
    trees = []
    for tree in model.get("trees") or []:
        left = np.asarray(tree.get("left_children", []), dtype=np.float64).ravel()
        cover = np.asarray(tree.get("sum_hessian", []), dtype=np.float64).ravel()
        if len(left) != len(cover):
            continue
        leaves = cover[left == -1]  # UBJ arrays are NumPy arrays, JSON ones lists
        trees.append((len(leaves), int((leaves < MIN_LEAF).sum())))
    return trees


def booster_leaves(path: Path, fmt: str) -> tuple[str, list[tuple[int, int]]] | None:
    """(what to set, (leaves, leaves of fewer than :data:`MIN_LEAF` rows) per tree) of an XGBoost or
    LightGBM model; None when the file does not tell its leaves' rows (or cannot be read: its other
    rules say so)."""
    try:
        if fmt == "lightgbm":
            return "min_data_in_leaf=5 or more (LightGBM's default is 20)", _lightgbm(path)
        if fmt in ("xgboost-json", "xgboost-ubj"):
            trees = _xgboost(path, fmt)
            return None if trees is None else ("min_child_weight=5 or more", trees)
    except (ValueError, RecursionError, OSError, AttributeError, TypeError):
        return None
    return None


__all__ = ["booster_leaves", "MIN_LEAF", "UNIT_HESSIAN"]
