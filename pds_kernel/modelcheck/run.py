"""The model check itself, run inside a fresh check sandbox with the check environment.

``python -I -m pds_kernel.modelcheck.run JOB OUT``: ``JOB`` is the gate's ``job.json`` (the model,
its format, the declared data table, training and test rows, target; all under the read-only
``/check``), ``OUT`` a fresh writable directory. Writes ``OUT/report.json`` and ``OUT/roc.png``
and exits 0 whatever the verdict; the gate reads both as untrusted input (:mod:`.verdict`).

Steps: load the model without running code (:mod:`.loaders`); rebuild the training and test rows
from the declared table (by PERSON_ID or row number) and count declared persons that are not in
the project's extract (``/data/COHORT.parquet``); run sacroml's structural attack, its worst-case
membership-inference attack and LiRA with a bounded number of shadow models; summarise each
(AUC, its p-value, TPR at low FPR) with sacroml's own recommendation.

A scikit-learn estimator (skops) is also fitted again on the declared training rows, in their
declared order (:func:`refit`): the state it carries that fitting does not make (:func:`extra_state`)
and whether the refitted estimator gives the submitted one's outputs (:func:`reproduction`). The
attacks test the declared rows, so a declaration padded with rows the model never saw (or
missing some it did) makes them test the wrong rows; a model the declared rows re-make was
trained on those rows. A LightGBM text model is trained again the same way from the parameters its
file records after its trees (every seed included: :func:`.loaders.lightgbm_params`), for LiRA's
shadow models too; an XGBoost file records none, so its declaration stays with the checker.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from .loaders import LightGBMClassifier, UnsupportedModel, UntrustedModel, lightgbm_params, load_model

PERSON = "PERSON_ID"
ROW = "row"
#: FPRs at which the report gives the attack's TPR (the ROC curve is interpolated stepwise)
LOW_FPRS = (0.001, 0.01, 0.1)
#: the largest data table the check reads (rows)
MAX_ROWS = 2_000_000
#: largest difference between the outputs of the submitted estimator and of the same estimator
#: fitted on the declared training rows (predicted probabilities; predictions relative to their
#: largest magnitude, at least 1) for the declared rows to count as the rows it was trained on.
#: The same library versions refit on the same rows give the same bits (the check environment pins
#: the workspaces' versions); this leaves room for floating-point summation order only.
REPRODUCED_WITHIN = 1e-4


class BadDeclaration(Exception):
    """The declared rows cannot be rebuilt (the reason is shown to checkers and to the author)."""


def _read_table(path: Path):
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise BadDeclaration(f"{path.name}: a declared table is .parquet or .csv")
    if len(frame) > MAX_ROWS:
        raise BadDeclaration(f"{path.name}: more than {MAX_ROWS} rows")
    return frame


def _positions(frame, selector, what: str) -> np.ndarray:
    """Row positions of ``frame`` chosen by the declared file ``selector`` (PERSON_ID or row)."""
    if PERSON in selector.columns:
        if PERSON not in frame.columns:
            raise BadDeclaration(f"the {what} rows are PERSON_IDs but the data table has no {PERSON} column")
        where = {p: i for i, p in enumerate(frame[PERSON].astype(str))}
        wanted = selector[PERSON].astype(str)
        missing = [p for p in wanted if p not in where]
        if missing:
            raise BadDeclaration(f"{len(missing)} {what} person(s) are not in the data table")
        return np.array([where[p] for p in wanted], dtype=np.int64)
    if ROW in selector.columns:
        rows = selector[ROW].to_numpy()
        if not np.issubdtype(rows.dtype, np.integer) or (rows < 0).any() or (rows >= len(frame)).any():
            raise BadDeclaration(f"the {what} row numbers must be whole numbers from 0 to {len(frame) - 1}")
        return rows.astype(np.int64)
    raise BadDeclaration(f"the {what} file needs a column {PERSON} or {ROW}")


def rebuild_rows(job: dict) -> dict[str, Any]:
    """X and y of the training and test rows, and how many declared persons the extract lacks."""
    frame = _read_table(Path(job["data"]))
    target = job["target"]
    if target not in frame.columns:
        raise BadDeclaration(f"the target column {target!r} is not in the data table")
    features = job.get("features") or [c for c in frame.columns if c not in (target, PERSON)]
    absent = [c for c in features if c not in frame.columns]
    if absent:
        raise BadDeclaration(f"declared feature columns missing from the data table: {', '.join(absent[:5])}")
    train = _positions(frame, _read_table(Path(job["train"])), "training")
    test = _positions(frame, _read_table(Path(job["test"])), "test")
    if len(np.intersect1d(train, test)):
        raise BadDeclaration("the training and test rows overlap")
    if len(train) < 10 or len(test) < 10:
        raise BadDeclaration("the check needs at least 10 training and 10 test rows")
    foreign = 0
    cohort = Path(job.get("cohort") or "")
    used = frame.iloc[np.concatenate([train, test])]
    if PERSON in used.columns and cohort.is_file():
        import pyarrow.parquet as pq

        known = set(pq.read_table(cohort, columns=[PERSON]).column(PERSON).to_pylist())
        foreign = int((~used[PERSON].astype(str).isin(known)).sum())
    try:
        X = frame[features].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise BadDeclaration("the feature columns must be numbers") from None
    y = frame[target].to_numpy()
    return {"X_train": X[train], "y_train": y[train], "X_test": X[test], "y_test": y[test],
            "features": list(features), "foreign_persons": foreign,
            "persons_declared": PERSON in used.columns}


def _sklearn_trees(model) -> list:
    """Every fitted scikit-learn tree inside ``model`` (itself, a forest's, a boosting's)."""
    if hasattr(model, "tree_"):
        return [model]
    found = []
    for est in np.ravel(np.asarray(getattr(model, "estimators_", []), dtype=object)):
        found.extend(_sklearn_trees(est))
    return found


def leaf_check(model, X_train: np.ndarray) -> dict[str, int] | None:
    """How the model's leaves meet the declared training rows: ``unreached`` leaves no declared
    training row falls in (a genuine tree has none: every leaf was made by training rows, in-bag ones
    for a forest), and for one scikit-learn tree ``miscounted`` leaves whose recorded sample count is
    not the number of declared rows in them. None when the model has no trees."""
    X = np.asarray(X_train, dtype=np.float32)
    unreached = miscounted = total = trees = 0
    if isinstance(model, LightGBMClassifier):
        reached = np.asarray(model.booster.predict(X, pred_leaf=True)).reshape(len(X), -1)
        for t, info in enumerate(model.booster.dump_model()["tree_info"]):
            leaves = int(info["num_leaves"])
            trees, total = trees + 1, total + leaves
            unreached += leaves - len(np.unique(reached[:, t]))
    elif hasattr(model, "get_booster"):
        import xgboost as xgb

        booster = model.get_booster()
        frame = booster.trees_to_dataframe()
        reached = np.asarray(booster.predict(xgb.DMatrix(X), pred_leaf=True)).reshape(len(X), -1)
        leaves = frame[frame["Feature"] == "Leaf"]
        for t, nodes in leaves.groupby("Tree"):
            trees, total = trees + 1, total + len(nodes)
            unreached += len(set(nodes["Node"].astype(int)) - set(reached[:, int(t)].astype(int)))
    else:
        estimators = _sklearn_trees(model)
        if not estimators:
            return None
        single = len(estimators) == 1 and estimators[0] is model
        for est in estimators:
            tree = est.tree_
            leaves = np.flatnonzero(tree.children_left == -1)
            counts = np.bincount(est.apply(X), minlength=tree.node_count)
            trees, total = trees + 1, total + len(leaves)
            unreached += int((counts[leaves] == 0).sum())
            if single:
                miscounted += int((counts[leaves] != tree.n_node_samples[leaves]).sum())
    return {"trees": trees, "leaves": total, "unreached": unreached, "miscounted": miscounted}


def refit(model, X_train, y_train):
    """The estimator of ``model`` (same parameters, ``random_state`` included; a LightGBM model's
    recorded parameters) fitted on the declared training rows, in their declared order."""
    from sklearn.base import clone

    return clone(model).fit(X_train, y_train)


#: the formats whose file keeps the recipe to train the model again (:func:`refit`): a scikit-learn
#: estimator's parameters, a LightGBM text model's parameters (:func:`.loaders.lightgbm_params`)
RETRAINED = frozenset({"skops", "lightgbm"})


def extra_state(model, fresh) -> list[str]:
    """Attributes of a loaded scikit-learn model that the same estimator fitted on the declared
    training rows (``fresh``, :func:`refit`) does not have, or whose arrays have another shape:
    state the model carries without being made by fitting (data stored next to a genuine model)."""
    from sklearn.base import BaseEstimator

    out: list[str] = []

    def compare(a, b, where: str, depth: int) -> None:
        if depth > 6 or len(out) >= 20:
            return
        mine, theirs = vars(a), vars(b)
        out.extend(f"{where}{k}" for k in sorted(set(mine) - set(theirs)))
        for key in sorted(set(mine) & set(theirs)):
            x, y = mine[key], theirs[key]
            if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
                if x.shape != y.shape and not hasattr(a, "tree_"):
                    out.append(f"{where}{key} (shape {x.shape}, fitted {y.shape})")
            elif isinstance(x, BaseEstimator) and isinstance(y, BaseEstimator) and type(x) is type(y):
                compare(x, y, f"{where}{key}.", depth + 1)
            elif isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y):
                for i, (u, v) in enumerate(zip(x, y)):
                    u, v = (u[-1], v[-1]) if isinstance(u, tuple) and isinstance(v, tuple) and u else (u, v)
                    if isinstance(u, BaseEstimator) and type(u) is type(v):
                        compare(u, v, f"{where}{key}[{i}].", depth + 1)

    compare(model, fresh, "", 0)
    return out[:20]


def _seeded(model) -> bool:
    """Whether every ``random_state`` of ``model`` and of the estimators inside it is fixed (fitting
    again on the same rows in the same order then makes the same model)."""
    return all(value is not None for key, value in model.get_params(deep=True).items()
               if key == "random_state" or key.endswith("__random_state"))


def _outputs(estimator, X) -> np.ndarray:
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(X), dtype=np.float64)
    return np.asarray(estimator.predict(X), dtype=np.float64)


def _difference(model, other, X) -> float | None:
    """The largest difference of the outputs of two estimators on ``X`` (``None``: other shapes)."""
    mine, theirs = _outputs(model, X), _outputs(other, X)
    if mine.shape != theirs.shape:
        return None
    scale = 1.0 if hasattr(model, "predict_proba") else max(1.0, float(np.max(np.abs(mine), initial=0.0)))
    difference = float(np.max(np.abs(mine - theirs), initial=0.0)) / scale
    return difference if np.isfinite(difference) else None


def reproduction(model, fresh, X, X_train, y_train) -> dict[str, Any]:
    """Whether ``fresh`` (:func:`refit` on ``X_train``, ``y_train``) gives the outputs of the submitted
    ``model`` on the declared rows ``X`` (training and test): ``difference`` (the largest, ``None``
    when the outputs do not even have the same shape: other classes), ``reproduced`` (within
    :data:`REPRODUCED_WITHIN`) and ``seeded``: whether a refit on the same rows makes the same model
    (every ``random_state`` fixed, or a second refit giving the first one's outputs: a solver that
    draws nothing), so that a difference can only come from the rows."""
    difference = _difference(model, fresh, X)
    reproduced = difference is not None and difference <= REPRODUCED_WITHIN
    seeded = not isinstance(model, LightGBMClassifier) and _seeded(model)  # LightGBM's seeds: refit twice
    if not reproduced and not seeded:
        second = _difference(fresh, refit(model, X_train, y_train), X)
        seeded = second is not None and second <= REPRODUCED_WITHIN
    return {"rows": int(len(X)), "difference": difference, "reproduced": reproduced, "seeded": seeded}


def _not_retrainable(model) -> str:
    """Why LiRA's shadow models cannot be trained like ``model`` (empty: they can)."""
    if not isinstance(model, LightGBMClassifier):
        return ""
    try:
        lightgbm_params(model.booster)
    except UnsupportedModel as exc:
        return f"the model cannot be retrained from its file: {exc}"
    return ""


