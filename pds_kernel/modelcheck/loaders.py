"""Load a model without running code (inside the check sandbox, check environment only).

- skops: the types the file names are listed first (``skops.io.get_untrusted_types``); any type
  outside skops' default trusted set and :data:`SKOPS_TRUSTED` (scikit-learn's tree structure)
  refuses the file (:class:`UntrustedModel`) before anything is built. Then ``skops.io.load``
  trusting exactly those.
- XGBoost JSON/UBJ: XGBoost's own parser into an ``XGBClassifier``. The file carries no training
  parameters, so the ones the structural attack judges are read from the trees themselves:
  ``max_depth`` (deepest leaf), ``n_estimators`` (rounds) and ``min_child_weight`` (the smallest
  leaf hessian, a lower bound of the real setting's effect).
- LightGBM text: LightGBM's own parser, wrapped as a classifier. The file records every training
  parameter after its trees, seeds included, so the classifier trains again from them
  (:func:`lightgbm_params`: numbers and LightGBM's own words only, never a file, machines or a GPU).

Anything else is :class:`UnsupportedModel` (the gate sends it to review with the reason).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class UnsupportedModel(Exception):
    """A model the platform cannot attack (the reason is shown to checkers)."""


class UntrustedModel(Exception):
    """A model file that names types outside the trusted set: refused unopened."""


class LightGBMClassifier(ClassifierMixin, BaseEstimator):
    """A loaded LightGBM binary or multiclass booster seen as a scikit-learn classifier; ``fit``
    trains a new booster with the loaded one's recorded parameters and rounds (``fitted_``), its
    recorded seeds unless ``random_state`` is given (LiRA's shadow models draw their own)."""

    def __init__(self, booster=None, random_state=None):
        self.booster = booster
        self.random_state = random_state

    def fit(self, X, y):
        import lightgbm as lgb

        params = lightgbm_params(self.booster)
        if self.random_state is not None:  # LightGBM derives every seed it is not given from `seed`
            params = {k: v for k, v in params.items() if not k.endswith("_seed")} | {"seed": int(self.random_state)}
        self.fitted_ = lgb.train(params, lgb.Dataset(np.asarray(X, dtype=float), label=y),
                                 num_boost_round=self.booster.current_iteration())
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        booster = self.fitted_ if hasattr(self, "fitted_") else self.booster
        p = np.asarray(booster.predict(np.asarray(X, dtype=float)))
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


#: LightGBM parameters whose text value the refit accepts (a word each): the rest of a model file's
#: text parameters name files or machines (``input_model``, ``forcedsplits_filename``, ``machines``...),
#: which the author controls and the refit must not read
LIGHTGBM_WORDS = frozenset({"boosting", "objective", "metric", "tree_learner", "device_type", "data_sample_strategy",
                            "monotone_constraints_method"})
_WORD = re.compile(r"^[a-z0-9_]{0,40}$")


def _texts_in(value: Any) -> list[str]:
    """The non-empty texts of a parameter's value (LightGBM reads a list from ``a,b``), at any depth."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts_in(item)]
    return []


def lightgbm_params(booster) -> dict[str, Any]:
    """The training parameters a LightGBM model file records, as the refit uses them; raises
    :class:`UnsupportedModel` when they cannot re-make it on one machine (trained across machines,
    on a GPU, or naming a file)."""
    params: dict[str, Any] = {}
    for key, value in dict(booster.params).items():
        texts = _texts_in(value)
        if texts and (key not in LIGHTGBM_WORDS or not all(_WORD.fullmatch(t) for t in texts)):
            raise UnsupportedModel(f"the model's parameter {str(key)[:40]} names {', '.join(texts)[:60]!r}: the "
                                   "platform trains LightGBM again only from numbers and its own words")
        if value not in ("", [], None):
            params[key] = value
    machines, threads = _count(params, "num_machines"), _count(params, "num_threads")
    if machines > 1:
        raise UnsupportedModel(f"the model was trained across {machines} machines (lightgbm.dask): "
                               "the platform trains it again on one, which makes another model")
    if params.get("device_type", "cpu") != "cpu":
        raise UnsupportedModel(f"the model was trained on a {params['device_type']} device")
    params.update(num_threads=min(max(threads, 1), os.cpu_count() or 1), verbose=-1)
    return params


def _count(params: dict[str, Any], key: str) -> int:
    """A whole-number parameter (1 when absent or 0); raises :class:`UnsupportedModel` otherwise."""
    value = params.get(key) or 1
    if not isinstance(value, int) or isinstance(value, bool):
        raise UnsupportedModel(f"the model's parameter {key} is {str(value)[:40]!r}, not a whole number")
    return value


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
