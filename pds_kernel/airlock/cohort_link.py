"""Where a staged cohort list is linked, and what the gate accepts back (``cohort_link.runner``).

* ``local``: the gate links it itself (:func:`.cohort_intake.link_list` as ``service:cohort-link``,
  with ``paths.keys`` and ``paths.ttp`` of this machine);
* ``kubernetes``: a short Job does (:mod:`.cohort_link_job`); the gate never holds the keys.

Both write into ``staging/<project>/<request>/link/`` (the Job through its second container, which
copies only those two files, within ``max_output_bytes``, from the linker's pod-local folder), a
directory the gate creates empty just before (a directory already there is refused) and that no
researcher can write; the gate then
reads it back and accepts only: exactly ``cohort.csv`` and ``match_report.json``, regular files
(never followed links), of bounded size, the CSV's SHA-256 the one the linker reported, the report
the one it reported with ``rows = matched + unmatched + duplicates + invalid``, the CSV's header
``PERSON_ID`` + the raw list's study columns, ``matched`` rows, every PERSON_ID 64 hex digits and
no value shaped like a NIR. Anything else refuses the import: never a partial result. The
directory is removed once read (the request's files are staged from what was read).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import polars as pl

from ..errors import IntegrityError, InvalidInput
from ..extract.mount_check import ExtractRefused, expected_mount
from ..extract.spec import PERSON_ID
from ..permissions import SERVICE_COHORT_LINK
from ..settings import check_private_place
from . import cohort_intake
from .cohort_link_job import LINK_DIR, RAW_DIR, run_link_job
from .extract_reads import gate_extract, persons_in_cohort

RUNNERS = ("local", "kubernetes")
REPORT_KEYS = {"rows", "matched", "unmatched", "duplicates", "invalid", "match_rate"}
MAX_REPORT_BYTES = 4096
_PERSON_ID = re.compile(r"^[0-9a-f]{64}$")


def study_columns(raw: Path) -> list[str]:
    """The study's columns of the raw list (its header without the NIR column)."""
    header = cohort_intake.read_cohort(raw).columns
    return [c for c in header if c != cohort_intake.NIR_COLUMN]


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path``: a regular file (a link is not followed) of at most ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise IntegrityError(f"the linker's {path.name} cannot be read ({exc.strerror}): import refused") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(f"the linker's {path.name} is not a regular file: import refused")
        if info.st_size > limit:
            raise IntegrityError(f"the linker's {path.name} is larger than the gate reads ({limit} bytes)")
        return handle.read(limit + 1)


def _check_report(report, claimed: dict) -> dict:
    if not isinstance(report, dict) or report != claimed:
        raise IntegrityError("the match report is not the one the linker reported: import refused")
    keys = set(report)
    if not (REPORT_KEYS <= keys <= REPORT_KEYS | {"in_extract"}):
        raise IntegrityError(f"the match report has the keys {sorted(keys)[:10]}: import refused")
    counts = {k: report[k] for k in keys - {"match_rate"}}
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in counts.values()):
        raise IntegrityError("the match report's counts are not non-negative integers: import refused")
    if report["rows"] != report["matched"] + report["unmatched"] + report["duplicates"] + report["invalid"]:
        raise IntegrityError("the match report does not add up (rows = matched + unmatched + duplicates + "
                             "invalid): import refused")
    return report


