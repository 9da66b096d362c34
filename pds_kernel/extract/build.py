"""Build, check and publish a project's extract.

``build_plan(spec)`` says what will run (pure); ``run_build`` runs it:

1. authorise the builder (an open project; an administrator or the operator of the machine), audited;
2. check the spec against the lake;
3. get the project's key (created on first build);
4. select the cohort's persons, pseudonymise them (one HMAC per person); claim and stay numbers
   are keyed by the project too (:mod:`.record_keys`), so they link no one across projects;
5. write each table into a staging directory, partitioned by a hash of PERSON_ID (:mod:`.layout`),
   rows sorted on every column inside each file and fixed writer options, so the polars and Dask
   paths, and any rebuild, give the same bytes; on Dask the workers write the files
   (:mod:`.dask_backend`) and the client gets back only counts and hashes;
6. write the manifest (spec hash, lake snapshot, partitioning, row counts, size and SHA-256 of every
   file, builder, time);
7. run the conformity check, partition by partition where the backend runs (on the workers on
   Dask); a refused extract is deleted, never published;
8. make files 0444 and directories 0555, and swap ``projects/<id>/extract`` to the new build in one
   atomic step (``extract`` is a symbolic link to ``builds/<build id>``); the audit entry of the build
   records the manifest's SHA-256, the extract's size and its files' fingerprint, against which every
   workspace mount is checked (:mod:`.mount_check`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import polars as pl

from .. import lake as lake_mod
from .. import permissions
from ..audit import AuditEvent, Outcome, Selector
from ..errors import DisclosureRisk, IntegrityError, NotFound, PdsError, PermissionDenied
from ..pseudo import KeyStore
from ..registry import Registry
from ..registry.names import check_project_id
from ..snds.tables import TABLES
from .cohort import select_persons
from .conformity import MANIFEST, ConformityReport, check_extract
from .frames import PARTITIONED_TABLES, Backend, LakeFrames, PolarsBackend
from .identifier_search import lookup_key
from .layout import PARQUET_OPTIONS, is_partitioned, partition_count, table_entry, write_frame
from .linkage import cohort_table, death_maps, person_map, read_linkage_file
from .pinning import lake_changes, pinned_versions, previous_versions
from .record_keys import record_key
from .select import table_rows
from .spec import COHORT_TABLE, PERSON_ID, RAW_ID_COLUMNS, ExtractSpec, check_against_lake, load_spec
from .tree import Tree, TreeRefused, scan_unwritten

log = logging.getLogger(__name__)

#: 2: tables with PERSON_ID are directories of partitions (:mod:`.layout`); 1: one file per table
MANIFEST_FORMAT = 2
SPEC_COPY = "spec.yaml"

OnStep = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    project: str
    path: Path
    manifest: dict
    report: ConformityReport


# ---- locations --------------------------------------------------------------------------------
def project_dir(settings, project: str) -> Path:
    return settings.paths.projects / check_project_id(project)


def extract_dir(settings, project: str) -> Path:
    return project_dir(settings, project) / "extract"


#: What a build writes in a project's directory, never through a symbolic link (``extract`` is one,
#: made by :func:`publish` only, and checked there).
_OWN_PATHS = ("builds", SPEC_COPY)
_BUILD_LINK = re.compile(r"^builds/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")


def check_project_paths(pdir: Path) -> None:
    """Refuse a project directory, or a place of it the build writes, that is a symbolic link:
    whoever planted it would have the extract written, or the spec copied, where it points."""
    for path in (pdir, *(pdir / name for name in _OWN_PATHS)):
        if path.is_symlink():
            raise PermissionDenied(f"{path} is a symbolic link: the build never writes through one; an "
                                   "administrator must remove it (and find out who put it there)")


# ---- plan -------------------------------------------------------------------------------------
def build_plan(spec: ExtractSpec) -> list[str]:
    """The steps a build of ``spec`` runs, in order (for progress bars and ``--dry-run``)."""
    steps = ["check the spec against the lake", "project key"]
    if spec.linkage:
        steps.append("read the linkage file")
    steps += [f"include {c.kind}" for c in spec.include]
    steps += [f"exclude {c.kind}" for c in spec.exclude]
    steps += [f"write {t}" for t in spec.output_tables()]
    steps += ["manifest", "conformity check", "publish"]
    return steps


# ---- authorisation ----------------------------------------------------------------------------
def authorise(runtime, actor: str, project: str, action: str, today: date | None = None):
    """Who may build or check an extract (:func:`pds_kernel.permissions.check_build_extract`): an
    active platform administrator or the extract-build Job, and only for an open project that is
    not halted. Audited when denied."""
    registry = Registry.from_runtime(runtime)
    info = registry.get_project(project)
    try:
        permissions.check_build_extract(registry, actor, info, action.split(".")[-1], today)
    except PermissionDenied as exc:
        runtime.audit.record(AuditEvent(actor=actor, action=action, target=f"project:{project}",
                                        project=project, outcome=Outcome.DENIED, details={"reason": str(exc)}))
        raise
    return info


# ---- reading the lake -------------------------------------------------------------------------
def raw_identifiers(lake: Path, among: pl.Series | None = None, *,
                    versions: dict[str, int] | None = None) -> pl.Series:
    """Every distinct raw person identifier value in the lake (for the conformity check); with
    ``among``, only those whose lookup key (:func:`.identifier_search.lookup_key`: a hash of the
    first characters) is one of its values.

    The conformity check passes the windows of the extract's texts as ``among``: testing the lake's
    identifier columns against that set is much cheaper than collecting every distinct identifier
    of the lake, and finds every identifier that a text of the extract may hold (the check then
    searches those few in its texts). With ``versions``, the tables at those versions (what a pinned
    build read)."""
    frames = LakeFrames(lake, versions=versions)
    wanted = None if among is None else pl.LazyFrame({"key": among.drop_nulls().unique()})
    parts = []
    for name, table in TABLES.items():
        columns = [c for c in table.column_names if c in RAW_ID_COLUMNS]
        if columns and lake_mod.has_table(lake, name):
            scan = frames.scan(name)
            for c in columns:
                ids = scan.select(pl.col(c).cast(pl.String).alias("id"))
                # filter (or take the distinct values) per column first: the final unique is small; a
                # semi join filters twice as fast as ``is_in`` against the extract's 100,000s of keys
                parts.append(ids.unique() if wanted is None else
                             ids.join(wanted, left_on=lookup_key(pl.col("id")), right_on="key", how="semi"))
    if not parts:
        return pl.Series("id", [], dtype=pl.String)
    # collected together, the column scans run side by side (a concat of them runs one by one)
    return pl.concat(pl.collect_all(parts)).get_column("id").drop_nulls().unique()


# ---- writing ----------------------------------------------------------------------------------
def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Write with fixed options and no timestamp, so equal frames give equal bytes."""
    df.rechunk().write_parquet(path, **PARQUET_OPTIONS)


