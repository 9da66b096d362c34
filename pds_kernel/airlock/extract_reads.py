"""What the gate reads of a project's extract, checked once per submission and read as checked.

:func:`gate_extract` checks the project's extract as a workspace's is
(:func:`pds_kernel.extract.mount_check.check_for_workspace`): the audit trail's latest publication,
every file regular and listed, re-hashed up to ``hub.extract_hash_max_bytes``. That one check
serves the whole submission: the gate's reads below, and the local model check's sandbox, whose
launcher mounts the build only when its fingerprint is still the one this check found.

:func:`person_id_prefixes` (``COHORT.parquet``: the table pre-gate refuses the project's
PERSON_IDs) and :func:`extract_numbers` (the rule ``model-tensors``) read the files through the
checked build's descriptors and compare the tree with the check after reading
(:func:`pds_kernel.extract.checked_read.read_checked`): a file replaced or rewritten since the
check refuses the submission. What they read is cached by the checked build and fingerprint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..extract.checked_read import read_checked
from ..extract.mount_check import CheckedMount, ExtractRefused, check_for_workspace
from .checks import content
from .checks.model_reference import Reference, manifest_tables, read_reference
from .checks.pregates import PSEUDONYM_PREFIX

COHORT_FILE = "COHORT.parquet"
MANIFEST_FILE = "manifest.json"
PERSON_COLUMN = content.PERSON_ID


def gate_extract(settings, audit, project: str, *,
                 why: str = "the gate checks an export against its project's published extract") -> CheckedMount | None:
    """``project``'s extract checked for the gate, or None when it has none (nothing to check);
    :class:`ExtractRefused` when it fails, saying ``why`` it was checked and who puts it right."""
    if not os.path.lexists(settings.paths.projects / project / "extract"):
        return None
    try:
        return check_for_workspace(settings, audit, project)
    except ExtractRefused as exc:
        raise ExtractRefused(f"{why}, and {exc}") from None


#: what was read of a checked extract, by (projects folder, project, build id, fingerprint)
_PREFIXES: dict[tuple[str, str, str, str], frozenset[str] | None] = {}
_NUMBERS: dict[tuple[str, str, str, str], Reference] = {}


def _remembered(cache: dict, size: int, projects_root: Path, extract: CheckedMount, read):
    """``read()``, or what it gave for the same checked tree (same build, same fingerprint)."""
    key = (str(projects_root), extract.expected.project, extract.expected.build_id, extract.fingerprint)
    if key not in cache:
        value = read()
        while len(cache) >= size:
            cache.pop(next(iter(cache)), None)
        cache[key] = value
    return cache[key]


def person_id_prefixes(projects_root: Path, extract: CheckedMount | None) -> frozenset[str] | None:
    """Prefixes of the PERSON_IDs of the checked extract's ``COHORT.parquet`` (None without an
    extract, or when the extract has no cohort)."""
    if extract is None:
        return None
    return _remembered(_PREFIXES, 8, projects_root, extract,
                       lambda: read_checked(Path(projects_root), extract, _read_prefixes))


def persons_in_cohort(projects_root: Path, extract: CheckedMount, persons) -> int | None:
    """How many of ``persons`` (a polars frame with a PERSON_ID column) the checked extract's
    ``COHORT.parquet`` holds (None when it has no cohort): a cohort import's ``in_extract``."""
    from .cohort_intake import count_in_cohort

    def count(open_file) -> int | None:
        if COHORT_FILE not in _listed(open_file):
            return None
        with open_file(COHORT_FILE) as handle:
            return count_in_cohort(persons, handle)

    return read_checked(Path(projects_root), extract, count)


def _read_prefixes(open_file) -> frozenset[str] | None:
    import pyarrow.parquet as pq

    if COHORT_FILE not in _listed(open_file):
        return None
    with open_file(COHORT_FILE) as handle:
        column = pq.read_table(handle, columns=[PERSON_COLUMN]).column(PERSON_COLUMN)
    return frozenset(str(v)[:PSEUDONYM_PREFIX].lower() for v in column.to_pylist() if v)


def extract_numbers(projects_root: Path, extract: CheckedMount | None) -> Reference | None:
    """The checked extract as numbers (:mod:`.checks.model_reference`), or None without one."""
    if extract is None:
        return None
    return _remembered(_NUMBERS, 2, projects_root, extract, lambda: read_checked(
        Path(projects_root), extract, lambda open_file: read_reference(manifest_tables(_manifest(open_file)),
                                                                         open_file)))


def _manifest(open_file) -> dict:
    with open_file(MANIFEST_FILE) as handle:
        return json.loads(handle.read())


def _listed(open_file) -> set[str]:
    """The files the checked manifest lists."""
    return {rel for files in manifest_tables(_manifest(open_file)).values() for rel in files}
