"""Import requests through the real service: scan (real ClamAV with the test's own signatures),
reviews by the project's checkers, release into the imports area, manifest, revocation, and the
external cohort linkage on a synthetic delivery with a known match rate."""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from airlock_factories import PROJECT, files
from import_signatures import HASHED, MARKER, import_settings

from pds_kernel.airlock.imports import ImportService
from pds_kernel.airlock.imports_mount import MANIFEST
from pds_kernel.airlock.imports_scan import ImportLimits
from pds_kernel.airlock.staging import RefusedFiles
from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.extract.linkage import person_map
from pds_kernel.pseudo import KeyStore
from pds_kernel.snds.cohort_list import generate_cohort_list
from pds_kernel.snds.generator import generate

SCRIPT = b"import polars as pl\nprint('reference table loaded')\n"
TABLE = b"code,label\nE11,type 2 diabetes\nI21,myocardial infarction\n"
APPROVE = {"decision": "approve", "comment": "reference data, fine"}


@pytest.fixture
def settings(settings, tmp_path):
    return import_settings(settings, tmp_path / "clamav")


@pytest.fixture
def imports(service) -> ImportService:
    return ImportService(service)


def approve_all(service, view, *checkers):
    for who in checkers or ("olga", "omar"):
        view = service.review(who, view.id, {f.index: APPROVE for f in view.files})
    return view


def denied_events(runtime, action):
    return [e for e in runtime.audit.entries(action=action) if e.outcome == "denied"]


def test_clean_import_is_scanned_reviewed_and_released_read_only(service, imports, settings):
    view = imports.create("alice", PROJECT, files(("load.py", SCRIPT), ("codes.csv", TABLE)), "nomenclature")
    assert view.direction == "import" and view.state == "submitted"
    staged = service.get_request("olga", view.id)
    scans = {f.name: f.check for f in staged.files}
    assert scans["load.py"]["clamav"] == {"verdict": "clean", "scanner": "clamav", "through": "clamscan"}
    assert scans["load.py"]["status"] == "review" and scans["codes.csv"]["status"] == "pass"
    with pytest.raises(PermissionDenied, match="never reviews"):
        service.review("alice", view.id, {0: APPROVE, 1: APPROVE})
    view = approve_all(service, view)
    assert view.state == "approved"
    view = service.release("omar", view.id)
    assert view.state == "released" and "download" not in service.get_request("alice", view.id).actions
    folder = settings.paths.imports / PROJECT / view.id
    assert (folder / "load.py").read_bytes() == SCRIPT and (folder / "codes.csv").read_bytes() == TABLE
    assert oct(os.stat(folder / "load.py").st_mode & 0o777) == "0o444"
    assert oct(os.stat(folder).st_mode & 0o777) == "0o555"
    manifest = json.loads((settings.paths.imports / PROJECT / MANIFEST).read_text())
    entry, = manifest["imports"]
    assert entry["id"] == view.id and entry["path"] == f"/imports/{view.id}"
    assert entry["approved_by"] == ["olga", "omar"] and {f["name"] for f in entry["files"]} == {"load.py", "codes.csv"}
    with pytest.raises(InvalidInput, match="is an import"):
        service.download("alice", view.id, 0)


def test_an_import_folder_is_open_before_it_appears_in_the_mount(service, imports, settings, monkeypatch):
    """A workspace that watches /imports never meets the released folder closed: it is 0555 with
    0444 files when it is renamed into place (CI once saw EACCES between the rename and a chmod)."""
    seen = []
    real_rename = os.rename

    def watching_rename(src, dst):
        src = Path(src)
        if src.is_dir() and src.parent.parent == settings.paths.imports:
            seen.append((oct(os.stat(src).st_mode & 0o777),
                         sorted(oct(os.stat(f).st_mode & 0o777) for f in src.iterdir())))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", watching_rename)
    view = approve_all(service, imports.create("alice", PROJECT, files(("load.py", SCRIPT), ("codes.csv", TABLE)),
                                               "nomenclature"))
    service.release("omar", view.id)
    assert seen == [("0o555", ["0o444", "0o444"])]


