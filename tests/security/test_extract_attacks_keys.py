"""Attacks on the extract boundary (2/3): linkage across projects, the keys, the published extract
after publication, and who may build, check or destroy a key. Real builds on the small synthetic
lake, the real key store, registry and audit trail."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import replace
from datetime import date

import extract_attacks_support
import polars as pl
import pytest
from extract_attacks_support import (
    SMALL_SPEC,
    denied,
    extract_dir,
    manifest_of,
    rewrite_file,
)
from sqlalchemy import insert

from pds_kernel.audit import AuditRow
from pds_kernel.errors import IntegrityError, PermissionDenied
from pds_kernel.extract.build import SPEC_COPY, run_build, run_check
from pds_kernel.extract.layout import bucket, entry_files
from pds_kernel.extract.order import sort_rows
from pds_kernel.extract.spec import PERSON_ID, parse_spec
from pds_kernel.permissions import SERVICE_COHORT_LINK, SERVICE_EXTRACT_BUILD, SERVICE_REGISTRY_SYNC, Impersonation
from pds_kernel.pseudo import KeyStore, pseudonym
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime

MI_SPEC = SMALL_SPEC.replace("project: diab-study", "project: mi-study")


rows = extract_attacks_support.rows  # fixtures: the small lake's rows, the lake and the registry
world = extract_attacks_support.world


def _build(runtime, project="diab-study", actor="root", **kw):
    return run_build(runtime, project, parse_spec(MI_SPEC if project == "mi-study" else SMALL_SPEC), actor=actor, **kw)


# ---- 2. linkage across projects, and the keys ---------------------------------------------------
def test_the_same_persons_get_unrelated_pseudonyms_in_two_projects(world):
    """Same spec, same lake, two projects: the same cohort, and not one PERSON_ID in common."""
    diab = set(pl.read_parquet(_build(world).path / "COHORT.parquet")[PERSON_ID])
    mi = set(pl.read_parquet(_build(world, "mi-study").path / "COHORT.parquet")[PERSON_ID])
    assert len(diab) == len(mi) > 5 and not diab & mi


def test_no_key_is_readable_from_the_extract_the_projects_directory_or_the_audit_trail(world):
    """grep every file under projects/ (what workspaces mount), the state directory (database,
    audit trail) and the logs for the key, raw, in hex and in base64; the key store is 0700 and
    the key 0600, outside projects/."""
    built = _build(world)
    settings = world.settings
    key = KeyStore.from_runtime(world).get("diab-study")
    forms = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)]
    for root in (settings.paths.projects, settings.paths.state, settings.paths.reports):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert not any(form in data for form in forms), path
    keys = settings.paths.keys
    assert keys.stat().st_mode & 0o777 == 0o700
    assert (keys / "diab-study.key").stat().st_mode & 0o777 == 0o600
    assert not keys.resolve().is_relative_to(settings.paths.projects.resolve())
    assert not any(p.suffix == ".key" for p in built.path.rglob("*"))


@pytest.mark.parametrize("inside", ["projects", "homes", "imports", "staging", "outbox"])
def test_a_key_store_configured_where_workspaces_or_reviewers_read_is_refused(world, inside):
    """paths.keys set (by mistake or on purpose) inside the projects' directory: the first build
    would write the key where the project's workspaces mount their extract."""
    paths = world.settings.paths
    keys = getattr(paths, inside) / "diab-study" / "keys"
    runtime = Runtime(replace(world.settings, paths=replace(paths, keys=keys)))
    try:
        with pytest.raises(PermissionDenied, match="paths.keys .* is inside paths." + inside):
            _build(runtime)
    finally:
        runtime.close()
    assert not keys.exists()


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_key_file_linked_to_another_projects_key_is_refused(world, link):
    """keys/mi-study.key made a link to diab-study's key: both projects would share pseudonyms,
    so their extracts could be joined person by person."""
    _build(world)
    keys = world.settings.paths.keys
    (os.symlink if link == "symbolic" else os.link)(keys / "diab-study.key", keys / "mi-study.key")
    with pytest.raises(PermissionDenied, match="key file of project mi-study is a link"):
        _build(world, "mi-study")
    assert not extract_dir(world.settings, "mi-study").exists()


