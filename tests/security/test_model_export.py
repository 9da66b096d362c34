"""Red team: a model that tries to leave past the platform's own model check.

Each test is one real attempt against the real airlock service and, where the check runs, a real
check sandbox (bubblewrap, the check environment); each asserts the attempt failed. The model
check is described in docs/ai.md; the fixtures are tests/ai/model_check_support.py."""

from __future__ import annotations

import errno
import json
import subprocess
from dataclasses import replace

import pytest
from model_export_support import (
    OTHER,
    PROJECT,
    home,
    make_service,
    overfit_tree,
    people,
    pickle_payload,
    publish_cohort,
    reasonable_xgboost,
    skops_naming_os_system,
    skops_with_pickle,
    submit,
    write_rows,
)

from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.runtime import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.functional]


@pytest.fixture
def gate(runtime):
    """(service, settings, rows of the project, alice's home); ``other-2024`` has its own persons."""
    settings = runtime.settings
    rows = people(PROJECT, 600, seed=5)
    publish_cohort(settings, PROJECT, rows)
    publish_cohort(settings, OTHER, people(OTHER, 300, seed=6))
    return make_service(runtime), settings, rows, home(settings, PROJECT, "alice")


def _staged(settings):
    return [p for p in settings.paths.staging.rglob("*") if p.is_file()]


def _findings(service, view):
    return service.get_request("olga", view.id).files[0].check["findings"]


def test_skops_file_carrying_a_pickle_is_refused_and_never_unpickled(gate, tmp_path):
    service, settings, rows, alice = gate
    sentinel = tmp_path / "pwned"
    declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    with pytest.raises(RefusedFiles, match="pickle"):
        submit(service, "model.skops", skops_with_pickle(sentinel, rows), declaration)
    assert not sentinel.exists() and not _staged(settings)


def test_pickle_named_as_an_xgboost_model_that_runs_code_on_load_is_refused(gate, tmp_path):
    service, settings, rows, alice = gate
    sentinel = tmp_path / "pwned"
    declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    with pytest.raises(RefusedFiles):
        submit(service, "model.ubj", pickle_payload(sentinel), declaration)
    assert not sentinel.exists() and not (settings.paths.state / "model-checks").exists()


def test_skops_model_naming_os_system_is_refused_unopened_by_the_check(gate):
    service, _, rows, alice = gate
    declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    view = submit(service, "pipeline.skops", skops_naming_os_system(rows), declaration)
    assert view.files[0].check_status == "fail"
    assert any(f["rule"] == "model-attack" and f["status"] == "fail" and "system" in f["message"]
               for f in _findings(service, view))


def test_declaration_naming_another_projects_rows_by_path_is_refused(gate, runtime):
    service, settings, rows, alice = gate
    mallory = home(settings, OTHER, "mallory")
    write_rows(mallory, people(OTHER, 300, seed=6), people(OTHER, 300, seed=6).PERSON_ID[:200],
               people(OTHER, 300, seed=6).PERSON_ID[200:])
    declaration = {"data": "../../other-2024/mallory/results/model_data.parquet", "target": "outcome",
                   "train": "results/model_train.csv", "test": "results/model_test.csv"}
    with pytest.raises(InvalidInput, match="inside your home"):
        submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
    assert not _staged(settings)


def test_declaration_reaching_another_projects_rows_through_a_symlink_is_refused(gate):
    service, settings, rows, alice = gate
    other = people(OTHER, 300, seed=6)
    mallory = home(settings, OTHER, "mallory")
    write_rows(mallory, other, other.PERSON_ID[:200], other.PERSON_ID[200:])
    declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    (alice / "results" / "model_data.parquet").unlink()
    (alice / "results" / "model_data.parquet").symlink_to(mallory / "results" / "model_data.parquet")
    with pytest.raises(InvalidInput, match="links are not followed"):
        submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
    (alice / "results" / "model_data.parquet").unlink()
    (alice / "shared").symlink_to(mallory / "results", target_is_directory=True)
    with pytest.raises(InvalidInput, match="links are not followed"):
        submit(service, "model.ubj", reasonable_xgboost(rows, 300), {**declaration, "data": "shared/model_data.parquet"})