def test_revoked_import_leaves_the_mount_and_the_manifest(service, imports, settings):
    view = approve_all(service, imports.create("alice", PROJECT, files(("codes.csv", TABLE),), "nomenclature"))
    service.release("omar", view.id)
    service.revoke("root", view.id, "licence withdrawn")
    assert not (settings.paths.imports / PROJECT / view.id).exists()
    assert json.loads((settings.paths.imports / PROJECT / MANIFEST).read_text())["imports"] == []


@pytest.mark.parametrize("name,content,signature", [
    ("notes.txt", MARKER, "PDS.Test.Marker"),
    ("tool.py", HASHED, "PDS.Test.Hashed"),
])
def test_test_signature_refuses_the_file_before_review(service, imports, settings, runtime, name, content, signature):
    with pytest.raises(RefusedFiles, match=signature):
        imports.create("alice", PROJECT, files((name, content),), "my tool")
    assert service.list_requests("olga", scope="all") == []
    assert not list(settings.paths.staging.rglob("*.*"))  # nothing of the refused request stays
    assert denied_events(runtime, "airlock.import.create")


def test_signature_inside_a_zip_is_found(imports):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("repo/README.md", "# analysis\n")
        zf.writestr("repo/payload.txt", MARKER)
    with pytest.raises(RefusedFiles, match="PDS.Test.Marker"):
        imports.create("alice", PROJECT, files(("repo.zip", buffer.getvalue()),), "our code")


def test_archive_members_are_listed_for_checkers(service, imports):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("repo/README.md", "# analysis\n")
        zf.writestr("repo/src/model.py", SCRIPT)
    view = imports.create("alice", PROJECT, files(("repo.zip", buffer.getvalue()),), "our code")
    check = service.get_request("olga", view.id).files[0].check
    assert check["kind"] == "archive" and check["status"] == "review"
    assert [m["name"] for m in check["members"]] == ["repo/README.md", "repo/src/model.py"]
    redacted = service.get_request("alice", view.id).files[0].check  # the author: rules, no listing
    assert redacted["redacted"] and "members" not in redacted and redacted["rules"]["archive"] == "review"


@pytest.mark.parametrize("change", [{"clamscan": "/nonexistent/clamscan"}, {"clamav_database": "EMPTY"}])
def test_no_scanner_verdict_means_refused(service, tmp_path, change):
    if change.get("clamav_database") == "EMPTY":
        (tmp_path / "empty").mkdir()
        change = {"clamav_database": str(tmp_path / "empty")}
    imports = ImportService(service, replace(ImportLimits.from_settings(service.settings), **change))
    with pytest.raises(RefusedFiles, match="malware scan|scanner"):
        imports.create("alice", PROJECT, files(("codes.csv", TABLE),), "nomenclature")


# ---- external cohort linkage -----------------------------------------------------------------------
@pytest.fixture
def cohort(settings, tmp_path):
    delivery = tmp_path / "delivery"
    generate(delivery, patients=300, years=(2022, 2022), seed=7)
    return generate_cohort_list(delivery, tmp_path / "outside" / "recruited.csv", settings.paths.ttp,
                                matched=40, unmatched=10, duplicated=3, invalid=4, seed=11)


