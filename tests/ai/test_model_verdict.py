"""The gate's reading of a model check report (pure): untrusted fields dropped, thresholds applied."""

from __future__ import annotations

from pds_kernel.modelcheck.verdict import clean_report, findings
from pds_kernel.settings import ModelCheck

LIMITS = ModelCheck()


def _report(**mia) -> dict:
    attack = {"auc": 0.55, "p_value": 0.2, "tpr_at_fpr": {"0.001": 0.0, "0.01": 0.02, "0.1": 0.12}, **mia}
    return clean_report({"status": "ok", "model": "XGBClassifier", "n_train": 400, "n_test": 200,
                         "structural": {"k_anonymity_risk": False}, "worst_case": dict(attack), "lira": dict(attack),
                         "recommendation": {"immediate_rejection": [], "support_rejection": []}})


def _statuses(report) -> set[tuple[str, str]]:
    return {(f.rule, f.status.value) for f in findings(report, LIMITS)}


def test_unknown_fields_and_non_finite_numbers_are_dropped():
    report = clean_report({"status": "ok", "verdict": "pass", "lira": {"auc": float("nan"), "evil": 1},
                           "n_train": "many", "params": {"x": float("inf")}, "reason": "x" * 5000})
    assert "verdict" not in report and report["lira"]["auc"] is None and "evil" not in report["lira"]
    assert "n_train" not in report and len(report["reason"]) == 500
    assert ("model-attack", "review") in _statuses(report)  # nothing to judge: never a pass


def test_quiet_attacks_pass_and_a_strong_one_fails():
    assert _statuses(_report()) == {("model-attack", "pass")}
    assert ("model-attack", "fail") in _statuses(_report(auc=0.7, p_value=0.001))
    assert ("model-attack", "fail") not in _statuses(_report(auc=0.7, p_value=0.2))  # not significant


def test_tpr_at_low_fpr_fails_only_when_the_test_rows_can_measure_it():
    loud = _report(tpr_at_fpr={"0.01": 0.3})
    assert ("model-attack", "fail") in _statuses(loud)
    few = dict(loud, n_test=40)
    assert _statuses(few) == {("model-attack", "review")}


def test_untrusted_unsupported_and_broken_reports():
    assert _statuses(clean_report({"status": "untrusted", "reason": "os.system"})) == {("model-attack", "fail")}
    assert _statuses(clean_report({"status": "unsupported", "reason": "onnx"})) == {("model-check", "review")}
    assert _statuses(clean_report({"status": "bad-declaration"})) == {("model-check", "review")}
    assert ("model-attack", "fail") in _statuses(dict(_report(), foreign_persons=3))


def _skops(fmt: str = "skops", skipped: dict | None = None, **reproduction) -> dict:
    raw = {"status": "ok", "format": fmt, "model": "RandomForestClassifier", "n_train": 400, "n_test": 200,
           "structural": {"k_anonymity_risk": False},
           "recommendation": {"immediate_rejection": [], "support_rejection": []}}
    attack = {"auc": 0.55, "p_value": 0.2, "tpr_at_fpr": {"0.001": 0.0, "0.01": 0.02, "0.1": 0.12}}
    raw.update(worst_case=dict(attack), lira=dict(attack))
    if reproduction:
        raw["reproduction"] = reproduction
    if skipped:
        raw["skipped"] = skipped
    return clean_report(raw)


def test_an_estimator_the_declared_rows_re_make_passes_and_one_they_do_not_fails_or_goes_to_review():
    assert _statuses(_skops(rows=600, difference=0.0, reproduced=True, seeded=True)) == {("model-attack", "pass")}
    seeded = findings(_skops(rows=600, difference=0.3, reproduced=False, seeded=True), LIMITS)
    assert [(f.rule, f.status.value) for f in seeded] == [("model-attack", "fail")]
    assert "declare exactly the rows it was fitted on" in seeded[0].message
    unseeded = findings(_skops(rows=600, difference=0.3, reproduced=False, seeded=False), LIMITS)
    assert [(f.rule, f.status.value) for f in unseeded] == [("model-attack", "review")]
    assert "random_state" in unseeded[0].message
    other_classes = findings(_skops(rows=600, difference=None, reproduced=False, seeded=True), LIMITS)
    assert "another shape" in other_classes[0].message and other_classes[0].status.value == "fail"


def test_a_skops_report_without_its_comparison_never_passes():
    assert _statuses(_skops()) == {("model-attack", "review")}
    forged = _skops(rows=600, difference=0.0, reproduced="yes", seeded=True)  # not a bool: dropped
    assert "reproduction" not in forged and _statuses(forged) == {("model-attack", "review")}


def test_a_lightgbm_model_is_judged_by_its_refit_and_one_not_trained_again_goes_to_review():
    """LightGBM files record their training parameters: the same rules as skops; a file whose
    parameters the platform will not run (a file name, several machines) is not verified."""
    assert _statuses(_skops("lightgbm", rows=600, difference=0.0, reproduced=True, seeded=True)) == {("model-attack", "pass")}
    padded = findings(_skops("lightgbm", rows=600, difference=0.3, reproduced=False, seeded=True), LIMITS)
    assert [(f.rule, f.status.value) for f in padded] == [("model-attack", "fail")]
    unstable = findings(_skops("lightgbm", rows=600, difference=0.3, reproduced=False, seeded=False), LIMITS)
    assert unstable[0].status.value == "review" and "deterministic=True" in unstable[0].message
    refused = findings(_skops("lightgbm", skipped={"reproduction": "the model's parameter input_model names '/x'"}),
                       LIMITS)
    assert [(f.rule, f.status.value) for f in refused] == [("model-attack", "review")]
    assert "could not compare" in refused[0].message and "input_model" in refused[0].message
    unverified = findings(_skops("xgboost-ubj"), LIMITS)  # keeps no recipe: the checker is told
    assert [(f.rule, f.status.value) for f in unverified] == [("model-attack", "review")]
    assert "keeps no training recipe" in unverified[0].message


def test_the_gate_judges_the_formats_the_check_trains_again():
    """The verdict reads a reproduction for the formats the check trains again, and only those."""
    from pds_kernel.modelcheck.run import RETRAINED
    from pds_kernel.modelcheck.verdict import REMADE_FORMATS

    assert set(REMADE_FORMATS) == RETRAINED