def test_declared_persons_of_another_project_copied_into_the_home_fail_the_check(gate):
    service, _, rows, alice = gate
    other = people(OTHER, 300, seed=6)
    declaration = write_rows(alice, other, other.PERSON_ID[:150], other.PERSON_ID[150:])
    view = submit(service, "model.ubj", reasonable_xgboost(other, 150), declaration)
    assert view.files[0].check_status == "fail"
    assert any("not in this project's extract" in f["message"] for f in _findings(service, view))


def test_the_check_reads_a_cohort_rewritten_after_publication(gate, tmp_path):
    """Got through before the check's extract was verified. Someone who can write the project's
    folder (a batch job, an operator) rewrites the published COHORT.parquet to list another
    project's persons: the check read it, found the declared (foreign) persons in "this project's
    extract" and passed the model. Now the gate refuses the submission (it verifies the extract
    before it reads it: test_gate_reads_the_published_extract.py), and the check itself, called
    as the gate calls it, mounts only the extract the audit trail says was published: the model
    goes to a checker, the check unrun."""
    import pandas as pd

    from pds_kernel.extract.mount_check import ExtractRefused
    from pds_kernel.modelcheck.checker import ModelChecker

    service, settings, rows, alice = gate
    other = people(OTHER, 300, seed=6)
    cohort = settings.paths.projects / PROJECT / "extract" / "COHORT.parquet"
    cohort.chmod(0o644)
    pd.concat([rows[["PERSON_ID"]], other[["PERSON_ID"]]]).to_parquet(cohort)
    declaration = write_rows(alice, other, other.PERSON_ID[:150], other.PERSON_ID[150:])
    model = reasonable_xgboost(other, 150)
    with pytest.raises(ExtractRefused, match="re-publish it"):
        submit(service, "model.ubj", model, declaration)
    staged = tmp_path / "model.ubj"
    staged.write_bytes(model)
    checker = ModelChecker(settings, service.registry.get_project(PROJECT), alice, tmp_path / "checks",
                           author="alice", request_id="r1", audit=service.runtime.audit)
    findings, report = checker(0, "model.ubj", staged, declaration)
    assert [(f.rule, f.status.value) for f in findings] == [("model-check", "review")]
    assert "the check did not run" in findings[0].message and "cannot be mounted" in findings[0].message
    assert report["status"] == "error" and not (tmp_path / "checks").exists()


def test_huge_model_is_not_loaded_and_a_slow_check_is_killed(settings, tmp_path):
    from pds_kernel.settings import ModelCheck

    settings = replace(settings, model_check=replace(ModelCheck(), max_model_bytes=20_000, timeout_seconds=3))
    runtime = Runtime(settings)
    try:
        rows = people(PROJECT, 600, seed=5)
        publish_cohort(settings, PROJECT, rows)
        service = make_service(runtime)
        declaration = write_rows(home(settings, PROJECT, "alice"), rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
        import xgboost as xgb

        big = xgb.XGBClassifier(n_estimators=400, max_depth=8).fit(rows.iloc[:300, 1:7].to_numpy(),
                                                                    rows.outcome[:300].to_numpy())
        big.save_model(tmp_path / "big.json")
        huge = (tmp_path / "big.json").read_bytes()
        assert len(huge) > 20_000
        view = submit(service, "big.json", huge, declaration)
        found = _findings(service, view)
        assert any(f["rule"] == "model-check" and "larger than the check loads" in f["message"] for f in found)
        view = submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
        found = _findings(service, view)
        assert any(f["rule"] == "model-check" and "did not finish within 3 s" in f["message"] for f in found)
        assert view.files[0].check_status == "review"
        assert not list((settings.paths.state / "model-checks").rglob("*.parquet"))
    finally:
        runtime.close()


PROBE = r"""
import errno, json, os, socket
out = {}
s = socket.socket(); s.settimeout(3)
try:
    s.connect(("192.0.2.1", 80)); out["net"] = "connected"
except OSError as exc:
    out["net"] = exc.errno
try:
    open("/pds-model-check/job.json", "a"); out["check_writable"] = True
except OSError:
    out["check_writable"] = False
out["home"] = sorted(os.listdir("/home/jovyan"))
out["run"] = sorted(os.listdir("/run/pds"))
out["uid"] = os.getuid()
print(json.dumps(out))
"""


def test_check_sandbox_has_no_network_no_sockets_and_a_read_only_check_directory(gate, tmp_path):
    from pds_kernel.extract.mount_check import check_for_workspace
    from pds_kernel.modelcheck.sandbox import build_check_command, check_python, finish_check

    service, settings, rows, alice = gate
    check_dir = tmp_path / "check"
    check_dir.mkdir(mode=0o755)
    (check_dir / "job.json").write_text("{}")
    (check_dir / "job.json").chmod(0o644)
    info = service.registry.get_project(PROJECT)
    extract = check_for_workspace(settings, service.runtime.audit, PROJECT)  # the published one
    argv, env = build_check_command(settings, info, check_dir, tmp_path / "work",
                                    [str(check_python(settings)), "-I", "-c", PROBE], extract=extract)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd="/")
    finally:
        finish_check(tmp_path / "work")
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["net"] in (errno.ENETUNREACH, errno.EHOSTUNREACH)
    assert seen["check_writable"] is False
    assert seen["home"] == [] and seen["run"] == []  # a fresh home, no hub or gate socket
    assert str(alice) not in done.stdout


