"""The platform's model check: its wall time in a fresh check sandbox, against the same check run
directly in the check environment without a sandbox (what the sandbox costs), on the example's
size (notebook 02 on the demo: 125 training and 53 test persons, 56 features, the notebook's
XGBoost parameters, 100 rounds) and on a larger table; and a LightGBM model of the larger table,
which the check also trains again on the declared rows (the declaration's refit) and for LiRA's
shadow models, where an XGBoost file's shadow models are built from the parameters its trees show.

Ours: ``AirlockService.create`` of the model with its declaration, timed end to end (staging,
checks, snapshot, sandbox, sacroml: structural, worst-case with 5 repetitions, LiRA with 16 shadow
models), and the check's own wall time as the gate measured it. Peer: ``python -m
pds_kernel.modelcheck.run`` over the same job in the check environment, no sandbox.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = 56
SIZES_QUICK = [(125, 53, "xgboost")]
SIZES = [(125, 53, "xgboost"), (3500, 1500, "xgboost"), (3500, 1500, "lightgbm")]
#: the model's file and its format, as the gate names it
FILES = {"xgboost": ("model.ubj", "xgboost-ubj"), "lightgbm": ("model.txt", "lightgbm")}
#: besides COHORT.parquet, the published extract holds a table of this size (re-hashed at each check)
EXTRACT_MIB = 512


def _rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, size=(n, FEATURES)).astype(float)
    y = (X[:, 0] + X[:, 1] + rng.normal(scale=2.0, size=n) > 5).astype(int)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(FEATURES)])
    frame["outcome"] = y
    frame.insert(0, "PERSON_ID", [f"{i:064x}" for i in range(n)])
    return frame


def _model(frame: pd.DataFrame, n_train: int, path: Path, kind: str) -> float:
    """Train the model of ``kind`` on the first ``n_train`` rows (100 rounds) and save it: seconds."""
    rows = frame.iloc[:n_train]
    X, y = rows.iloc[:, 1:-1].to_numpy(), rows.outcome.to_numpy()
    start = time.perf_counter()
    if kind == "lightgbm":
        import lightgbm as lgb

        lgb.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1},
                  lgb.Dataset(X, label=y), 100).save_model(str(path))
        return time.perf_counter() - start
    import xgboost as xgb

    from pds_kernel.training import DEFAULT_PARAMS

    params = {k: v for k, v in DEFAULT_PARAMS.items() if k not in ("eval_metric", "seed")}
    xgb.train(params, xgb.DMatrix(X, label=y), 100).save_model(path)
    return time.perf_counter() - start


def _case(out_dir: Path, n_train: int, n_test: int, kind: str) -> dict:
    from pds_kernel.airlock.limits import AirlockLimits
    from pds_kernel.airlock.service import AirlockService
    from pds_kernel.modelcheck.sandbox import check_python
    from pds_kernel.registry import Registry, Role
    from pds_kernel.runtime import Runtime
    from pds_kernel.settings import Paths, Settings

    root = out_dir / f"case-{n_train}-{kind}"
    model_name, fmt = FILES[kind]
    paths = Paths(**{name: root / name for name in Paths.__dataclass_fields__})
    for name in Paths.__dataclass_fields__:
        getattr(paths, name).mkdir(parents=True, exist_ok=True)
    settings = Settings(paths=paths)
    frame = _rows(n_train + n_test)
    (paths.projects / "bench" / "extract").mkdir(parents=True)
    frame[["PERSON_ID"]].to_parquet(paths.projects / "bench" / "extract" / "COHORT.parquet")
    _large_table(paths.projects / "bench" / "extract" / "CLAIMS.parquet", EXTRACT_MIB)
    results = paths.homes / "bench" / "alice" / "results"
    results.mkdir(parents=True)
    frame.to_parquet(results / "data.parquet")
    frame[["PERSON_ID"]].iloc[:n_train].to_csv(results / "train.csv", index=False)
    frame[["PERSON_ID"]].iloc[n_train:].to_csv(results / "test.csv", index=False)
    train_seconds = _model(frame, n_train, results / model_name, kind)
    runtime = Runtime(settings)
    # published as a build publishes it: the check mounts only the extract the audit trail records
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from published import publish_by_hand

    publish_by_hand(runtime, "bench")
    try:
        reg = Registry.from_runtime(runtime)
        for user in ("alice", "olga"):
            reg.upsert_user("bench", user)
        reg.upsert_project("bench", "bench", title="bench", start_date=date(2020, 1, 1), end_date=date(2099, 1, 1))
        reg.add_member("bench", "bench", "alice", Role.RESEARCHER, date(2099, 1, 1))
        reg.add_member("bench", "bench", "olga", Role.OUTPUT_CHECKER, date(2099, 1, 1))
        service = AirlockService(runtime, limits=replace(AirlockLimits(), auto_release=False), registry=reg)
        declaration = {"data": "results/data.parquet", "target": "outcome", "train": "results/train.csv",
                       "test": "results/test.csv"}
        checks = _timed_extract_checks()
        start = time.perf_counter()
        try:
            view = service.create("alice", "bench", [(model_name, io.BytesIO((results / model_name).read_bytes()))],
                                  "bench", {"models": {model_name: declaration}})
        finally:
            checks.undo()
        ours = time.perf_counter() - start
        report = service.get_request("olga", view.id).files[0].check["model_check"]
    finally:
        runtime.close()
    job = {"model": str(results / model_name), "format": fmt, "data": str(results / "data.parquet"),
           "train": str(results / "train.csv"), "test": str(results / "test.csv"), "target": "outcome",
           "cohort": str(paths.projects / "bench" / "extract" / "COHORT.parquet"),
           "shadow_models": settings.model_check.shadow_models,
           "worst_case_reps": settings.model_check.worst_case_reps}
    (root / "job.json").write_text(json.dumps(job))
    start = time.perf_counter()
    subprocess.run([str(check_python(settings)), "-I", "-m", "pds_kernel.modelcheck.run", str(root / "job.json"),
                    str(root / "peer-out")], check=True, capture_output=True, timeout=1800)
    peer = time.perf_counter() - start
    return {"ours": ours, "check": report["wall_seconds"], "peer": peer, "train": train_seconds,
            "attacks": report.get("seconds", {}), "lira_auc": (report.get("lira") or {}).get("auc"),
            "status": report["status"], "extract_checks": checks.seconds,
            "reproduced": (report.get("reproduction") or {}).get("reproduced")}


class _timed_extract_checks:
    """Times every check of the extract (``mount_check.open_and_check``) until :meth:`undo`."""

    def __init__(self):
        from pds_kernel.extract import mount_check

        self.module, self.real, self.seconds = mount_check, mount_check.open_and_check, []

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.real(*args, **kwargs)
            finally:
                self.seconds.append(time.perf_counter() - start)

        mount_check.open_and_check = timed

    def undo(self) -> None:
        self.module.open_and_check = self.real


def _large_table(path: Path, mib: int) -> None:
    """A table of random numbers of about ``mib`` MiB (uncompressed: they do not compress)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    n = (mib << 20) // 8
    pq.write_table(pa.table({"AMOUNT": rng.random(n)}), path, compression="none")


