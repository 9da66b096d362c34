"""Red team 16B: data carried out across several exports, and models of one-row leaves.

Each attack submits real model files (built with the real libraries) through the real airlock
service, on a project with a real extract built from a synthetic delivery, and asserts the gate
fails the file with a finding that says why. 10 attempts, all of which got through before this
round's fixes (each file went to a checker as "model: review", with nothing saying what it held):

1. A column of the extract (the claims' paid amounts) cut into pieces under the model rules'
   limits (under 50 distinct values each, the level at which a checker is told; under 20 runs of
   rows in the extract's order), each piece in a genuine network's safetensors file: in separate
   requests of one author (shuffled values; runs of rows in row order) and in several files of
   one request (3 attempts). The fix (pds_kernel/airlock/export_history.py, checks/model_split.py)
   judges each model with the request's other models and the author's 20 most recent model files
   of the project (of the 50 most recent requests that may leave, 64 MiB at most) as one file.
2. Tree ensembles grown to leaves of fewer than 5 rows (default ``ExtraTreesClassifier``,
   ``RandomForestClassifier``, ``GradientBoostingClassifier``; ``HistGradientBoostingClassifier``
   with ``min_samples_leaf=1``) without a declaration: only named to the checker before (4
   attempts). Now they fail as a single tree does (checks/model_data.py), every estimator counted.
3. Boosters whose file records leaves of fewer than 5 rows: a default XGBoost regressor as JSON
   and UBJ (squared error: a leaf's cover is its rows), LightGBM with ``min_data_in_leaf=1``
   (3 attempts; checks/model_leaves.py).

Controls: aggregate tables and honest models exported one after another by the same author,
ensembles and boosters with leaves of 5 rows or more, and a classifier's XGBoost cover (not rows)
get no failure; a union of pieces already named to a checker goes to review.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from model_tensor_support import (
    SentRequests,
    authors_gate,
    claim_rows,
    person_rows,
    safetensors_bytes,
    saved,
)
from model_tensor_support import checker_findings as findings

AUTHORS = ("bob", "carol", "dave", "erin", "fanny", "gina")


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """(airlock service, the project's demo extract, a network's genuine weights), for the module;
    each test submits as its own researcher, and its requests are withdrawn after it."""
    with authors_gate(tmp_path_factory.mktemp("redteam16-exports"), AUTHORS) as world:
        yield world


SENT = SentRequests()  #: the running test's requests


@pytest.fixture(autouse=True)
def _withdrawn_after(request):
    """Each test's requests are withdrawn after it (:class:`model_tensor_support.SentRequests`)."""
    yield
    if SENT.sent:
        SENT.withdraw_all(request.getfixturevalue("gate")[0])


def _send(service, author: str, files: dict[str, bytes], context: dict | None = None):
    return SENT.send(service, author, files, context)


def _all_findings(service, view) -> list[list[dict]]:
    return [f.check["findings"] for f in service.get_request("olga", view.id).files]


def _piece(weights: dict, values: np.ndarray) -> bytes:
    """A genuine network's weights with ``values`` as one more float32 bias."""
    return safetensors_bytes({**weights, "fc3.bias": values.astype(np.float32)})


def _amounts(extract) -> np.ndarray:
    """Distinct paid amounts of the claims that are no quarter under 1024 (which every model holds)."""
    values = np.unique(extract.claims.PRS_PAI_MNT.dropna().to_numpy())
    return values[(np.abs(values) >= 1024) | (values * 4 != np.round(values * 4))]


def _split_failure(found: list[dict]) -> bool:
    return any(f["rule"] == "model-tensors" and f["status"] == "fail" and ("cut into pieces" in f["message"])
               for f in found)


# ---- 1. a column cut into pieces ------------------------------------------------------------------