def test_check_forged_by_the_researchers_kernel_is_ignored(gate):
    service, _, rows, alice = gate
    declaration = write_rows(alice, rows, rows.PERSON_ID[:40], rows.PERSON_ID[300:])
    forged = {"status": "ok", "lira": {"auc": 0.5, "p_value": 1.0}, "verdict": "pass"}
    with pytest.raises(InvalidInput, match="unknown key"):
        submit(service, "tree.skops", overfit_tree(rows), {**declaration, "report": forged})
    (alice / "out").mkdir()
    (alice / "out" / "report.json").write_text(json.dumps(forged))
    view = submit(service, "tree.skops", overfit_tree(rows), declaration,
                  context={"model_check": forged, "model_checks": {"tree.skops": forged}})
    assert view.files[0].check_status == "fail"
    checked = service.get_request("olga", view.id).files[0].check["model_check"]
    assert checked["lira"]["auc"] > 0.65 and "verdict" not in checked


def test_author_cannot_read_the_attack_report_or_its_plot(gate):
    service, _, rows, alice = gate
    declaration = write_rows(alice, rows, rows.PERSON_ID[:40], rows.PERSON_ID[300:])
    view = submit(service, "tree.skops", overfit_tree(rows), declaration)
    mine = service.get_request("alice", view.id).files[0]
    assert "model_check" not in mine.check and not mine.check.get("plot_png")
    assert all("AUC" not in json.dumps(f) for f in mine.check["findings"])
    with pytest.raises(PermissionDenied):
        service.open_staged("alice", view.id, 0)


def test_a_model_submission_checks_the_extract_once(gate, monkeypatch):
    """The saving: the gate checked the extract (a full re-hash up to 4 GiB), then the model check
    checked it again; now the check mounts the gate's checked extract, and still runs."""
    from pds_kernel.extract import mount_check

    service, _, rows, alice = gate
    real, calls = mount_check.open_and_check, []
    monkeypatch.setattr(mount_check, "open_and_check", lambda *a, **k: calls.append(1) or real(*a, **k))
    declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    view = submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
    assert len(calls) == 1
    assert service.get_request("olga", view.id).files[0].check["model_check"]["status"] == "ok"