def _write_table(backend: Backend, staging: Path, table: str, spec: ExtractSpec, persons_map: pl.DataFrame,
                 linked: pl.DataFrame | None, deaths: dict | None, partitions: int, numbers_key: bytes) -> dict:
    """Write ``table`` into ``staging`` (where the backend computes it) and return its manifest
    entry. COHORT (one row per person, built here from the person map) and tables without
    PERSON_ID are one file; the others are ``partitions`` files."""
    if table == COHORT_TABLE:
        df = cohort_table(persons_map, linked, spec.linkage)
        return table_entry(df.columns, write_frame(df, staging, table, None), None)
    split = partitions if is_partitioned(table, spec.output_columns(table)) else None
    columns, files = backend.write_table(table_rows, table, spec, persons_map, deaths, numbers_key,
                                         partitioned=table in PARTITIONED_TABLES, root=staging,
                                         table=table, partitions=split)
    return table_entry(columns, files, split)


def _make_read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    os.chmod(root, 0o555)


def _remove_tree(root: Path) -> None:
    """Delete a (read-only) build directory."""
    if not root.exists() and not root.is_symlink():
        return
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(root)


def _swap_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
    os.symlink(target, tmp)
    if link.exists() and not link.is_symlink():  # an extract directory from elsewhere: keep it aside
        os.rename(link, link.with_name(f"{link.name}.replaced-{secrets.token_hex(4)}"))
    os.replace(tmp, link)


