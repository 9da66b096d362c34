"""What the check sandbox reported, as the gate's findings (pure: no I/O).

The report is read as untrusted input: only the fields below are kept, each of its expected type
(numbers finite, texts cut to :data:`MAX_TEXT`); a report missing what the verdict needs gives
``review``, never ``pass``. Rules (thresholds from ``settings.model_check``):

- ``model-attack`` **fail**: a membership-inference attack (worst-case or LiRA) whose mean AUC
  exceeds ``max_auc`` with p < ``p_value``, or whose TPR at FPR <= ``low_fpr`` exceeds
  ``max_tpr_at_low_fpr`` (with at least ``1 / low_fpr`` test rows; with fewer, that FPR cannot be
  measured and the same finding is ``review``); the declared rows name persons outside the project's extract; the
  model file names untrusted types (skops); a seeded scikit-learn estimator that the declared
  training rows do not re-make (:func:`_reproduction_findings`).
- ``model-attack`` **review**: a structural risk (k-anonymity of leaves, class disclosure,
  residual degrees of freedom, hyper-parameters, small groups); sacroml's own recommendation
  supports rejection; an attack that could not run; an unseeded scikit-learn estimator the
  declared rows do not re-make, or one the check could not compare.
- ``model-check`` **review**: an unsupported model type, a declaration the check could not use, a
  check that failed or timed out, no declaration at all.
- ``model-attack`` **pass**: every attack ran and none of the above.
"""

from __future__ import annotations

import math
from typing import Any

from ..airlock.checks.result import Finding, Status

MAX_TEXT = 500
STRUCTURAL_RISKS = {
    "k_anonymity_risk": "some leaves or equivalence classes hold fewer training rows than the threshold",
    "class_disclosure_risk": "some leaves disclose the class of every training row in them",
    "dof_risk": "too few residual degrees of freedom (parameters close to training rows)",
    "unnecessary_risk": "hyper-parameters SACRO-ML rates as unnecessarily risky",
    "smallgroup_risk": "some leaves hold a class with fewer rows than the threshold",
}
MIA = {"worst_case": "worst-case attack", "lira": "LiRA"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: Any) -> str:
    return str(value)[:MAX_TEXT]


def _texts(value: Any, limit: int = 20) -> list[str]:
    return [_text(v) for v in value[:limit]] if isinstance(value, list) else []


def clean_report(raw: dict[str, Any]) -> dict[str, Any]:
    """The report's known fields, typed and bounded."""
    out: dict[str, Any] = {"status": _text(raw.get("status", "error"))[:40]}
    for key in ("reason", "format", "model"):
        if key in raw:
            out[key] = _text(raw[key])
    for key in ("n_train", "n_test", "n_features", "foreign_persons"):
        number = _number(raw.get(key))
        if number is not None:
            out[key] = int(number)
    if isinstance(raw.get("leaves"), dict):
        out["leaves"] = {k: int(_number(raw["leaves"].get(k)) or 0)
                         for k in ("trees", "leaves", "unreached", "miscounted")}
    if isinstance(raw.get("extra_state"), list):
        out["extra_state"] = _texts(raw["extra_state"])
    made = raw.get("reproduction")
    if isinstance(made, dict) and isinstance(made.get("reproduced"), bool) and isinstance(made.get("seeded"), bool):
        out["reproduction"] = {"rows": int(_number(made.get("rows")) or 0), "difference": _number(made.get("difference")),
                               "reproduced": made["reproduced"], "seeded": made["seeded"]}
    if isinstance(raw.get("persons_declared"), bool):
        out["persons_declared"] = raw["persons_declared"]
    if isinstance(raw.get("params"), dict):
        out["params"] = {_text(k)[:60]: (v if isinstance(v, (bool, int, float)) and _number(v) is not None
                                          or isinstance(v, bool) else _text(v)[:80])
                         for k, v in list(raw["params"].items())[:60]}
    if isinstance(raw.get("seconds"), dict):
        out["seconds"] = {_text(k)[:20]: _number(v) for k, v in list(raw["seconds"].items())[:5]}
    if isinstance(raw.get("skipped"), dict):
        out["skipped"] = {_text(k)[:20]: _text(v) for k, v in list(raw["skipped"].items())[:5]}
    if isinstance(raw.get("structural"), dict):
        s = raw["structural"]
        out["structural"] = {k: s[k] for k in STRUCTURAL_RISKS if isinstance(s.get(k), bool)}
        for k in ("train_acc", "test_acc", "generalisation_gap"):
            if _number(s.get(k)) is not None:
                out["structural"][k] = _number(s[k])
    for name in MIA:
        m = raw.get(name)
        if isinstance(m, dict):
            kept = {k: _number(m.get(k)) for k in ("auc", "auc_max", "p_value", "significant_share", "repetitions")}
            tpr = m.get("tpr_at_fpr") if isinstance(m.get("tpr_at_fpr"), dict) else {}
            kept["tpr_at_fpr"] = {_text(k)[:12]: _number(v) for k, v in list(tpr.items())[:6]}
            out[name] = kept
    rec = raw.get("recommendation")
    if isinstance(rec, dict):
        out["recommendation"] = {k: _texts(rec.get(k)) for k in
                                 ("immediate_rejection", "support_rejection", "support_release")}
    return out