def test_a_column_cut_into_shuffled_pieces_across_requests_fails(gate):
    """Got through before: 8 requests of 40 amounts each (320 distinct values, shuffled) passed
    each file; the eighth now fails, naming the earlier requests, and the first seven do not."""
    service, extract, weights = gate
    values = np.random.default_rng(16).permutation(_amounts(extract))[:320]
    for n, piece in enumerate(np.split(values, 8)):
        view = _send(service, "bob", {f"net-{n}.safetensors": _piece(weights, piece)})
        found = findings(service, view)
        if n < 7:
            assert view.files[0].check_status == "review", found
        else:
            assert view.files[0].check_status == "fail", found
            assert _split_failure(found), found
            assert any("ER_PRS_F.PRS_PAI_MNT" in f["message"] and "net-6.safetensors (request " in f["message"]
                       for f in found), found


def test_a_column_in_row_order_cut_into_short_runs_across_requests_fails(gate):
    """Got through before: runs of 22 consecutive amounts in the claims' row order (about 12 runs of
    4 rows each: too few for the one-file rule, which needs 20) in three requests; the first still
    goes to review alone, the last now fails."""
    service, extract, weights = gate
    rows = extract.claims.PRS_PAI_MNT.dropna().to_numpy()
    for n, start in enumerate((0, 400, 800)):
        view = _send(service, "carol", {f"run-{n}.safetensors": _piece(weights, rows[start:start + 22])})
        found = findings(service, view)
        if n == 0:
            assert view.files[0].check_status == "review", found
        elif n == 2:
            assert view.files[0].check_status == "fail", found
            assert any(f["rule"] == "model-tensors" and "runs of consecutive rows" in f["message"] and
                       "cut into pieces" in f["message"] for f in found), found


def test_a_column_cut_into_pieces_in_one_request_fails_every_piece(gate):
    """Got through before: eight files of 40 amounts each in one request; now each fails, naming the
    others."""
    service, extract, weights = gate
    values = np.random.default_rng(17).permutation(_amounts(extract))[:320]
    view = _send(service, "dave", {f"part-{n}.safetensors": _piece(weights, piece)
                                   for n, piece in enumerate(np.split(values, 8))})
    for f, found in zip(service.get_request("olga", view.id).files, _all_findings(service, view)):
        assert f.check_status == "fail", found
        assert _split_failure(found) and "(this request)" in str(found), found


def test_tables_and_honest_models_exported_one_after_another_do_not_fail(gate):
    """Controls: declared aggregate tables in three requests pass; tree models fitted on parts of
    the claims (their thresholds are amounts of the extract) and a network, each in its own request,
    get no failure (histogram boosters hold many amounts as bin edges: together they would go to
    review, never fail, as pieces of 50 values or more each were named to a checker already)."""
    import lightgbm as lgb
    import skops.io as sio
    import xgboost as xgb
    from sklearn.ensemble import HistGradientBoostingClassifier

    service, extract, weights = gate
    for year in (2021, 2022, 2023):
        table = f"sex,persons\n1,{120 + year % 7}\n2,{135 + year % 5}\n".encode()
        declared = {"tables": {f"t{year}.csv": {"labels": ["sex"], "counts": ["persons"], "unit": "persons"}}}
        view = _send(service, "erin", {f"t{year}.csv": table}, declared)
        assert view.files[0].check_status == "pass", findings(service, view)
    X, y = claim_rows(extract)
    models = {f"gbm-{n}.ubj": saved(xgb.XGBClassifier(n_estimators=10, max_depth=4).fit(X[part], y[part]), ".ubj")
              for n, part in enumerate(np.array_split(np.arange(min(len(y), 6000)), 2))}
    models["lgbm.txt"] = saved(lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X[:9000], y[:9000]), 10), ".txt")
    models["net.safetensors"] = safetensors_bytes(weights)
    for n, part in enumerate(np.array_split(np.arange(min(len(y), 6000)), 2)):  # bin edges: amounts
        models[f"hist-{n}.skops"] = sio.dumps(HistGradientBoostingClassifier(max_iter=3).fit(X[part], y[part]))
    for name, data in models.items():
        view = _send(service, "erin", {name: data})
        found = findings(service, view)
        assert not [f for f in found if f["status"] == "fail"], (name, found)


