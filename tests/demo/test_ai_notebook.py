"""The machine-learning example notebook (02) runs unchanged in a real sandbox on a small demo extract.

The demo's own steps (synthetic delivery, ingestion, registry, extract build) make a two-year
extract of the diabetes cohort; the notebook is executed through ``pds sandbox exec`` in alice's
``diabetes-t2`` sandbox with a two-worker Dask cluster inside it, exactly as a researcher would run
it. The test then checks what it left in the home against the extract, outside the sandbox: the
saved model loads from XGBoost's own format, and its AUC on the test persons, recomputed here
from features built with polars (the notebook built them with Dask), is the AUC it printed."""

from __future__ import annotations

import json
import re
from datetime import date

import polars as pl
import pytest
from demo_support import build_demo, execute_example

from pds_kernel.extract.layout import read_table
from pds_kernel.runtime import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.functional]

NOTEBOOK = "02-one-year-outcome-xgboost-dask.ipynb"
PROJECT, USER = "diabetes-t2", "alice"


@pytest.fixture(scope="module")
def demo_extract(tmp_path_factory):
    """A demo directory with both years' extracts; diabetes-t2 gets 2 Dask workers and 2 cores."""
    return build_demo(tmp_path_factory.mktemp("ai") / "demo", patients=1500, years=(2022, 2023), seed=11,
                      resources={PROJECT: {"cpu": 2, "memory_mb": 3072, "dask_workers": 2}})


def _printed(executed: dict) -> str:
    return "".join("".join(o.get("text", "")) for c in executed["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o["output_type"] == "stream")


def test_ml_notebook_trains_on_the_sandbox_cluster_and_saves_a_safe_model(demo_extract, monkeypatch):
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    from pds_kernel import features as F
    from pds_kernel import workspace as ws
    root, config = demo_extract
    home, executed = execute_example(root, config, PROJECT, USER, NOTEBOOK)
    printed = _printed(executed)
    trained = re.search(r"trained on (\d+) persons, (\d+) features, (\d+) Dask worker", printed)
    assert trained and trained.group(3) == "2", printed  # the sandbox's cluster, both workers
    tested = re.search(r"test: (\d+) persons, (\d+) with the outcome, AUC ([0-9.]+)", printed)
    assert tested, printed

    results = home / "examples" / "results"
    assert (results / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (results / "model.ubj").read_bytes()[:1] == b"{"  # UBJSON object, not a pickle (b"\x80")
    train_ids = pl.read_csv(results / "model_train_persons.csv").get_column("PERSON_ID").to_list()
    test_ids = pl.read_csv(results / "model_test_persons.csv").get_column("PERSON_ID").to_list()
    assert len(train_ids) == int(trained.group(1)) and len(test_ids) == int(tested.group(1))
    assert not set(train_ids) & set(test_ids)

    # Outside the sandbox: the same features with polars, the saved model, the same AUC.
    extract = root / "projects" / PROJECT / "extract"
    monkeypatch.setenv("PDS_DATA_DIR", str(extract))
    cohort = set(pl.read_parquet(extract / "COHORT.parquet").get_column("PERSON_ID").to_list())
    deaths = read_table(extract, "KI_CCI_R")
    died_before = set(deaths.filter(pl.col("BEN_DCD_DTE") < date(2023, 1, 1)).get_column("PERSON_ID").to_list())
    assert set(train_ids) | set(test_ids) == cohort - died_before
    booster = xgb.Booster()
    booster.load_model(str(results / "model.ubj"))
    assert booster.num_features() == int(trained.group(2))
    features = ws.person_features(F.Window.year(2022)).collect()
    outcome = F.outcome_per_person(F.Window.year(2023), stays=ws.open_table("T_MCOaaC"),
                                   deaths=ws.open_table("KI_CCI_R")).collect()
    rows = (pl.DataFrame({"PERSON_ID": test_ids}).join(features, on="PERSON_ID", how="left")
            .join(outcome, on="PERSON_ID", how="left").with_columns(pl.col("outcome").fill_null(0)))
    data = xgb.DMatrix(rows.select(booster.feature_names).to_numpy().astype("float32"),
                       feature_names=booster.feature_names)
    y = rows.get_column("outcome").to_numpy()
    assert int(y.sum()) == int(tested.group(2))
    assert abs(roc_auc_score(y, booster.predict(data)) - float(tested.group(3))) < 1e-3

    # The platform's own check of the saved model, submitted as the notebook's (commented) request
    # would: the gate attacks it in a fresh sandbox of the project with the declared rows.
    from pds_kernel.airlock.service import AirlockService
    from pds_kernel.settings import load_settings

    runtime = Runtime(load_settings(config))
    try:
        service = AirlockService(runtime)
        declaration = {"data": "examples/results/model_data.parquet", "target": "outcome",
                       "train": "examples/results/model_train_persons.csv",
                       "test": "examples/results/model_test_persons.csv"}
        view = service.create(USER, PROJECT, [("model.ubj", open(results / "model.ubj", "rb"))],
                              "one-year risk model", {"models": {"model.ubj": declaration}})
        checked = service.get_request("olga", view.id).files[0]
    finally:
        runtime.close()
    report = checked.check["model_check"]
    print("model check:", json.dumps({k: v for k, v in report.items() if k != "plot_png"}))
    assert report["status"] == "ok" and report["model"] == "XGBClassifier", report
    assert report["n_train"] == int(trained.group(1)) and report["n_test"] == int(tested.group(1))
    assert report["foreign_persons"] == 0 and report["lira"]["auc"] is not None and report["plot_png"]
    assert checked.check_status in {"review", "fail"}