def findings(report: dict[str, Any], limits) -> list[Finding]:
    """The findings of a cleaned report (:func:`clean_report`) under ``limits`` (settings.model_check)."""
    status = report.get("status")
    if status == "untrusted":
        return [Finding("model-attack", Status.FAIL, f"refused unopened: {report.get('reason', '')}")]
    if status == "unsupported":
        return [Finding("model-check", Status.REVIEW, f"the platform cannot attack this model: "
                                                      f"{report.get('reason', '')}; a checker judges it")]
    if status != "ok":
        return [Finding("model-check", Status.REVIEW, f"the model check could not run ({status}): "
                                                      f"{report.get('reason', 'no reason given')}")]
    out: list[Finding] = []
    foreign = report.get("foreign_persons")
    if foreign:
        out.append(Finding("model-attack", Status.FAIL, f"{foreign} declared training or test person(s) are not "
                                                        "in this project's extract"))
    leaves = report.get("leaves") or {}
    if leaves.get("unreached"):
        out.append(Finding("model-attack", Status.FAIL, f"{leaves['unreached']} of the model's {leaves.get('leaves')} "
                                                        "leaves hold none of the declared training rows: either the "
                                                        "declaration names other rows than the model was trained on, "
                                                        "or the model carries leaves no training made (values "
                                                        "stored, not learnt)"))
    if leaves.get("miscounted"):
        out.append(Finding("model-attack", Status.FAIL, f"{leaves['miscounted']} leaves record another number of "
                                                        "training rows than the declared training rows put in them: "
                                                        "the declaration does not name the rows the tree was "
                                                        "trained on, so the attacks tested the wrong rows"))
    if "leaves" in (report.get("skipped") or {}):
        out.append(Finding("model-attack", Status.REVIEW, f"the leaves could not be matched with the declared "
                                                          f"training rows: {report['skipped']['leaves']}"))
    if report.get("extra_state"):
        out.append(Finding("model-attack", Status.FAIL, "the estimator carries state that fitting it on the declared "
                                                        "rows does not make (" + ", ".join(report["extra_state"][:5])
                                                        + "): data stored next to the model; export the fitted "
                                                          "estimator alone"))
    out.extend(_reproduction_findings(report))
    for name, label in MIA.items():
        m = report.get(name)
        if not isinstance(m, dict) or m.get("auc") is None:
            why = (report.get("skipped") or {}).get(name, "not in the report")
            out.append(Finding("model-attack", Status.REVIEW, f"{label} did not run: {why}"))
            continue
        auc, p = m["auc"], m.get("p_value")
        tpr = (m.get("tpr_at_fpr") or {}).get(f"{limits.low_fpr:g}")
        if auc > limits.max_auc and p is not None and p < limits.p_value:
            out.append(Finding("model-attack", Status.FAIL, f"{label}: membership inference AUC {auc:.3f} > "
                                                            f"{limits.max_auc:g} (p = {p:.2g} < {limits.p_value:g})"))
        if tpr is None:
            out.append(Finding("model-attack", Status.REVIEW, f"{label}: TPR at FPR {limits.low_fpr:g} not reported"))
        elif tpr > limits.max_tpr_at_low_fpr:
            measurable = (report.get("n_test") or 0) * limits.low_fpr >= 1
            message = (f"{label}: finds {tpr:.0%} of the training rows at a false positive rate of "
                       f"{limits.low_fpr:g} (limit {limits.max_tpr_at_low_fpr:.0%})")
            if measurable:
                out.append(Finding("model-attack", Status.FAIL, message))
            else:  # fewer test rows than 1 / low_fpr: this is the TPR at zero false positives
                out.append(Finding("model-attack", Status.REVIEW, f"{message}; with {report.get('n_test')} test rows "
                                                                  "that false positive rate cannot be measured (this "
                                                                  "is the TPR at zero false positives)"))
    structural = report.get("structural")
    if not isinstance(structural, dict):
        why = (report.get("skipped") or {}).get("structural", "not in the report")
        out.append(Finding("model-attack", Status.REVIEW, f"structural attack did not run: {why}"))
    else:
        for key, text in STRUCTURAL_RISKS.items():
            if structural.get(key):
                out.append(Finding("model-attack", Status.REVIEW, f"structural attack: {text}"))
    rec = report.get("recommendation") or {}
    for reason in rec.get("immediate_rejection", []):
        out.append(Finding("model-attack", Status.FAIL, f"SACRO-ML recommends immediate rejection: {reason}"))
    for reason in rec.get("support_rejection", []):
        out.append(Finding("model-attack", Status.REVIEW, f"SACRO-ML evidence for rejection: {reason}"))
    if not out:
        out.append(Finding("model-attack", Status.PASS, "no attack succeeded beyond the project's thresholds"))
    return out