# ---- 2. ensembles of one-row leaves --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["extra", "forest", "boosting", "hist"])
def test_ensembles_of_one_row_leaves_without_a_declaration_fail(gate, kind, tmp_path):
    """Got through before (review: "a checker must judge whether the ensemble records persons").
    Declared, the same file goes to a checker as a declared single tree does: the platform's
    structural attack judges its leaves (its run is tests/ai's; here the gate's own rule)."""
    import skops.io as sio
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )

    from pds_kernel.airlock.checks.model_data import scan_model

    service, extract, _ = gate
    X, y = person_rows(extract)
    model = {"extra": ExtraTreesClassifier(n_estimators=5, random_state=0),
             "forest": RandomForestClassifier(n_estimators=5, random_state=0),
             "boosting": GradientBoostingClassifier(n_estimators=5, random_state=0),
             "hist": HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=1)}[kind].fit(X, y)
    view = _send(service, "alice", {f"{kind}.skops": sio.dumps(model)})
    found = findings(service, view)
    assert view.files[0].check_status == "fail", found
    assert any(f["rule"] == "model-data" and f["status"] == "fail" and "trees have" in f["message"]
               and "min_samples_leaf=5" in f["message"] and "declare its training rows" in f["message"]
               for f in found), found
    path = tmp_path / f"{kind}.skops"
    path.write_bytes(sio.dumps(model))
    declared = [f for f in scan_model(path, "skops", declared=True) if "training rows" in f.message]
    assert declared and all(f.status.value == "review" for f in declared), declared


def test_ensembles_of_leaves_of_five_rows_or_more_do_not_fail(gate):
    """Controls: the same ensembles with leaves of 5 rows or more (histogram boosting's default: 20)."""
    import skops.io as sio
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier

    service, extract, _ = gate
    X, y = person_rows(extract)
    for name, model in (("extra5.skops", ExtraTreesClassifier(n_estimators=5, min_samples_leaf=5, random_state=0)),
                        ("forest5.skops", RandomForestClassifier(n_estimators=5, min_samples_leaf=5, random_state=0)),
                        ("hist.skops", HistGradientBoostingClassifier(max_iter=5))):
        view = _send(service, "fanny", {name: sio.dumps(model.fit(X, y))})
        found = findings(service, view)
        assert view.files[0].check_status == "review", (name, found)
        assert not [f for f in found if "training rows" in f["message"] and f["rule"] == "model-data"], (name, found)


# ---- 3. boosters whose leaves hold fewer than 5 rows ----------------------------------------------

def test_xgboost_and_lightgbm_leaves_of_fewer_than_five_rows_fail_without_a_declaration(gate):
    """Got through before (review, the generic "model" finding): a default XGBoost regressor
    (squared error: a leaf's cover is its rows; min_child_weight=1 grows leaves of one row), as JSON
    and UBJ, and LightGBM with min_data_in_leaf=1 (its leaf_count). Controls: the same with leaves of
    5 rows or more, and a classifier, whose cover does not count rows (the checker judges it)."""
    import lightgbm as lgb
    import xgboost as xgb

    service, extract, _ = gate
    X, _ = person_rows(extract)
    features, target = X[:, :3], X[:, 3]
    grown = xgb.XGBRegressor(n_estimators=5, max_depth=6).fit(features, target)
    attacks = {"reg.json": (saved(grown, ".json"), "min_child_weight=5"),
               "reg.ubj": (saved(grown, ".ubj"), "min_child_weight=5"),
               "lgbm.txt": (saved(lgb.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 1},
                                            lgb.Dataset(features, target), 5), ".txt"), "min_data_in_leaf=5")}
    for name, (data, setting) in attacks.items():
        view = _send(service, "alice", {name: data})
        found = findings(service, view)
        assert view.files[0].check_status == "fail", (name, found)
        assert any(f["rule"] == "model-data" and f["status"] == "fail" and "fewer than 5 training rows" in f["message"]
                   and setting in f["message"] and "declare its training rows" in f["message"] for f in found), found
    controls = {"reg5.json": saved(xgb.XGBRegressor(n_estimators=5, max_depth=6, min_child_weight=5)
                                   .fit(features, target), ".json"),
                "cls.ubj": saved(xgb.XGBClassifier(n_estimators=5, max_depth=6).fit(features, target > np.median(target)), ".ubj"),
                "lgbm20.txt": saved(lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(features, target),
                                              5), ".txt")}
    for name, data in controls.items():
        view = _send(service, "fanny", {name: data})
        found = findings(service, view)
        assert not [f for f in found if "training rows" in f["message"] and f["rule"] == "model-data"], (name, found)


