"""Attacks on cohort linkage through the Kubernetes Job (pds_kernel.airlock.cohort_link_job, .cohort_link,
``python -m pds_kernel.k8s cohort-link``): each test is one attempt, made for real against the
manifest builder, the Job's command in an emulated pod, or the gate's reading of the Job's output,
and asserts that it fails.

The threat: a researcher (who controls the uploaded list and their home) or a compromised pod tries
to make the Job mount more than the one staged list (another request's list, the key store), to
make it act for another project, or to have the gate accept an output it did not produce.
"""

from __future__ import annotations

import hashlib
import json
import os

import polars as pl
import pytest
from cohort_link_k8s_support import (
    PROJECT,
    STORED,
    bwrap_available,
    link_job,
    make_platform,
    prepare_output,
    published_audit,
    run_in_pod,
    stage,
)

from pds_kernel.airlock import cohort_intake, cohort_link
from pds_kernel.airlock.cohort_link_job import RESULT_MARKER, parse_link_log
from pds_kernel.errors import IntegrityError, InvalidInput, PermissionDenied
from pds_kernel.permissions import SERVICE_COHORT_LINK, SERVICE_EXTRACT_BUILD

REQUEST = "5" * 32
needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (user namespaces) emulates the pod")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return make_platform(tmp_path_factory.mktemp("link-attacks"))


_counter = iter(range(10_000))


def _request() -> str:
    return f"{next(_counter):032x}"


def _linked(settings, cohort) -> tuple:
    """A request whose list the real linker linked into ``link/`` (as the Job does), and its result."""
    request = _request()
    directory = stage(settings, request, cohort.path.read_bytes())
    out = prepare_output(directory)
    result = cohort_intake.link_list(SERVICE_COHORT_LINK, PROJECT, directory / "raw" / STORED,
                                     keys=settings.paths.keys, ttp=settings.paths.ttp,
                                     extract=settings.paths.projects / PROJECT / "extract", out=out)
    return directory, out, result


def _read(directory, out, result):
    columns = cohort_link.study_columns(directory / "raw" / STORED)
    return cohort_link.read_output(out, result, columns, 10 * 2**20)


# ---- what the Job mounts ---------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    f"{PROJECT}/{REQUEST}/raw/../../../keys/{PROJECT}.key",  # up and into the key store's layout
    f"{PROJECT}/{REQUEST}/raw/..",  # the request's whole directory
    f"/{PROJECT}/{REQUEST}/raw/{STORED}",  # absolute
    f"{PROJECT}/{'6' * 32}/raw/{STORED}",  # another request's list
    f"other-2024/{REQUEST}/raw/{STORED}",  # another project's staging
    f"{PROJECT}/{REQUEST}/raw/./{STORED}",  # not normalised
    f"{PROJECT}/{REQUEST}/raw/{STORED}/../../link",  # the output directory as the input
    f"{PROJECT}/{REQUEST}/raw",  # the raw directory
])
def test_raw_list_path_escaping_the_request_is_never_mounted(raw):
    with pytest.raises(InvalidInput, match="is not a staged cohort list"):
        link_job(REQUEST, raw=raw)


@pytest.mark.parametrize("project", ["../diab-2024", "diab-2024/..", "..", "diab-2024/../other-2024"])
def test_project_id_with_dot_dot_makes_no_job(project):
    """The key's sub-path (keys/<project>.key) and the output's are built from the project id."""
    with pytest.raises(InvalidInput, match="invalid project id"):
        link_job(REQUEST, raw=f"{project}/{REQUEST}/raw/{STORED}", project=project)


def test_request_id_with_dot_dot_makes_no_job():
    with pytest.raises(InvalidInput, match="invalid request id"):
        link_job("../" + REQUEST[3:], raw=f"{PROJECT}/../{REQUEST[3:]}/raw/{STORED}")


def _pod_naming(platform, tmp_path, project: str):
    """Stage a request of PROJECT and run its pod with a command naming ``project`` instead:
    (the finished process, the output directory)."""
    settings, cohort = platform
    request = _request()
    out = prepare_output(stage(settings, request, cohort.path.read_bytes()))
    done = run_in_pod(settings, link_job(request, settings=settings), tmp_path / "scratch",
                      argv_tail=["-I", "-m", "pds_kernel.k8s", "cohort-link", project])
    return done, out