def read_output(out: Path, result: dict, columns: list[str], max_bytes: int) -> tuple[bytes, bytes, dict]:
    """(cohort.csv, match_report.json, report) read back from ``out`` and checked against the
    linker's ``result`` (see the module docstring); :class:`IntegrityError` otherwise."""
    names = sorted(os.listdir(out))
    expected = sorted([cohort_intake.COHORT_OUTPUT, cohort_intake.REPORT_OUTPUT])
    if names != expected:
        raise IntegrityError(f"the linker's output holds {names[:10]}, not {expected}: import refused")
    cohort = _read_regular(out / cohort_intake.COHORT_OUTPUT, max_bytes)
    report_bytes = _read_regular(out / cohort_intake.REPORT_OUTPUT, MAX_REPORT_BYTES)
    if hashlib.sha256(cohort).hexdigest() != result.get("cohort_sha256"):
        raise IntegrityError("cohort.csv is not the file the linker wrote (SHA-256 differs): import refused")
    try:
        report = _check_report(json.loads(report_bytes), result.get("report"))
    except ValueError:
        raise IntegrityError("the match report is not JSON: import refused") from None
    try:
        table = pl.read_csv(cohort, infer_schema=False)
    except (pl.exceptions.PolarsError, ValueError):
        raise IntegrityError("cohort.csv is not a readable CSV file: import refused") from None
    if table.columns != [PERSON_ID, *columns]:
        raise IntegrityError(f"cohort.csv has the columns {table.columns[:10]}, not {PERSON_ID} + the list's "
                             "study columns: import refused")
    if table.height != report["matched"]:
        raise IntegrityError("cohort.csv does not hold the matched rows the report counts: import refused")
    if table.height and not table[PERSON_ID].str.contains(_PERSON_ID.pattern).all():
        raise IntegrityError("cohort.csv holds a PERSON_ID that is not a pseudonym: import refused")
    for column in columns:
        if table.height and cohort_intake.normalise(table[column]).map_elements(
                cohort_intake.nir_is_valid, return_dtype=pl.Boolean).any():
            raise IntegrityError(f"cohort.csv's column {column!r} holds a value shaped like a NIR: import refused")
    return cohort, report_bytes, report


def link_staged(settings, project: str, request_id: str, directory: Path, stored: str, *,
                audit=None) -> tuple[bytes, bytes, dict]:
    """Link the raw list ``directory/raw/<stored>`` of a request with the configured runner; return
    what :func:`read_output` accepted. Every failure raises (the import is refused). The extract
    the linked people are counted in (``in_extract``) is checked against what ``audit`` (the audit
    trail) recorded at its publication, by either runner: on Kubernetes the Job's pod checks it (a
    project never published, or an extract the pod refused,
    :class:`~pds_kernel.k8s.pod_status.ExtractMismatch`, refuses the import); locally the gate
    checks it as for an export and reads ``COHORT.parquet`` as checked
    (:func:`.extract_reads.persons_in_cohort`: an extract that fails refuses the import; a project
    with no extract has nothing to count in)."""
    runner = settings.cohort_link.runner
    if runner not in RUNNERS:
        raise InvalidInput(f"cohort_link.runner is {str(runner)[:20]!r}: use local or kubernetes (ask an admin)")
    raw = directory / RAW_DIR / stored
    columns = study_columns(raw)  # a list the gate cannot read is refused before anything runs
    if audit is None:
        raise ExtractRefused("the project's extract cannot be checked against its publication here "
                             "(no audit trail given to the cohort linkage)")
    expected = checked = None
    if runner == "kubernetes":
        expected = expected_mount(settings, audit, project)
    else:  # counted in the published extract, read as checked (none: nothing to count in)
        checked = gate_extract(settings, audit, project,
                               why="a cohort list is counted in its project's published extract")
    out = directory / LINK_DIR
    try:
        out.mkdir()
    except FileExistsError:  # nothing but this function makes it: someone put it there first
        raise IntegrityError(f"{LINK_DIR}/ of request {request_id} exists before its linkage: import refused") from None
    out.chmod(0o770)  # the Job runs as the gate's uid (the chart's workspace.uid) and fsGroup
    max_bytes = 8 * os.stat(raw).st_size + 64 * 1024  # a PERSON_ID is 64 characters, a NIR 15
    try:
        if runner == "local":
            check_private_place(settings.paths, "ttp")  # the NIR correspondence: never where a workspace reads
            result = cohort_intake.link_list(
                SERVICE_COHORT_LINK, project, raw, keys=settings.paths.keys, ttp=settings.paths.ttp,
                extract=settings.paths.projects / project / "extract", out=out,
                count_in_extract_of=lambda linked: None if checked is None else persons_in_cohort(
                    settings.paths.projects, checked, linked))
        else:
            result = run_link_job(settings, project, request_id, f"{project}/{request_id}/{RAW_DIR}/{stored}",
                                  max_output_bytes=max_bytes + MAX_REPORT_BYTES, expected=expected)
        return read_output(out, result, columns, max_bytes)
    finally:
        shutil.rmtree(out, ignore_errors=True)