def publish(settings, project: str, staging: Path, build_id: str) -> tuple[Path, Path | None]:
    """Make the staged build read-only and switch ``extract`` to it. Returns the build and the one
    it replaced (``None`` if none), which the caller removes (:func:`remove_superseded`) once the
    publication is in the audit trail: a running workspace's watcher tells the removal of a
    superseded build from tampering by that record (:mod:`.mount_watch`)."""
    pdir = project_dir(settings, project)
    builds = pdir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    final = builds / build_id
    # move first, then make read-only: moving a directory to another parent rewrites its `..`
    # entry, which needs write permission on it (refused to a non-root builder, e.g. the chart's Job)
    os.rename(staging, final)
    try:
        _make_read_only(final)
    except BaseException:
        _remove_tree(final)
        raise
    link = pdir / "extract"
    previous = os.readlink(link) if link.is_symlink() else None
    _swap_link(link, f"builds/{build_id}")
    # only a build this function published is removed: never where a planted link points
    if previous and _BUILD_LINK.fullmatch(previous) and previous != f"builds/{build_id}" \
            and not (pdir / previous).is_symlink():
        return final, pdir / previous
    return final, None


def remove_superseded(build: Path | None) -> None:
    """Remove the build a publication replaced (see :func:`publish`). A failure leaves it on disk,
    logged: the new build is published and audited whatever happens to the old one."""
    if build is None:
        return
    try:
        _remove_tree(build)
    except OSError as exc:
        log.warning("the superseded extract build %s could not be removed (%s); remove it by hand", build, exc)


def _write_spec_copy(pdir: Path, text: str) -> None:
    """Keep the accepted spec as ``spec.yaml``: a new file renamed over the old one (a link put in
    its place is replaced, never followed)."""
    tmp = pdir / f".{SPEC_COPY}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, pdir / SPEC_COPY)


# ---- the build --------------------------------------------------------------------------------
def _cohort(backend: Backend, spec: ExtractSpec, step: OnStep) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    linked = None
    if spec.linkage:
        linked = read_linkage_file(spec.linkage, backend)
        step("read the linkage file")
    return select_persons(backend, spec, linked, on_step=step), linked


