"""pds_kernel.training: the split by person, xgboost.dask on a real two-worker cluster against
single-process XGBoost, calibration bins, and model files that load without running code."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pds_kernel import training as T
from pds_kernel.errors import InvalidInput


def _table(n: int = 4000, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    risk = 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1])))
    return pl.DataFrame({"PERSON_ID": [f"{i:064x}" for i in range(n)],
                         **{f"x{j}": x[:, j] for j in range(4)},
                         "outcome": (rng.random(n) < risk).astype(np.int32)})


def test_split_by_person_is_disjoint_stable_and_the_same_with_dask():
    import dask.dataframe as dd

    table = _table(2000)
    train, test = (f.collect() for f in T.split_by_person(table.lazy(), 0.3))
    ids_train, ids_test = set(train["PERSON_ID"]), set(test["PERSON_ID"])
    assert not ids_train & ids_test and ids_train | ids_test == set(table["PERSON_ID"])
    assert 0.25 < len(ids_test) / table.height < 0.35
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=1)
    assert set(T.split_by_person(shuffled, 0.3)[1]["PERSON_ID"]) == ids_test  # order does not matter
    d_train, d_test = T.split_by_person(dd.from_pandas(table.to_pandas(), npartitions=3), 0.3)
    assert set(d_test["PERSON_ID"].compute()) == ids_test and set(d_train["PERSON_ID"].compute()) == ids_train
    assert set(T.split_by_person(table, 0.3, salt="other")[1]["PERSON_ID"]) != ids_test
    with pytest.raises(InvalidInput):
        T.split_by_person(table, 1.0)


def test_xgboost_dask_on_two_workers_learns_what_one_process_learns():
    import dask.dataframe as dd
    from distributed import Client, LocalCluster
    from sklearn.metrics import roc_auc_score

    table = _table()
    train, test = T.split_by_person(table, 0.3)
    local = T.fit_xgboost_local(train, "outcome", rounds=30)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert T.collective_config(client).tracker_port in (None, 0)  # locally: xgboost's defaults
        ddf = dd.from_pandas(train.to_pandas(), npartitions=2).persist()
        fit = T.fit_xgboost(client, ddf, "outcome", rounds=30)
        assert fit.rows == train.height and fit.features == ["x0", "x1", "x2", "x3"]
        assert len(fit.history["train"]["auc"]) == 30
        on_cluster = T.predict(client, fit.booster, dd.from_pandas(test.to_pandas(), npartitions=2), fit.features)
    y = test["outcome"].to_numpy()
    auc_dask, auc_local = roc_auc_score(y, on_cluster), roc_auc_score(y, T.predict(None, local.booster, test,
                                                                                     local.features))
    assert auc_dask > 0.7 and abs(auc_dask - auc_local) < 0.03
    assert np.allclose(on_cluster, T.predict(None, fit.booster, test, fit.features), atol=1e-6)


def test_calibration_bins_hold_at_least_the_threshold():
    rng = np.random.default_rng(0)
    p = rng.random(95)
    y = (rng.random(95) < p).astype(int)
    cal = T.calibration(y, p, min_persons=10)
    assert len(cal["persons"]) == 9 and min(cal["persons"]) >= 10 and sum(cal["persons"]) == 95
    assert cal["predicted"] == sorted(cal["predicted"])
    assert T.calibration(y[:7], p[:7], min_persons=10)["persons"] == [7]  # one bin: the whole set
    with pytest.raises(InvalidInput):
        T.calibration(y, p[:3])


def test_models_are_saved_only_in_formats_that_load_without_code(tmp_path):
    import lightgbm
    import skops.io
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression

    table = _table(500)
    fit = T.fit_xgboost_local(table, "outcome", rounds=5)
    for suffix, magic in ((".ubj", b"{"), (".json", b"{")):
        path = T.save_model(fit.booster, tmp_path / f"model{suffix}")
        assert path.read_bytes()[:1] == magic
        again = xgb.Booster()
        again.load_model(str(path))
        assert again.num_boosted_rounds() == 5
    x, y = table.select("x0", "x1", "x2", "x3").to_numpy(), table["outcome"].to_numpy()
    logistic = LogisticRegression().fit(x, y)
    path = T.save_model(logistic, tmp_path / "model.skops")
    assert skops.io.get_untrusted_types(file=path) == []  # loads with the default trusted types only
    assert np.allclose(skops.io.load(path).predict_proba(x), logistic.predict_proba(x))
    gbm = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    text = T.save_model(gbm, tmp_path / "model.txt").read_text()
    assert text.startswith("tree") and lightgbm.Booster(model_file=str(tmp_path / "model.txt")).num_trees() == 5
    for refused in ("model.pkl", "model.joblib", "model.pt", "model.bin", "model"):
        with pytest.raises(InvalidInput, match="pickle"):
            T.save_model(fit.booster, tmp_path / refused)
        assert not (tmp_path / refused).exists()
    with pytest.raises(InvalidInput):
        T.save_model(logistic, tmp_path / "logistic.ubj")