def run(out_dir: Path, quick: bool) -> dict:
    rows, notes = [], []
    for n_train, n_test, kind in (SIZES_QUICK if quick else SIZES):
        r = _case(out_dir, n_train, n_test, kind)
        size = f"{n_train} training + {n_test} test rows × {FEATURES} features"
        label = "" if kind == "xgboost" else f" ({kind})"
        refit = "" if r["reproduced"] is None else f"; the declared rows re-made the model: {r['reproduced']}"
        rows.append({"name": f"model check{label}, {n_train + n_test} rows", "value": r["check"], "unit": "s",
                     "peer": "same check, check environment, no sandbox", "peer_value": r["peer"],
                     "ratio": r["peer"] / r["check"], "note": f"{size}; LiRA AUC {r['lira_auc']:.3f}{refit}"})
        rows.append({"name": f"submission with the check{label}, {n_train + n_test} rows", "value": r["ours"],
                     "unit": "s", "peer": f"training the model ({kind}, 100 rounds)", "peer_value": r["train"],
                     "ratio": r["train"] / r["ours"], "note": "AirlockService.create end to end"})
        if kind != "xgboost":
            notes.append(f"{n_train + n_test} rows, {kind}: attacks " + ", ".join(
                f"{k} {v:.1f} s" for k, v in r["attacks"].items()))
            continue
        done = r["extract_checks"]
        rows.append({"name": f"extract checks in a model submission, {EXTRACT_MIB} MiB extract", "value": sum(done),
                     "unit": "s", "peer": "two checks: the gate's, then the model check's (before)",
                     "peer_value": 2 * done[0], "ratio": 2 * done[0] / sum(done),
                     "note": f"{len(done)} check(s) of the extract, each a full re-hash (timed open_and_check)"})
        notes.append(f"{n_train + n_test} rows: attacks " + ", ".join(f"{k} {v:.1f} s" for k, v in r["attacks"].items()))
    markdown = ("Ours: the gate's check in a fresh bubblewrap sandbox of the project (check environment "
                "`.venv-modelcheck`, extract and snapshot read-only, no network), timed by the gate; peer: "
                "`python -m pds_kernel.modelcheck.run` on the same job without a sandbox. The difference is "
                "the sandbox's start (launcher, bubblewrap, seccomp); the rest is importing sacroml, "
                "scikit-learn, XGBoost and matplotlib (about 7 s on an idle machine) and the attacks. "
                "Attack times inside the sandbox: " + "; ".join(notes) + f". Python {sys.version.split()[0]}.")
    return {"title": "Model check: sacroml in a fresh check sandbox vs the same check without a sandbox",
            "rows": rows, "markdown": markdown}