def _reproduce(report: dict[str, Any], model, estimator: bool, rows: dict[str, Any]) -> None:
    """Train the model again on the declared rows (:func:`refit`) and report what differs: a
    scikit-learn ``estimator``'s state fitting does not make (``extra_state``), and ``reproduction``."""
    try:
        fresh = refit(model, rows["X_train"], rows["y_train"])
    except UnsupportedModel as exc:  # the file keeps a recipe the platform will not run: a checker decides
        report.setdefault("skipped", {})["reproduction"] = str(exc)
        return
    except Exception as exc:
        if estimator:
            report["extra_state"] = [f"the estimator could not be refitted to compare ({type(exc).__name__})"]
        else:
            report.setdefault("skipped", {})["reproduction"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return
    if estimator:
        report["extra_state"] = extra_state(model, fresh)
    try:
        report["reproduction"] = reproduction(model, fresh, np.concatenate([rows["X_train"], rows["X_test"]]),
                                              rows["X_train"], rows["y_train"])
    except Exception as exc:  # reported: the verdict cannot pass without it
        report.setdefault("skipped", {})["reproduction"] = f"{type(exc).__name__}: {str(exc)[:200]}"


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, level: float) -> float:
    """The highest TPR the attack reaches while its FPR is at most ``level``."""
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    ok = fpr <= level + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def _instances(output: dict) -> list[dict]:
    return list(output.get("attack_experiment_logger", {}).get("attack_instance_logger", {}).values())