def test_a_destroyed_key_stays_destroyed(world):
    """Destroyed at the end of the project; the project reopened: the rebuild and the check are
    refused with a clear message, and so is a rebuild after the tombstone was deleted (the audit
    trail remembers the destruction)."""
    _build(world)
    registry = Registry.from_runtime(world)
    registry.close_project("root", "diab-study")
    KeyStore.from_runtime(world).destroy("diab-study", "root", confirm=True)
    registry.upsert_project("root", "diab-study", status="active")
    with pytest.raises(PermissionDenied, match="the key of project diab-study was destroyed"):
        _build(world)
    with pytest.raises(PermissionDenied, match="was destroyed"):
        run_check(world, "diab-study", actor="root")
    (world.settings.paths.keys / "diab-study.destroyed").unlink()
    with pytest.raises(PermissionDenied, match="the key of project diab-study was destroyed"):
        _build(world)
    assert not (world.settings.paths.keys / "diab-study.key").exists()


def test_pseudonyms_order_and_partitions_say_nothing_of_the_raw_identifier(world, rows):
    """Every PERSON_ID is 64 lower-case hex digits with no trace of the identifier; rows are in the
    canonical order (sorted on every column, PERSON_ID first) and each partition holds the rows of
    its pseudonym's bucket, so neither the row order nor the partition follows the raw identifier."""
    built = _build(world, persons_per_partition=3)
    key = KeyStore.from_runtime(world).get("diab-study")
    nir_of = {pseudonym(key, r["BEN_NIR_PSA"]): r["BEN_NIR_PSA"] for r in rows["IR_BEN_R"]}
    cohort = pl.read_parquet(built.path / "COHORT.parquet")[PERSON_ID].to_list()
    assert cohort == sorted(cohort) and cohort != sorted(cohort, key=lambda p: nir_of[p])
    for pid in cohort:
        assert len(pid) == 64 and pid == pid.lower() and int(pid, 16) >= 0
        assert nir_of[pid] not in pid and nir_of[pid].lower() not in pid
    manifest = built.manifest
    assert manifest["partitions"] >= 3
    for entry in manifest["tables"].values():
        for index, item in enumerate(entry_files(entry)):
            frame = pl.read_parquet(built.path / item["file"])
            assert frame.equals(sort_rows(frame)), item["file"]
            if "files" in entry and frame.height:
                assert (frame.select(bucket(entry["partitioning"]["partitions"]))[PERSON_ID] == index).all()


# ---- 5. the published extract, after publication -----------------------------------------------
def _tamper_consistently(world, built) -> None:
    """Drop one claim from the published claims table and rewrite the manifest to match: the
    files and the manifest agree, every row conforms; only the history can tell."""
    directory = built.path
    directory.chmod(0o755)
    (directory / "ER_PRS_F").chmod(0o755)
    claims = pl.read_parquet(directory / entry_files(built.manifest["tables"]["ER_PRS_F"])[0]["file"])
    rewrite_file(directory, "ER_PRS_F", claims.slice(1))


def test_a_published_extract_changed_consistently_is_detected_by_the_check(world):
    built = _build(world)
    _tamper_consistently(world, built)
    report = run_check(world, "diab-study", actor="root")
    assert not report.ok
    assert any("is not the one published" in r for r in report.reasons), report.reasons


def test_a_pinned_rebuild_refuses_a_manifest_vouched_for_by_a_row_planted_without_the_key(world):
    """Red team 22: the manifest edited (to pin an older lake version) and an ``extract.build``
    row naming the same build with the edited manifest's SHA-256 planted in the database by someone
    without the audit key. GOT THROUGH before: any row naming the build vouched for its manifest.
    Now only the latest publication, authenticated, does: the rebuild is refused, and so is the
    check's reading of the manifest."""
    built = _build(world)
    manifest = manifest_of(built.path)
    built.path.chmod(0o755)
    (built.path / "manifest.json").chmod(0o644)
    manifest["builder"] = "someone-else"
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (built.path / "manifest.json").write_bytes(data)
    details = {"build_id": built.path.name, "manifest_sha256": hashlib.sha256(data).hexdigest()}
    with world.audit._sessions() as session:
        session.execute(insert(AuditRow).values(
            time="2100-01-01T00:00:00+00:00", schema_version=1, actor="admin", action="extract.build",
            target="project:diab-study", project="diab-study", outcome="ok", details=json.dumps(details),
            prev_hash="0" * 64, hash="f" * 64, chain_version=2))
        session.commit()
    with pytest.raises(IntegrityError, match="cannot be relied on"):
        _build(world, pin=manifest["lake_versions"])
    report = run_check(world, "diab-study", actor="root")
    assert not report.ok and any("cannot be relied on" in r for r in report.reasons), report.reasons