def run_build(runtime, project: str, spec: ExtractSpec, *, actor: str, backend: Backend | None = None,
              on_step: OnStep | None = None, today: date | None = None,
              pin: dict[str, int] | None = None, persons_per_partition: int | None = None) -> BuildResult:
    """Build, check and publish the extract of ``project`` from ``spec``. See the module docstring.
    ``pin``: read the lake's tables at these versions (a rebuild on the versions of an earlier
    extract, see :func:`.pinning.pinned_versions`), else at their latest versions.
    ``persons_per_partition``: cohort persons per partition file (default
    :data:`.layout.PERSONS_PER_PARTITION`); the same value gives the same files."""
    settings = runtime.settings
    check_project_id(project)
    step = on_step or (lambda _name: None)
    event = AuditEvent(actor=actor, action="extract.build", target=f"project:{project}", project=project,
                       details={"spec_sha256": spec.sha256})
    if spec.project != project:
        raise PermissionDenied(f"the spec is for project {spec.project}, not {project}")
    authorise(runtime, actor, project, "extract.build", today)
    if pin is not None:  # the versions come from the published manifest: the one that was published
        verify_published_manifest(runtime, project)
    lake = settings.paths.lake
    own_backend = backend is None
    backend = backend or PolarsBackend(lake)
    pdir = project_dir(settings, project)
    staging = pdir / f".staging-{secrets.token_hex(6)}"
    try:
        check_project_paths(pdir)
        check_against_lake(spec, lake)
        versions = pinned_versions(lake, pin)
        backend.versions = versions
        snapshot = lake_mod.snapshot_id(lake, versions or None)
        changes = lake_changes(lake, previous_versions(settings, project), versions, spec.output_tables())
        step("check the spec against the lake")
        key = KeyStore.from_runtime(runtime).ensure(project, actor)
        step("project key")
        persons, linked = _cohort(backend, spec, step)
        persons_map = person_map(key, persons)
        numbers_key = record_key(key)
        del key
        deaths = death_maps(backend, persons_map) if "KI_CCI_R" in spec.tables else None
        staging.mkdir(parents=True)
        partitions = partition_count(persons.height, persons_per_partition)
        tables = {}
        for table in spec.output_tables():
            tables[table] = _write_table(backend, staging, table, spec, persons_map, linked, deaths, partitions,
                                         numbers_key)
            step(f"write {table}")
        build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        manifest = {
            "format": MANIFEST_FORMAT, "project": project, "build_id": build_id,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"), "builder": permissions.audit_actor(actor),
            "backend": backend.name, "spec_sha256": spec.sha256, "lake_snapshot": snapshot,
            "lake_versions": versions, "lake_changes": changes,
            "period": {"from": spec.start.isoformat(), "to": spec.end.isoformat()},
            "persons": persons.height, "partitions": partitions, "tables": tables,
        }
        _write_manifest(staging, manifest)
        step("manifest")
        report = check_extract(staging, spec, persons_map[PERSON_ID],
                               partial(raw_identifiers, lake, versions=versions), mapper=backend.map)
        step("conformity check")
        if not report.ok:
            raise DisclosureRisk("the extract was refused by the conformity check: " + "; ".join(report.reasons))
        manifest["conformity"] = report.as_dict()
        manifest_sha256 = _write_manifest(staging, manifest)
        final, superseded = publish(settings, project, staging, build_id)
        published = published_state(final)
        _write_spec_copy(pdir, spec.text)
        step("publish")
    except PdsError as exc:
        _remove_tree(staging)
        runtime.audit.record(event.with_outcome(Outcome.FAILED, reason=str(exc)))
        raise
    except BaseException as exc:
        _remove_tree(staging)
        runtime.audit.record(event.with_outcome(Outcome.FAILED, reason=f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        if own_backend:
            backend.close()
    runtime.audit.record(event.with_outcome(
        Outcome.OK, build_id=build_id, backend=backend.name, lake_snapshot=snapshot, lake_versions=versions,
        lake_changes=changes, persons=persons.height, manifest_sha256=manifest_sha256,
        files_fingerprint=published.fingerprint, bytes=published.total_bytes,
        rows={t: v["rows"] for t, v in tables.items()}, k_anonymity=report.k_min))
    remove_superseded(superseded)  # after the record: see publish
    log.info("built extract %s of project %s (%d persons)", build_id, project, persons.height)
    return BuildResult(project=project, path=final, manifest=manifest, report=report)


def published_state(build: Path) -> Tree:
    """The published build read as a workspace mount reads it (:func:`.tree.scan`): its size and
    the fingerprint of its files' state, recorded in the build's audit entry so that a later
    change is seen without re-hashing a large extract (see :mod:`.mount_check`); taken when no
    process could be changing a file unseen (:func:`.tree.scan_unwritten`)."""
    fd = os.open(build, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return scan_unwritten(fd)
    except TreeRefused as exc:
        raise IntegrityError(f"the published build {build.name} does not read back as it was written: {exc}") from None
    finally:
        os.close(fd)


def _write_manifest(directory: Path, manifest: dict) -> str:
    """Write ``manifest.json``; its SHA-256 (recorded in the audit entry of the build)."""
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    (directory / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def verify_published_manifest(runtime, project: str) -> str | None:
    """Refuse (:class:`IntegrityError`) a published ``manifest.json`` that is not the one its build
    wrote: the audit entry of the build (a hash chain) records its SHA-256, so a manifest rewritten
    with its files after publication (rows dropped, another version to pin) is told apart. Returns
    a note when the build predates that record (nothing to compare with), else None."""
    path = extract_dir(runtime.settings, project) / MANIFEST
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        build_id = json.loads(data).get("build_id")
    except (ValueError, AttributeError):
        build_id = None
    # the latest publication, authenticated (a row planted without the audit key is none: red team 22)
    latest, problem = runtime.audit.newest_entry([Selector(("extract.build",), f"project:{project}")])
    if problem is not None:
        raise IntegrityError(f"the audit trail's record of project {project}'s latest publication cannot be relied "
                             f"on ({problem}); an administrator runs `pds audit verify`")
    recorded = latest.details.get("manifest_sha256") if latest is not None else None
    if latest is not None and latest.details.get("build_id") == build_id and not recorded:
        return f"build {build_id} predates the manifest's record in the audit trail: manifest not compared"
    if latest is None or latest.details.get("build_id") != build_id or hashlib.sha256(data).hexdigest() != recorded:
        raise IntegrityError(f"the manifest.json of project {project}'s extract is not the one published (its "
                             "SHA-256 differs from the latest build's audit entry, or no build published it): the "
                             "extract was changed after publication; rebuild it and find out who changed it")
    return None


# ---- check and show a published extract -------------------------------------------------------
def read_manifest(settings, project: str) -> dict:
    path = extract_dir(settings, project) / MANIFEST
    if not path.is_file():
        raise NotFound(f"project {project} has no extract yet: run pds extract build {project}")
    return json.loads(path.read_text(encoding="utf-8"))


def run_check(runtime, project: str, *, actor: str, backend: Backend | None = None,
              today: date | None = None) -> ConformityReport:
    """Re-run the conformity check on the published extract (recomputes the cohort from the kept
    spec, the lake and the key). Audited as ``extract.check``."""
    authorise(runtime, actor, project, "extract.check", today)
    event = AuditEvent(actor=actor, action="extract.check", target=f"project:{project}", project=project)
    try:
        try:
            note = verify_published_manifest(runtime, project)
            tampered = None
        except IntegrityError as exc:
            note, tampered = None, str(exc)
        report = _check_published(runtime, project, backend)
        if tampered:
            report.refuse(tampered)
        if note:
            report.notes.append(note)
    except PdsError as exc:  # e.g. the lake version the extract was built from has expired
        runtime.audit.record(event.with_outcome(Outcome.FAILED, reason=str(exc)))
        raise
    runtime.audit.record(event.with_outcome(Outcome.OK if report.ok else Outcome.FAILED,
                                            reasons=report.reasons, k_anonymity=report.k_min))
    return report


def _check_published(runtime, project: str, backend: Backend | None) -> ConformityReport:
    """The conformity check of ``project``'s published extract, on the lake versions it was built from."""
    settings = runtime.settings
    directory = extract_dir(settings, project)
    versions = read_manifest(settings, project).get("lake_versions") or None
    spec = load_spec(project_dir(settings, project) / SPEC_COPY)
    lake = settings.paths.lake
    backend = backend or PolarsBackend(lake)
    backend.versions = versions  # the lake as the extract read it
    key = KeyStore.from_runtime(runtime).get(project)
    notes = []
    if spec.linkage and not spec.linkage.file.is_file():
        if spec.include:
            notes.append("the linkage file is gone: persons checked against the criteria only")
            persons = select_persons(backend, replace(spec, linkage=None))
            cohort = person_map(key, persons)[PERSON_ID]
        else:
            notes.append("the linkage file is gone: persons checked against the extract's COHORT table")
            cohort = pl.read_parquet(directory / f"{COHORT_TABLE}.parquet", columns=[PERSON_ID])[PERSON_ID]
    else:
        linked = read_linkage_file(spec.linkage, backend) if spec.linkage else None
        cohort = person_map(key, select_persons(backend, spec, linked))[PERSON_ID]
    del key
    report = check_extract(directory, spec, cohort, partial(raw_identifiers, lake, versions=versions),
                           mapper=backend.map)
    report.notes += notes
    return report