def test_cohort_is_linked_at_intake_with_exact_counts(service, imports, settings, cohort):
    key = KeyStore(settings.paths.keys).ensure(PROJECT, "setup")
    raw = cohort.path.read_bytes()
    view = imports.create("alice", PROJECT, files(("recruited.csv", raw),), "trial cohort", kind="cohort")
    checker_view = service.get_request("olga", view.id)
    report = checker_view.context["import"]["report"]
    assert report == {"rows": cohort.rows, "matched": 40, "unmatched": 10, "duplicates": 6, "invalid": 4,
                      "match_rate": round(40 / cohort.rows, 4)}
    assert cohort.rows == 40 + 10 + 6 + 4
    assert [f.name for f in checker_view.files] == ["cohort.csv", "match_report.json"]
    view = approve_all(service, view)
    service.release("omar", view.id)
    folder = settings.paths.imports / PROJECT / view.id
    linked = pl.read_csv(folder / "cohort.csv")
    assert linked.columns == ["PERSON_ID", "study_id", "arm", "inclusion"]
    expected = person_map(key, pl.DataFrame({"BEN_NIR_PSA": list(cohort.matched_keys)}))["PERSON_ID"]
    assert sorted(linked["PERSON_ID"].to_list()) == sorted(expected.to_list())
    assert json.loads((folder / "match_report.json").read_text()) == report
    # no NIR anywhere the workspace or a reviewer reads; the raw list only in staging/raw
    nirs = {n.replace(" ", "") for n in pl.read_csv(cohort.path)["NIR"].to_list()}
    released = b"".join(p.read_bytes() for p in folder.iterdir())
    assert not any(n.encode() in released for n in nirs)
    raw_copies = list((settings.paths.staging / PROJECT / view.id / "raw").iterdir())
    assert [p.read_bytes() for p in raw_copies] == [raw]


def test_cohort_without_project_key_is_refused(imports, cohort):
    with pytest.raises(Exception, match="no pseudonymisation key"):
        imports.create("alice", PROJECT, files(("recruited.csv", cohort.path.read_bytes()),), "trial",
                       kind="cohort")


def test_cli_import_round_trip(tmp_path, settings, registry):
    """``pds airlock import`` as alice, two checkers approve through the CLI, auto-release: the
    file is in the imports area and the manifest."""
    import getpass
    import re

    import yaml
    from typer.testing import CliRunner

    from pds_kernel.cli.app import app

    def config_of(actor: str) -> str:
        """The CLI acts as its OS user, mapped to ``actor`` by the configuration (cli.identities)."""
        cfg = tmp_path / f"pds-{actor}.yaml"
        cfg.write_text(yaml.safe_dump({
            "paths": {f: str(getattr(settings.paths, f)) for f in vars(settings.paths)},
            "airlock": {"clamav_database": settings.airlock.clamav_database},
            "cli": {"identities": {getpass.getuser(): actor}}}))
        return str(cfg)

    script = tmp_path / "analysis.R"
    script.write_bytes(b"library(survival)\n")
    run = CliRunner().invoke
    out = run(app, ["-c", config_of("alice"), "airlock", "import", PROJECT, str(script),
                    "--justification", "our survival code"])
    assert out.exit_code == 0, out.output
    rid = re.search(r"request ([a-f0-9]{32})", out.output).group(1)
    for checker in ("olga", "omar"):
        out = run(app, ["-c", config_of(checker), "airlock", "review", rid, "--decision", "approve"])
        assert out.exit_code == 0, out.output
    assert "state released" in out.output
    assert (settings.paths.imports / PROJECT / rid / "analysis.R").read_bytes() == b"library(survival)\n"
    manifest = json.loads((settings.paths.imports / PROJECT / MANIFEST).read_text())
    assert [e["id"] for e in manifest["imports"]] == [rid]


def test_cli_cohort_list_installs_the_correspondence(tmp_path, settings):
    import yaml
    from typer.testing import CliRunner

    from pds_kernel.cli.app import app

    generate(tmp_path / "delivery", patients=60, years=(2022, 2022), seed=2)
    cfg = tmp_path / "pds.yaml"
    cfg.write_text(yaml.safe_dump({"paths": {f: str(getattr(settings.paths, f)) for f in vars(settings.paths)}}))
    out = CliRunner().invoke(app, ["-c", str(cfg), "snds", "cohort-list", "--delivery", str(tmp_path / "delivery"),
                                   "--out", str(tmp_path / "list.csv"), "--matched", "12", "--unmatched", "3"])
    assert out.exit_code == 0, out.output
    assert "matched 12, unmatched 3, duplicates 4, invalid 3" in " ".join(out.output.split())
    assert pl.read_csv(tmp_path / "list.csv").height == 12 + 3 + 4 + 3
    assert (settings.paths.ttp / "nir_correspondence.parquet").is_file()