def test_a_pinned_rebuild_refuses_a_manifest_changed_after_publication(world):
    """--same-lake-version reads the versions to pin from the published manifest: edited (to pin
    an older version, from before a correction), the rebuild is refused."""
    built = _build(world)
    manifest = manifest_of(built.path)
    built.path.chmod(0o755)
    (built.path / "manifest.json").chmod(0o644)
    manifest["builder"] = "someone-else"
    (built.path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with pytest.raises(IntegrityError, match="manifest.json of project diab-study.s extract is not the one published"):
        _build(world, pin=manifest["lake_versions"])


def test_a_manifest_listing_a_file_outside_the_extract_is_refused(world, tmp_path):
    """A table's file listed as ../../mi-study/...: the check never read it, nor refused it."""
    built = _build(world)
    other = _build(world, "mi-study")
    directory = built.path
    directory.chmod(0o755)
    manifest = manifest_of(directory)
    outside = os.path.relpath(other.path / "COHORT.parquet", directory)
    manifest["tables"]["COHORT"] = {**manifest["tables"]["COHORT"], "file": outside}
    (directory / "manifest.json").chmod(0o644)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    (directory / "COHORT.parquet").chmod(0o644)
    (directory / "COHORT.parquet").unlink()
    from pds_kernel.extract.build import raw_identifiers
    from pds_kernel.extract.conformity import check_extract

    cohort = pl.read_parquet(other.path / "COHORT.parquet")[PERSON_ID]
    report = check_extract(directory, parse_spec(SMALL_SPEC), cohort, raw_identifiers(world.settings.paths.lake))
    assert not report.ok
    assert any("is not a file of the extract" in r for r in report.reasons)


# ---- 6. who may build, check, destroy a key ------------------------------------------------------
ACTORS = {
    "researcher": "alice",
    "output-checker": "carol",
    "impersonated researcher": Impersonation("alice", by="root"),
    "cohort-link service": SERVICE_COHORT_LINK,
    "registry-sync service": SERVICE_REGISTRY_SYNC,
    "OS account": "os:mallory",
    "unknown user": "mallory",
}


@pytest.mark.parametrize("who", list(ACTORS))
def test_only_administrators_and_the_build_service_build_or_check(world, who):
    actor = ACTORS[who]
    with pytest.raises(PermissionDenied, match="may not build extracts"):
        _build(world, actor=actor)
    assert not extract_dir(world.settings, "diab-study").exists()
    _build(world)
    with pytest.raises(PermissionDenied, match="may not check extracts"):
        run_check(world, "diab-study", actor=actor)
    label = actor.label if isinstance(actor, Impersonation) else actor
    assert len(denied(world, "extract.build", label)) == 1 and len(denied(world, "extract.check", label)) == 1
    assert denied(world, "extract.build", label)[0].details["reason"]


def test_an_administrator_acting_as_another_is_named_in_the_manifest(world):
    """root --as admin2 builds: the manifest says who did it, not only whom they acted as."""
    built = _build(world, actor=Impersonation("admin2", by="root"))
    assert built.manifest["builder"] == "root acting as admin2"
    assert manifest_of(built.path)["builder"] == "root acting as admin2"


@pytest.mark.parametrize("who", ["researcher", "output-checker", "impersonated administrator", "build service"])
def test_only_an_administrator_in_person_destroys_a_key(world, who):
    """Destroying a key cannot be undone: an administrator acting as another (--as) is refused
    like a researcher, a checker and the extract-build service; each refusal is audited."""
    _build(world)
    Registry.from_runtime(world).close_project("root", "diab-study")
    actor = {"researcher": "alice", "output-checker": "carol",
             "impersonated administrator": Impersonation("admin2", by="root"),
             "build service": SERVICE_EXTRACT_BUILD}[who]
    with pytest.raises(PermissionDenied, match="may not destroy pseudonymisation keys"):
        KeyStore.from_runtime(world).destroy("diab-study", actor, confirm=True, today=date(2030, 1, 1))
    assert (world.settings.paths.keys / "diab-study.key").is_file()
    label = actor.label if isinstance(actor, Impersonation) else actor
    assert len(denied(world, "pseudo.key.destroy", label)) == 1


def test_the_kept_spec_is_not_in_what_the_workspace_mounts(world):
    """projects/<id>/spec.yaml sits next to the extract link, not in it (the workspace mounts the
    extract); it names the linkage file, never its rows."""
    built = _build(world)
    assert (world.settings.paths.projects / "diab-study" / SPEC_COPY).is_file()
    assert not (built.path / SPEC_COPY).exists()