@needs_bwrap
def test_job_command_for_a_dot_dot_project_links_nothing(platform, tmp_path):
    """The pod is made for PROJECT; its command is changed to name ``../keys``: it refuses before
    reading anything and writes nothing to the output directory."""
    done, out = _pod_naming(platform, tmp_path, "../keys")
    assert done.returncode != 0 and "invalid project id" in done.stdout
    with pytest.raises(InvalidInput, match="invalid project id"):
        parse_link_log(done.stdout)
    assert list(out.iterdir()) == []


@needs_bwrap
def test_job_cannot_read_another_projects_key(platform, tmp_path):
    """A pod made for PROJECT whose command names another project that has a key: only PROJECT's key
    file is mounted, so the other key is not there to use."""
    from pds_kernel.pseudo import KeyStore

    KeyStore(platform[0].paths.keys).ensure("other-2024", "setup")
    done, out = _pod_naming(platform, tmp_path, "other-2024")
    assert done.returncode != 0 and "has no pseudonymisation key" in done.stdout
    assert list(out.iterdir()) == []


@needs_bwrap
def test_forged_result_line_through_a_column_name(platform, tmp_path):
    """A study column named with a newline and a forged result line: the log the gate reads holds the
    pod's refusal (escaped), never the forged result."""
    settings, cohort = platform
    forged = json.dumps({"report": {"rows": 1, "matched": 1, "unmatched": 0, "duplicates": 0, "invalid": 0,
                                    "match_rate": 1.0}, "cohort_sha256": "0" * 64})
    frame = pl.read_csv(cohort.path).with_columns(pl.lit("x").alias(f"arm\n{RESULT_MARKER}{forged}"))
    request = _request()
    directory = stage(settings, request, frame.write_csv().encode())
    prepare_output(directory)
    done = run_in_pod(settings, link_job(request, settings=settings), tmp_path / "scratch")
    assert done.returncode != 0
    assert [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)][-1].find('"error"') > 0
    with pytest.raises(InvalidInput, match="study column"):
        parse_link_log(done.stdout)


# ---- what the gate accepts back --------------------------------------------------------------------
def test_output_directory_planted_as_a_link_to_a_researchers_home(platform, tmp_path):
    """``link/`` already exists (a link to a home holding a forged cohort) when the gate links: refused,
    and nothing of the home is read."""
    settings, cohort = platform
    request = _request()
    directory = stage(settings, request, cohort.path.read_bytes())
    home = tmp_path / "homes" / PROJECT / "alice" / "forged"
    home.mkdir(parents=True)
    (home / "cohort.csv").write_text("PERSON_ID,study_id,arm,inclusion\n" + "a" * 64 + ",1,A,2024-01-01\n")
    (home / "match_report.json").write_text(json.dumps({"rows": 1, "matched": 1, "unmatched": 0,
                                                        "duplicates": 0, "invalid": 0, "match_rate": 1.0}))
    os.symlink(home, directory / "link")
    with published_audit(settings) as audit, pytest.raises(IntegrityError, match="exists before its linkage"):
        cohort_link.link_staged(settings, PROJECT, request, directory, STORED, audit=audit)
    assert sorted(p.name for p in home.iterdir()) == ["cohort.csv", "match_report.json"]  # untouched


def test_output_replaced_by_a_link_to_a_researchers_file(platform, tmp_path):
    settings, cohort = platform
    directory, out, result = _linked(settings, cohort)
    forged = tmp_path / "home" / "cohort.csv"
    forged.parent.mkdir()
    os.chmod(out / "cohort.csv", 0o640)
    forged.write_bytes((out / "cohort.csv").read_bytes())  # even the same bytes: a link is not read
    (out / "cohort.csv").unlink()
    os.symlink(forged, out / "cohort.csv")
    with pytest.raises(IntegrityError, match="cannot be read"):
        _read(directory, out, result)


def test_output_swapped_for_other_people(platform):
    """cohort.csv rewritten with other PERSON_IDs (same header, same row count): the SHA-256 the
    linker reported does not match."""
    settings, cohort = platform
    directory, out, result = _linked(settings, cohort)
    table = pl.read_csv(out / "cohort.csv", infer_schema=False)
    other = table.with_columns(pl.Series("PERSON_ID", [hashlib.sha256(str(i).encode()).hexdigest()
                                                       for i in range(table.height)]))
    os.chmod(out / "cohort.csv", 0o640)
    (out / "cohort.csv").write_bytes(other.write_csv().encode())
    with pytest.raises(IntegrityError, match="SHA-256 differs"):
        _read(directory, out, result)


