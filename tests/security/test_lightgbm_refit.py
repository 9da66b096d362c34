"""Red team: a LightGBM model trained again from the parameters its own file records (pds_kernel.modelcheck.run):
the same rows re-make it, other rows do not, and parameters that name files or machines are never
run. In process with the real LightGBM (the check sandbox runs the same code: the attacks through
the gate are in tests/security/test_model_data_attacks.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pds_kernel.modelcheck.loaders import UnsupportedModel, lightgbm_params, load_lightgbm
from pds_kernel.modelcheck.run import RETRAINED, refit, reproduction

lgb = pytest.importorskip("lightgbm")

RNG = np.random.default_rng(3)
X = RNG.normal(size=(400, 5))
Y = (X[:, 0] + RNG.normal(size=400) > 0).astype(int)


@pytest.fixture(scope="module")
def model_text() -> str:
    """Bagged trees (drawn rows and columns) fitted on the first 200 rows, as LightGBM writes them."""
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, subsample=0.7, subsample_freq=1,
                               colsample_bytree=0.8, verbose=-1).fit(X[:200], Y[:200])
    return model.booster_.model_to_string()


def _loaded(text: str, tmp_path):
    path = tmp_path / "gbm.txt"
    path.write_text(text)
    return load_lightgbm(path)


def test_the_rows_it_was_trained_on_re_make_it_and_padded_rows_do_not(model_text, tmp_path):
    model = _loaded(model_text, tmp_path)
    assert "lightgbm" in RETRAINED and "xgboost-json" not in RETRAINED
    same = reproduction(model, refit(model, X[:200], Y[:200]), X, X[:200], Y[:200])
    assert same["reproduced"] and same["difference"] == 0.0
    padded = reproduction(model, refit(model, X[:300], Y[:300]), X, X[:300], Y[:300])
    assert not padded["reproduced"] and padded["seeded"] and padded["difference"] > 0.01  # -> fail (verdict)


@pytest.mark.parametrize("line,words", [
    ("[forcedsplits_filename: /etc/hostname]", "forcedsplits_filename"),
    ("[input_model: /check/job.json]", "input_model"),
    ("[forcedbins_filename: ../../x]", "forcedbins_filename"),
    ("[valid: /etc/hostname,/check/job.json]", "valid"),           # LightGBM reads a list from a,b
    ("[metric: binary_logloss,/etc/passwd]", "metric"),
    ("[objective: binary /etc/passwd]", "objective"),
    ("[machines: 10.0.0.1:12400,10.0.0.2:12400]", "machines"),
    ("[num_machines: 2]", "across 2 machines"),
    ("[device_type: gpu]", "gpu device"),
])
def test_parameters_naming_files_machines_or_devices_are_never_run(model_text, tmp_path, line, words):
    """The author edits the parameters section (the gate reads it as text): the refit refuses them,
    and the checker is told the declaration was not verified (verdict: review)."""
    key = line[1:line.index(":")]
    lines = [ln for ln in model_text.splitlines() if not ln.startswith(f"[{key}:")]
    at = lines.index("parameters:") + 1
    model = _loaded("\n".join([*lines[:at], line, *lines[at:]]) + "\n", tmp_path)
    with pytest.raises(UnsupportedModel, match=words):
        lightgbm_params(model.booster)


def test_the_refit_runs_on_the_check_sandbox_threads(model_text, tmp_path):
    """A file asking for 512 threads gets the sandbox's processors at most."""
    lines = [ln if not ln.startswith("[num_threads:") else "[num_threads: 512]" for ln in model_text.splitlines()]
    assert "[num_threads: 512]" in lines
    params = lightgbm_params(_loaded("\n".join(lines) + "\n", tmp_path).booster)
    assert params["num_threads"] == min(512, os.cpu_count() or 1) and params["verbose"] == -1