#: the formats whose file keeps the recipe to train the model again: :data:`pds_kernel.modelcheck.run.RETRAINED`
#: (the check environment's module, which the gate does not import; a test keeps them equal)
REMADE_FORMATS = ("skops", "lightgbm")
#: what to do when the same recipe on the same rows gave two models, by format
_UNSEEDED = {"skops": "it was fitted without a fixed random_state; fit it with one, on the declared rows in their "
                      "declared order",
             "lightgbm": "LightGBM trained twice from the parameters its file records gave two models; train it "
                         "with deterministic=True, on the declared rows in their declared order"}


def _reproduction_findings(report: dict[str, Any]) -> list[Finding]:
    """A scikit-learn estimator (skops) or a LightGBM model that the declared training rows do not
    re-make: the attacks tested other rows than the model was trained on (a declaration padded with
    rows it never saw hides its members among them). **fail** when a refit on the same rows makes the
    same model (every seed fixed, or a solver that draws nothing), **review** otherwise."""
    if str(report.get("format", "")).startswith("xgboost"):
        return [Finding("model-attack", Status.REVIEW, "an XGBoost file keeps no training recipe, so the platform "
                                                       "could not check that the declared training rows are the "
                                                       "rows the model was trained on (the attacks test the "
                                                       "declared rows): a checker judges the declaration, or ask "
                                                       "for the model as LightGBM text or skops, which the platform "
                                                       "trains again")]
    if report.get("format") not in REMADE_FORMATS or report.get("extra_state"):
        return []  # a failed skops refit already fails
    made = report.get("reproduction")
    if not isinstance(made, dict):
        why = (report.get("skipped") or {}).get("reproduction", "not in the report")
        return [Finding("model-attack", Status.REVIEW, f"the platform could not compare the model with the same "
                                                       f"estimator fitted on the declared training rows: {why}")]
    if made["reproduced"]:
        return []
    gap = ("its outputs have another shape (other classes)" if made["difference"] is None
           else f"its outputs differ by up to {made['difference']:.2g} on the {made['rows']} declared rows")
    if made["seeded"]:
        return [Finding("model-attack", Status.FAIL, f"the same estimator fitted on the declared training rows, in "
                                                     f"their declared order, is not the submitted model ({gap}): "
                                                     "the declaration does not name the rows the model was trained "
                                                     "on, so the attacks tested other rows; declare exactly the "
                                                     "rows it was fitted on, in that order")]
    return [Finding("model-attack", Status.REVIEW, f"the platform could not re-make the model from the declared "
                                                   f"training rows ({gap}) and cannot tell whether they are the "
                                                   f"rows it was trained on: {_UNSEEDED[report['format']]}")]
