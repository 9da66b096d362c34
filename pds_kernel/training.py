"""Training on the workspace's Dask cluster, evaluation, and saving a model in a format that can leave.

    from pds_kernel import training as T, workspace as ws
    client = ws.dask_client()
    train, test = T.split_by_person(table, test_fraction=0.3)        # polars or Dask, by PERSON_ID
    fit = T.fit_xgboost(client, train, "outcome", rounds=100)       # xgboost.dask, every worker
    p = T.predict(client, fit.booster, test, fit.features)
    T.save_model(fit.booster, "results/model.ubj")                   # XGBoost's own format, no pickle

The same code runs on the local cluster of a sandbox (``LocalCluster``, loopback) and on a
dask-gateway cluster on Kubernetes. XGBoost's collective needs a tracker that every worker reaches:
it runs on the scheduler. Behind dask-gateway the client only knows the gateway's proxy, so the
tracker is bound to the scheduler's own address, on :data:`TRACKER_PORT`, the port the project's
NetworkPolicy opens from its workers to its scheduler (helm networkpolicies.yaml).

Models are saved only in formats whose loading runs no code: XGBoost JSON/UBJ, LightGBM text,
skops for scikit-learn (see docs/ai.md). Pickle, joblib and ``torch.save`` files are refused here,
and the gate refuses them too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput

PERSON = "PERSON_ID"
#: The XGBoost tracker's port on the Dask scheduler (Kubernetes; 0 = any free port locally).
TRACKER_PORT = 8789
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist",
    "max_depth": 3, "eta": 0.1, "min_child_weight": 10, "subsample": 0.8, "seed": 0,
}
#: Suffix → how the model is written. Nothing here writes a pickle.
SAFE_SUFFIXES = {".json": "xgboost", ".ubj": "xgboost", ".txt": "lightgbm", ".skops": "skops"}


@dataclass
class Fit:
    """A trained booster, the feature columns it takes (in order) and its evaluation history."""

    booster: Any
    features: list[str]
    history: dict = field(default_factory=dict)
    rows: int = 0


def _is_dask(frame: Any) -> bool:
    return type(frame).__module__.startswith("dask")


def _in_test(person_id: str, fraction: float, salt: str) -> bool:
    digest = hashlib.sha256(f"{salt}\0{person_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def split_by_person(frame, test_fraction: float = 0.3, salt: str = "pds-split"):
    """(train, test): each person falls on one side only, by a keyed hash of ``PERSON_ID`` (the same
    split whatever the order, the partitioning or the backend; another ``salt``, another split)."""
    if not 0 < test_fraction < 1:
        raise InvalidInput(f"the test fraction is between 0 and 1, not {test_fraction}")
    if _is_dask(frame):
        flag = frame[PERSON].map(lambda p: _in_test(p, test_fraction, salt), meta=(PERSON, "bool"))
        return frame[~flag], frame[flag]
    import polars as pl

    flag = pl.col(PERSON).map_elements(lambda p: _in_test(p, test_fraction, salt), return_dtype=pl.Boolean)
    return frame.filter(~flag), frame.filter(flag)


def feature_columns(frame, label: str, exclude: Sequence[str] = ()) -> list[str]:
    """Every column but the person, the label and ``exclude``, in the frame's order."""
    names = list(frame.columns) if _is_dask(frame) else list(frame.collect_schema().names())
    if label not in names:
        raise InvalidInput(f"the label column {label!r} is not in the table (columns: {', '.join(names)})")
    return [c for c in names if c not in {PERSON, label, *exclude}]


def collective_config(client):
    """XGBoost's tracker settings for ``client``'s cluster: on the scheduler's own address and
    :data:`TRACKER_PORT` behind dask-gateway (the client sees only the proxy), defaults locally."""
    from distributed.comm import get_address_host
    from xgboost.collective import Config

    if not str(client.scheduler.address).startswith("gateway://"):
        return Config()
    own = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.address)
    return Config(tracker_host_ip=get_address_host(own), tracker_port=TRACKER_PORT)