def test_pieces_already_named_to_a_checker_go_to_review_and_a_file_failing_alone_is_left_out():
    """The union's verdict: files of 50 values or more each were named to a checker already (tree
    thresholds are data values), so their union goes to review; a file that fails alone (its own
    check says so) is not counted again; a file adding nothing of its own is not named."""
    from pds_kernel.airlock.checks.model_split import Piece, split_findings

    def held(first: int, last: int) -> tuple[set[float], float, int]:
        return {v + 0.01 for v in range(first, last)}, 0.0, 0

    named = split_findings({"T.C": held(0, 200)}, [Piece("request 1", "a.skops", {"T.C": held(150, 400)})])
    assert [(f.rule, f.status.value) for f in named] == [("model-tensors", "review")], named
    assert not split_findings({"T.C": held(0, 40)}, [Piece("request 1", "big.onnx", {"T.C": held(100, 900)})])
    assert not split_findings({"T.C": held(0, 40)}, [Piece("request 1", "a.onnx", {"T.C": held(0, 40)}),
                                                     Piece("request 2", "b.onnx", {"T.C": held(40, 340)})])


def test_earlier_model_files_beyond_the_bounds_are_said_to_the_checker(gate, monkeypatch):
    """The gate reads at most MAX_FILES earlier model files (20; 2 here; the author's own first,
    then other authors' of the project): the rest is named as not compared, in a review finding,
    on a model holding values of the extract."""
    from pds_kernel.airlock import export_history

    service, extract, weights = gate
    monkeypatch.setattr(export_history, "MAX_FILES", 2)
    values = np.random.default_rng(18).permutation(_amounts(extract))[:160]
    for n, piece in enumerate(np.split(values, 4)):
        view = _send(service, "gina", {f"net-{n}.safetensors": _piece(weights, piece)})
    found = findings(service, view)
    assert view.files[0].check_status == "review", found
    assert any(f["status"] == "review" and "file(s) of the project's earlier requests (yours or other authors')" in f["message"]
               for f in found), found


def test_a_forest_of_thousands_of_trees_is_refused_at_once_saying_why(gate):
    """Bound: a skops file of more than 10,000 arrays (a forest of about 2,000 trees or more) is
    refused before any array is read, saying to export fewer trees; below that, every tree's leaves
    are counted (1,000 trees of depth 3: about 5 s for the whole string scan)."""
    import time
    import zipfile

    from pds_kernel.airlock.staging import RefusedFiles

    service, _, _ = gate
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", "{}")
        for n in range(10_001):
            archive.writestr(f"{n}.npy", b"")
    started = time.monotonic()
    with pytest.raises(RefusedFiles) as caught:
        _send(service, "alice", {"forest.skops": buffer.getvalue()})
    assert time.monotonic() - started < 10
    assert "export fewer trees" in caught.value.reasons["forest.skops"], caught.value.reasons


def test_workspace_check_judges_the_models_it_is_given_together(gate, tmp_path):
    """``ws.check`` / ``pds airlock check`` (check_paths) judge the files given together, as the gate
    does at submission; the author's earlier exports only the gate reads."""
    from pds_kernel.airlock.checks import Thresholds
    from pds_kernel.airlock.checks.model_reference import reference_at
    from pds_kernel.airlock.gate import ProjectGate, check_paths

    _, extract, weights = gate
    values = np.random.default_rng(19).permutation(_amounts(extract))[:320]
    paths = []
    for n, piece in enumerate(np.split(values, 8)):
        paths.append(tmp_path / f"part-{n}.safetensors")
        paths[-1].write_bytes(_piece(weights, piece))
    reference = reference_at(extract.path)
    answer = check_paths(ProjectGate(Thresholds(), 50 << 20, reference=lambda: reference), paths, {})
    assert all(f["verdict"] == "fail" and _split_failure(f["findings"]) for f in answer["files"]), answer