def summarise_mia(output: dict, levels=LOW_FPRS) -> dict[str, Any]:
    """AUC (mean over repetitions), the smallest p-value of AUC > 0.5, TPR at low FPR (worst)."""
    instances = _instances(output)
    aucs = [float(i["AUC"]) for i in instances]
    pvals = [float(i["P_HIGHER_AUC"]) for i in instances]
    tprs = {f"{level:g}": max(tpr_at(i["fpr"], i["tpr"], level) for i in instances) for level in levels}
    return {"auc": float(np.mean(aucs)), "auc_max": float(np.max(aucs)), "p_value": float(np.min(pvals)),
            "significant_share": float(np.mean([p < 0.05 for p in pvals])), "repetitions": len(instances),
            "tpr_at_fpr": tprs, "roc": {"fpr": [float(x) for x in instances[0]["fpr"]][:2000],
                                         "tpr": [float(x) for x in instances[0]["tpr"]][:2000]}}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist()) if value.size <= 1 else None
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def recommendation(outputs: dict[str, dict], model) -> dict[str, list[str]]:
    """sacroml's own recommendation (its three buckets) over the attacks' outputs."""
    import builtins

    from sacroml.attacks import attack_report_formatter as formatter

    # sacroml opens its rules file "r+" (read-write) to read it; the check environment is
    # read-only in the sandbox: the module reads it with "r" instead (same content).
    formatter.open = lambda path, mode="r", **kw: builtins.open(path, "r" if mode == "r+" else mode, **kw)
    FinalRecommendationModule = formatter.FinalRecommendationModule
    report = {name: out for name, out in outputs.items() if "attack_experiment_logger" in out}
    report["model_name"] = type(model).__name__
    report["model_params"] = {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str))}
    module = FinalRecommendationModule(report)
    module.process_dict()
    immediate, against, release = module.get_recommendation()
    return {"immediate_rejection": [str(x) for x in immediate], "support_rejection": [str(x) for x in against],
            "support_release": [str(x) for x in release]}