def test_forged_output_with_a_consistent_result_but_nirs_in_a_column(platform):
    """A compromised pod writes a cohort whose study column holds the NIRs and reports its true hash:
    the gate's own check of the values refuses it."""
    settings, cohort = platform
    directory, out, result = _linked(settings, cohort)
    table = pl.read_csv(out / "cohort.csv", infer_schema=False)
    nirs = pl.read_csv(cohort.path, infer_schema=False)["NIR"].str.replace_all(" ", "").head(table.height)
    forged = table.with_columns(nirs.alias("study_id")).write_csv().encode()
    os.chmod(out / "cohort.csv", 0o640)
    (out / "cohort.csv").write_bytes(forged)
    result = {**result, "cohort_sha256": hashlib.sha256(forged).hexdigest()}
    with pytest.raises(IntegrityError, match="shaped like a NIR"):
        _read(directory, out, result)


def test_forged_report_that_does_not_add_up(platform):
    settings, cohort = platform
    directory, out, result = _linked(settings, cohort)
    report = {**result["report"], "unmatched": 0}  # hide the unmatched people
    os.chmod(out / "match_report.json", 0o640)
    (out / "match_report.json").write_text(json.dumps(report))
    with pytest.raises(IntegrityError, match="not the one the linker reported"):
        _read(directory, out, result)
    with pytest.raises(IntegrityError, match="does not add up"):
        _read(directory, out, {**result, "report": report})


def test_extra_file_smuggled_into_the_output(platform):
    settings, cohort = platform
    directory, out, result = _linked(settings, cohort)
    (out / "nirs.csv").write_bytes(cohort.path.read_bytes())
    with pytest.raises(IntegrityError, match="holds"):
        _read(directory, out, result)


@pytest.mark.parametrize("actor", ["alice", "root", SERVICE_EXTRACT_BUILD])
def test_linker_run_by_anyone_but_the_cohort_link_service(platform, actor):
    """The project's key is used for a list only as service:cohort-link: a person (even an
    administrator) or another service calling the linker is refused before the key is read."""
    settings, cohort = platform
    request = _request()
    directory = stage(settings, request, cohort.path.read_bytes())
    out = prepare_output(directory)
    with pytest.raises(PermissionDenied, match="may not link a cohort list"):
        cohort_intake.link_list(actor, PROJECT, directory / "raw" / STORED, keys=settings.paths.keys,
                                ttp=settings.paths.ttp, extract=settings.paths.projects / PROJECT / "extract", out=out)
    assert list(out.iterdir()) == []


def test_the_local_linkage_counts_only_in_the_published_cohort(platform):
    """Someone who can write the project's folder rewrites the published ``COHORT.parquet`` to list
    every matched person of the list: the gate's local linkage reported them all "in the extract"
    (30 instead of 15) before it read the cohort as checked against its publication. Now the
    import is refused, saying who puts the extract right; put back, the count is 15 again."""
    from pds_kernel.extract.linkage import person_map
    from pds_kernel.extract.mount_check import ExtractRefused
    from pds_kernel.pseudo import KeyStore

    settings, cohort = platform
    target = (settings.paths.projects / PROJECT / "extract").resolve() / "COHORT.parquet"
    published = target.read_bytes()
    key = KeyStore(settings.paths.keys).get(PROJECT)
    everyone = person_map(key, pl.DataFrame({"BEN_NIR_PSA": list(cohort.matched_keys)})).select("PERSON_ID")
    with published_audit(settings) as audit:  # the publication, recorded before the rewrite
        os.chmod(target, 0o644)
        everyone.write_parquet(target)
        try:
            with pytest.raises(ExtractRefused, match="cohort list is counted in its project.s published extract.*pds extract build"):
                request = _request()
                cohort_link.link_staged(settings, PROJECT, request, stage(settings, request, cohort.path.read_bytes()),
                                        STORED, audit=audit)
        finally:
            target.write_bytes(published)
            os.chmod(target, 0o444)
        request = _request()
        _, _, report = cohort_link.link_staged(settings, PROJECT, request, stage(settings, request,
                                               cohort.path.read_bytes()), STORED, audit=audit)
    assert report["in_extract"] == 15
