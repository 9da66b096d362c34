"""Support of the model-check tests (tests/ai/test_model_check.py, tests/security/test_model_export.py).

A project ``diab-2024`` (alice researcher, olga and omar checkers) and ``other-2024`` (mallory),
each with a published extract holding only ``COHORT.parquet`` (what the check reads of it), and
demo-like person rows: a few features, a binary outcome that depends on two of them, PERSON_IDs of
64 hex characters. Models are trained here, for real, and saved in the formats workspaces use.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pds_kernel.airlock.limits import AirlockLimits
from pds_kernel.airlock.service import AirlockService
from pds_kernel.registry import Registry, Role

PROJECT, OTHER = "diab-2024", "other-2024"
FEATURES = [f"f{i}" for i in range(6)]


def people(project: str, n: int, seed: int) -> pd.DataFrame:
    """``n`` persons of ``project``: PERSON_ID, features f0..f5, outcome (noisy, from f0 and f1)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    y = (X[:, 0] + 0.8 * X[:, 1] + rng.normal(scale=1.0, size=n) > 0.5).astype(int)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["outcome"] = y
    frame.insert(0, "PERSON_ID", [f"{project}-{seed}-{i}".encode().hex().ljust(64, "0")[:64] for i in range(n)])
    return frame


def make_service(runtime) -> AirlockService:
    reg = Registry.from_runtime(runtime)
    for name in ("alice", "olga", "omar", "mallory"):
        reg.upsert_user("setup", name)
    far = date(2099, 12, 31)
    for pid in (PROJECT, OTHER):
        reg.upsert_project("setup", pid, title=pid, start_date=date(2020, 1, 1), end_date=far)
    reg.add_member("setup", PROJECT, "alice", Role.RESEARCHER, far)
    reg.add_member("setup", PROJECT, "olga", Role.OUTPUT_CHECKER, far)
    reg.add_member("setup", PROJECT, "omar", Role.OUTPUT_CHECKER, far)
    reg.add_member("setup", OTHER, "mallory", Role.RESEARCHER, far)
    from dataclasses import replace
    return AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=reg)


def publish_cohort(settings, project: str, frame: pd.DataFrame) -> None:
    """The project's extract: its COHORT.parquet lists the persons of ``frame``, published (a new
    build, recorded in the audit trail) as ``pds extract build`` does: the model check mounts only
    the extract published last (pds_kernel/extract/mount_check.py)."""
    from published import publish_by_hand

    from pds_kernel.runtime import Runtime

    extract = settings.paths.projects / project / "extract"
    if extract.is_symlink():  # published before: the next build replaces it
        extract.unlink()
    extract.mkdir(parents=True, exist_ok=True)
    frame[["PERSON_ID"]].to_parquet(extract / "COHORT.parquet")
    runtime = Runtime(settings)
    try:
        publish_by_hand(runtime, project)
    finally:
        runtime.close()


def home(settings, project: str, user: str) -> Path:
    path = settings.paths.homes / project / user
    (path / "results").mkdir(parents=True, exist_ok=True)
    return path


def write_rows(home_dir: Path, frame: pd.DataFrame, train: pd.Series, test: pd.Series, prefix: str = "model") -> dict:
    """The data table and the training/test persons in ``home_dir/results``; the declaration."""
    frame.to_parquet(home_dir / "results" / f"{prefix}_data.parquet")
    pd.DataFrame({"PERSON_ID": train}).to_csv(home_dir / "results" / f"{prefix}_train.csv", index=False)
    pd.DataFrame({"PERSON_ID": test}).to_csv(home_dir / "results" / f"{prefix}_test.csv", index=False)
    return {"data": f"results/{prefix}_data.parquet", "target": "outcome",
            "train": f"results/{prefix}_train.csv", "test": f"results/{prefix}_test.csv"}


def overfit_tree(frame: pd.DataFrame, train_rows: int = 40) -> bytes:
    """A fully grown decision tree on a few rows (memorises them), as skops bytes."""
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    rows = frame.iloc[:train_rows]
    model = DecisionTreeClassifier(random_state=0).fit(rows[FEATURES].to_numpy(), rows["outcome"].to_numpy())
    return sio.dumps(model)


def reasonable_tree(frame: pd.DataFrame, train_rows: int = 300) -> bytes:
    """A shallow decision tree with large leaves, as skops bytes."""
    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    rows = frame.iloc[:train_rows]
    model = DecisionTreeClassifier(max_depth=2, min_samples_leaf=40, random_state=0)
    model.fit(rows[FEATURES].to_numpy(), rows["outcome"].to_numpy())
    return sio.dumps(model)


def reasonable_xgboost(frame: pd.DataFrame, train_rows: int) -> bytes:
    """A small, regularised XGBoost model (the notebook's kind), as UBJ bytes."""
    import tempfile

    import xgboost as xgb

    rows = frame.iloc[:train_rows]
    model = xgb.XGBClassifier(n_estimators=15, max_depth=2, learning_rate=0.3, min_child_weight=20,
                              subsample=1.0, random_state=0)
    model.fit(rows[FEATURES].to_numpy(), rows["outcome"].to_numpy())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.ubj"
        model.save_model(path)
        return path.read_bytes()


def submit(service: AirlockService, name: str, data: bytes, declaration: dict | None, author: str = "alice",
           project: str = PROJECT, context: dict | None = None):
    ctx = dict(context or {})
    if declaration is not None:
        ctx["models"] = {name: declaration}
    return service.create(author, project, [(name, io.BytesIO(data))], "model for the paper", ctx)


def model_file(view):
    return next(f for f in view.files if f.kind == "model")