def plot_roc(curves: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=80)
    ax.plot([1e-3, 1], [1e-3, 1], "k--", label="no better than chance")
    for name, roc in curves.items():
        ax.step(np.maximum(roc["fpr"], 1e-3), np.maximum(roc["tpr"], 1e-3), where="post", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("membership inference ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def attack(job: dict, out: Path) -> dict[str, Any]:
    """Everything the check finds about the model of ``job`` (see the module docstring)."""
    from sacroml.attacks.likelihood_attack import LIRAAttack
    from sacroml.attacks.structural_attack import StructuralAttack
    from sacroml.attacks.target import Target
    from sacroml.attacks.worst_case_attack import WorstCaseAttack

    report: dict[str, Any] = {"status": "ok", "format": job["format"]}
    try:
        model = load_model(Path(job["model"]), job["format"])
    except UntrustedModel as exc:
        return {**report, "status": "untrusted", "reason": str(exc)}
    except UnsupportedModel as exc:
        return {**report, "status": "unsupported", "reason": str(exc)}
    rows = rebuild_rows(job)
    report.update(model=type(model).__name__, n_train=len(rows["y_train"]), n_test=len(rows["y_test"]),
                  n_features=len(rows["features"]), foreign_persons=rows["foreign_persons"],
                  persons_declared=rows["persons_declared"])
    try:
        leaves = leaf_check(model, rows["X_train"])
    except Exception as exc:  # reported: the verdict cannot pass without it
        leaves = None
        report.setdefault("skipped", {})["leaves"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if leaves is not None:
        report["leaves"] = leaves
    if job["format"] in RETRAINED:
        _reproduce(report, model, job["format"] == "skops", rows)
    report["params"] = _plain({k: v for k, v in model.get_params().items()
                               if isinstance(v, (int, float, str, bool)) and k != "booster"})
    target = Target(model=model, X_train=rows["X_train"], y_train=rows["y_train"],
                    X_test=rows["X_test"], y_test=rows["y_test"])
    work = str(out / "sacroml")
    outputs, timings, skipped = {}, {}, {}
    attacks = {"structural": lambda: StructuralAttack(output_dir=work, write_report=False),
               "worst_case": lambda: WorstCaseAttack(output_dir=work, write_report=False,
                                                     n_reps=int(job["worst_case_reps"]), n_dummy_reps=1)}
    why_not = _not_retrainable(model)
    if job.get("shadow_models", 0) > 0 and not why_not:
        attacks["lira"] = lambda: LIRAAttack(output_dir=work, write_report=False,
                                             n_shadow_models=int(job["shadow_models"]))
    else:
        skipped["lira"] = why_not or "no shadow models asked"
    for name, make in attacks.items():
        start = time.monotonic()
        try:
            outputs[name] = make().attack(target) or {}
        except Exception as exc:  # an attack that cannot run is reported, never fatal to the others
            skipped[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
        timings[name] = round(time.monotonic() - start, 2)
        if name in outputs and not outputs[name]:
            skipped[name] = "sacroml found the target not attackable"
            del outputs[name]
    report["seconds"] = timings
    report["skipped"] = {**report.get("skipped", {}), **skipped}
    if "structural" in outputs:
        report["structural"] = _plain(outputs["structural"].get("metadata", {}).get("global_metrics", {}))
    curves = {}
    for name in ("worst_case", "lira"):
        if name in outputs and _instances(outputs[name]):
            summary = summarise_mia(outputs[name], tuple(job.get("low_fprs") or LOW_FPRS))
            curves[name] = summary.pop("roc")
            report[name] = _plain(summary)
    report["recommendation"] = recommendation({k: v for k, v in outputs.items() if k != "structural"}, model)
    if curves:
        plot_roc(curves, out / "roc.png")
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text())
    out = Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    try:
        report = attack(job, out)
    except BadDeclaration as exc:
        report = {"status": "bad-declaration", "reason": str(exc)}
    except Exception as exc:  # reported to the gate: the model goes to review with the reason
        traceback.print_exc()
        report = {"status": "error", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    (out / "report.json").write_text(json.dumps(report, allow_nan=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