def test_a_cohort_swapped_between_the_gates_check_and_the_checks_mount_is_not_mounted(gate, tmp_path):
    """The check mounts the extract the gate checked without re-hashing it: its launcher opens the
    build again and compares the tree's fingerprint with the gate's. A cohort swapped after the
    gate's check (another project's persons, who would pass as "this project's") is not mounted:
    the model goes to a checker, the check unrun."""
    from pds_kernel.airlock.extract_reads import gate_extract
    from pds_kernel.modelcheck.checker import ModelChecker

    service, settings, rows, alice = gate
    other = people(OTHER, 300, seed=6)
    checked = gate_extract(settings, service.runtime.audit, PROJECT)  # as request_gate does, once
    cohort = settings.paths.projects / PROJECT / "extract" / "COHORT.parquet"
    other[["PERSON_ID"]].to_parquet(cohort.with_name("forged.parquet"))
    cohort.with_name("forged.parquet").replace(cohort)
    declaration = write_rows(alice, other, other.PERSON_ID[:150], other.PERSON_ID[150:])
    staged = tmp_path / "model.ubj"
    staged.write_bytes(reasonable_xgboost(other, 150))
    checker = ModelChecker(settings, service.registry.get_project(PROJECT), alice, tmp_path / "checks",
                           author="alice", request_id="r1", audit=service.runtime.audit, extract=checked)
    findings, report = checker(0, "model.ubj", staged, declaration)
    assert [(f.rule, f.status.value) for f in findings] == [("model-check", "review")]
    assert "changed between the gate's check and the check sandbox's mount" in findings[0].message
    assert "re-publish it" in findings[0].message and report["status"] == "error"


FLOOD_MIB = 32  #: on standard output, by each interpreter the check starts (and 8 on standard error)


def test_a_check_printing_hundreds_of_megabytes_does_not_fill_the_gates_memory(gate, tmp_path, caplog, monkeypatch):
    """Got through before the fix: the gate read the check's standard output and error whole into
    its memory (``subprocess.run(capture_output=True)``). What the check prints comes from the
    libraries that load and attack the researcher's model; here a check environment whose start-up
    prints 32 MiB on standard output and 8 MiB on standard error (a ``.pth`` file, run by every
    interpreter the check starts, even with ``-I``: hundreds of MiB in all) stands for such a
    library. The real check runs after it, in the real sandbox. The gate now keeps only the last
    bytes: what it allocates while the check runs stays far below what was printed, and the check
    still gives its verdict."""
    import logging
    import re
    import shutil
    import tracemalloc

    from pds_kernel.modelcheck import checker as checker_module
    from pds_kernel.modelcheck.sandbox import MAX_OUTPUT_TAIL, check_python

    service, settings, rows, alice = gate
    # resolved: a check environment that is a link to another one (a worktree's) is copied, never
    # the link itself, through which the flood's file would land in the shared environment for good
    venv = check_python(settings).parent.parent.resolve()
    chatty = tmp_path / "chatty-check-env"
    subprocess.run(["cp", "-al", str(venv), str(chatty)], check=True)  # hard links: the same environment
    site = next(chatty.glob("lib/python3*/site-packages"))
    assert not chatty.is_symlink() and site.resolve().is_relative_to(chatty.resolve())
    flood = f"for _ in range({FLOOD_MIB}): os.write(1, bytes(1 << 20))\\nfor _ in range(8): os.write(2, bytes(1 << 20))"
    (site / "zz_flood.pth").write_text(f"import os; exec('{flood}')\n")
    service.settings = replace(settings, model_check=replace(settings.model_check, python=str(chatty / "bin" / "python")))
    real, peaks = checker_module.run_check, []

    def measured(*args, **kwargs):  # the gate's allocations while the check runs, and reads what it printed
        tracemalloc.start()
        try:
            return real(*args, **kwargs)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(checker_module, "run_check", measured)
    declaration = write_rows(alice, rows, rows.PERSON_ID[:300], rows.PERSON_ID[300:])
    caplog.set_level(logging.INFO, logger="pds_kernel.modelcheck.sandbox")
    try:
        view = submit(service, "model.ubj", reasonable_xgboost(rows, 300), declaration)
    finally:
        shutil.rmtree(chatty, ignore_errors=True)
    assert len(peaks) == 1 and peaks[0] < 16 << 20, f"the gate allocated {peaks[0] >> 20} MiB while the check ran"
    printed = re.search(r"the model check printed (\d+) bytes; the gate kept the last (\d+)", caplog.text)
    assert printed and int(printed[1]) >= (FLOOD_MIB + 8) << 20 and int(printed[2]) == 2 * MAX_OUTPUT_TAIL
    assert service.get_request("olga", view.id).files[0].check["model_check"]["status"] == "ok"
