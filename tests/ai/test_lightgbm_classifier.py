"""The check's LightGBM classifier trains again from the parameters its file records: its own seeds
for the declaration's refit, a seed of LiRA's own for each shadow model (real LightGBM, in process)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from pds_kernel.modelcheck.loaders import load_lightgbm

lgb = pytest.importorskip("lightgbm")


def test_a_shadow_model_draws_its_own_rows_and_a_refit_the_files_seeds(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
    fitted = lgb.LGBMClassifier(n_estimators=15, subsample=0.6, subsample_freq=1, verbose=-1).fit(X, y)
    (tmp_path / "m.txt").write_text(fitted.booster_.model_to_string())
    model = load_lightgbm(tmp_path / "m.txt")
    refit = clone(model).fit(X, y).predict_proba(X)
    assert np.array_equal(refit, model.predict_proba(X))  # the file's seeds: the same model
    shadow = [clone(model).set_params(random_state=seed).fit(X, y).predict_proba(X) for seed in (1, 1, 2)]
    assert np.array_equal(shadow[0], shadow[1]) and not np.array_equal(shadow[0], shadow[2])
    assert not np.array_equal(shadow[0], refit) and list(clone(model).fit(X, y).classes_) == [0, 1]
