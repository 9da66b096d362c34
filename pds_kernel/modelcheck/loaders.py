"""Load a model without running code (inside the check sandbox, check environment only).

- skops: the types the file names are listed first (``skops.io.get_untrusted_types``); any type
  outside skops' default trusted set and :data:`SKOPS_TRUSTED` (scikit-learn's tree structure)
  refuses the file (:class:`UntrustedModel`) before anything is built. Then ``skops.io.load``
  trusting exactly those.
- XGBoost JSON/UBJ: XGBoost's own parser into an ``XGBClassifier``. The file carries no training
  parameters, so the ones the structural attack judges are read from the trees themselves:
  ``max_depth`` (deepest leaf), ``n_estimators`` (rounds) and ``min_child_weight`` (the smallest
  leaf hessian, a lower bound of the real setting's effect).
- LightGBM text: LightGBM's own parser, wrapped as a classifier that predicts (it cannot be
  retrained, so shadow-model attacks do not apply).

Anything else is :class:`UnsupportedModel` (the gate sends it to review with the reason).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class UnsupportedModel(Exception):
    """A model the platform cannot attack (the reason is shown to checkers)."""


class UntrustedModel(Exception):
    """A model file that names types outside the trusted set: refused unopened."""


class LightGBMClassifier(ClassifierMixin, BaseEstimator):
    """A loaded LightGBM binary or multiclass booster seen as a scikit-learn classifier."""

    def __init__(self, booster=None):
        self.booster = booster

    def fit(self, X, y):  # pragma: no cover - never retrained
        raise UnsupportedModel("a LightGBM model loaded from its text format cannot be retrained")

    def predict_proba(self, X):
        p = np.asarray(self.booster.predict(np.asarray(X, dtype=float)))
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


_DEPTH = re.compile(r"^(\t*)")


def _xgb_structure(booster) -> tuple[int, float]:
    """(deepest leaf, smallest leaf cover) over every tree of ``booster``."""
    depth, cover = 0, float("inf")
    for tree in booster.get_dump(with_stats=True):
        for line in tree.splitlines():
            tabs = len(_DEPTH.match(line).group(1))
            if "leaf=" in line:
                depth = max(depth, tabs)
                match = re.search(r"cover=([0-9.eE+-]+)", line)
                if match:
                    cover = min(cover, float(match.group(1)))
    return depth, (cover if cover != float("inf") else 0.0)


def load_xgboost(path: Path):
    import json

    import xgboost as xgb

    model = xgb.XGBClassifier()
    try:
        model.load_model(str(path))
    except (xgb.core.XGBoostError, ValueError) as exc:
        raise UnsupportedModel(f"XGBoost cannot read this model: {str(exc)[:200]}") from None
    booster = model.get_booster()
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if not objective.startswith(("binary:", "multi:")):
        raise UnsupportedModel(f"an XGBoost model with objective {objective}: the attacks apply to classifiers")
    depth, cover = _xgb_structure(booster)
    model.set_params(n_estimators=booster.num_boosted_rounds(), max_depth=max(depth, 1),
                     min_child_weight=cover, objective=objective)
    return model


def load_lightgbm(path: Path):
    import lightgbm as lgb

    try:
        booster = lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as exc:
        raise UnsupportedModel(f"LightGBM cannot read this model: {str(exc)[:200]}") from None
    objective = str(booster.params.get("objective", booster.dump_model().get("objective", "")))
    if not objective.startswith(("binary", "multiclass")):
        raise UnsupportedModel(f"a LightGBM model with objective {objective}: the attacks apply to classifiers")
    model = LightGBMClassifier(booster)
    classes = int(booster.dump_model().get("num_class", 1))
    model.classes_ = np.arange(max(classes, 2))
    return model


#: scikit-learn internals skops does not trust by default, that the platform trusts: data holders
#: whose state skops rebuilds field by field (no constructor argument is a callable).
SKOPS_TRUSTED = frozenset({"sklearn.tree._tree.Tree"})


def load_skops(path: Path):
    import skops.io as sio

    untrusted = [t for t in sio.get_untrusted_types(file=str(path)) if t not in SKOPS_TRUSTED]
    if untrusted:
        raise UntrustedModel(f"the skops file names types outside the trusted set: {', '.join(untrusted[:10])}")
    model = sio.load(str(path), trusted=sorted(SKOPS_TRUSTED))
    if not isinstance(model, BaseEstimator) or not hasattr(model, "predict_proba"):
        raise UnsupportedModel(f"a {type(model).__name__}: the attacks apply to scikit-learn classifiers "
                               "with predict_proba")
    return model


LOADERS = {"xgboost-json": load_xgboost, "xgboost-ubj": load_xgboost, "lightgbm": load_lightgbm,
           "skops": load_skops}


def load_model(path: Path, fmt: str):
    """The model at ``path`` in format ``fmt`` (as the gate sniffed it), loaded without running code."""
    loader = LOADERS.get(fmt)
    if loader is None:
        raise UnsupportedModel(f"the platform does not attack {fmt} models (no safe loader that rebuilds "
                               "a classifier from it)")
    return loader(Path(path))