def fit_xgboost(client, train, label: str, *, params: dict | None = None, rounds: int = 100,
                features: Sequence[str] | None = None) -> Fit:
    """Train a booster across every worker of ``client``'s cluster (``xgboost.dask``) on ``train``
    (a Dask DataFrame; a polars frame is partitioned over the workers first)."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    if not _is_dask(train):
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        train = dd.from_pandas(_collect(train).to_pandas(), npartitions=workers)
    features = list(features) if features is not None else feature_columns(train, label)
    train = client.persist(train)  # this client's cluster, whether or not it is the default one
    matrix = dxgb.DaskDMatrix(client, train[features].astype("float32"), train[label].astype("int32"))
    out = dxgb.train(client, {**DEFAULT_PARAMS, **(params or {})}, matrix, num_boost_round=rounds,
                     evals=[(matrix, "train")], verbose_eval=False, coll_cfg=collective_config(client))
    return Fit(out["booster"], features, out.get("history", {}), rows=int(client.compute(train.shape[0]).result()))


def fit_xgboost_local(train, label: str, *, params: dict | None = None, rounds: int = 100,
                      features: Sequence[str] | None = None) -> Fit:
    """The same training in this process only (no cluster): the reference the bench compares with."""
    import xgboost as xgb

    frame = _collect(train) if not _is_dask(train) else None
    if frame is None:
        import polars as pl

        frame = pl.from_pandas(train.compute())
    features = list(features) if features is not None else feature_columns(frame, label)
    matrix = xgb.DMatrix(frame.select(features).to_numpy().astype(np.float32),
                         label=frame.get_column(label).to_numpy(), feature_names=features)
    history: dict = {}
    booster = xgb.train({**DEFAULT_PARAMS, **(params or {})}, matrix, num_boost_round=rounds,
                        evals=[(matrix, "train")], evals_result=history, verbose_eval=False)
    return Fit(booster, features, history, rows=frame.height)


def predict(client, booster, frame, features: Sequence[str]) -> np.ndarray:
    """Probabilities for ``frame``'s rows: on the cluster for a Dask frame, here otherwise."""
    if _is_dask(frame):
        from xgboost import dask as dxgb

        prediction = dxgb.predict(client, booster, frame[list(features)].astype("float32"))
        return np.asarray(client.compute(prediction).result())
    import xgboost as xgb

    data = _collect(frame).select(list(features)).to_numpy().astype(np.float32)
    return booster.predict(xgb.DMatrix(data, feature_names=list(features)))


def calibration(y_true, y_prob, min_persons: int = 10) -> dict[str, list[float]]:
    """Calibration by quantile bins of predicted risk, each of at least ``min_persons`` people (the
    project's small-cell threshold, so the plot can be exported): mean predicted risk, observed
    frequency and count per bin."""
    y_true, y_prob = np.asarray(y_true, dtype=float), np.asarray(y_prob, dtype=float)
    if y_true.shape != y_prob.shape or y_true.size == 0:
        raise InvalidInput("calibration needs as many outcomes as predictions, at least one")
    bins = max(1, min(10, y_true.size // max(1, min_persons)))
    order = np.argsort(y_prob, kind="stable")
    groups = np.array_split(order, bins)
    return {"predicted": [float(y_prob[g].mean()) for g in groups],
            "observed": [float(y_true[g].mean()) for g in groups],
            "persons": [int(g.size) for g in groups]}


def save_model(model, path: str | Path) -> Path:
    """Write ``model`` in a format whose loading executes no code, chosen by the suffix: ``.json``
    or ``.ubj`` (XGBoost booster or estimator), ``.txt`` (LightGBM booster), ``.skops``
    (scikit-learn). Any other suffix (``.pkl``, ``.joblib``, ``.pt``...) is refused."""
    path = Path(path)
    kind = SAFE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(f"{path.name}: save models as {', '.join(SAFE_SUFFIXES)} (formats that load without "
                           "running code); pickle, joblib and torch.save files cannot leave the workspace")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "skops":
        import skops.io

        skops.io.dump(model, path)
    elif kind == "lightgbm":
        booster = getattr(model, "booster_", model)
        booster.save_model(str(path))
    else:
        if not hasattr(model, "save_model"):
            raise InvalidInput(f"{path.suffix} is XGBoost's format: this model is a {type(model).__name__}")
        model.save_model(str(path))
    return path


def _collect(frame):
    import polars as pl

    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame
