"""Requests and approvals (pds_kernel.packages.service) against a real database and a real
``pip download`` from a local upstream index."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packagefixtures import ADMIN, write_config

from pds_kernel import permissions
from pds_kernel.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from pds_kernel.packages.service import APPROVED, REQUESTED, REVOKED, PackageService
from pds_kernel.packages.wheelhouse import Wheelhouse


def test_request_is_recorded_and_audited(packages_runtime):
    service = PackageService(packages_runtime)
    view = service.request("alice", "proj-a", "PDS_Hello", "tables for the article")
    assert (view.name, view.version, view.state, view.requested_by) == ("pds-hello", "", REQUESTED, "alice")
    entries = packages_runtime.audit.entries(action="packages.request")
    assert [(e.actor, e.project, e.details["request"]) for e in entries] == [("alice", "proj-a", view.id)]
    assert [r.id for r in service.requests("alice")] == [view.id]
    assert service.requests("bob") == []  # bob is not a member of proj-a


def test_approval_downloads_the_closure_with_hashes_and_licences(packages_runtime):
    service = PackageService(packages_runtime)
    asked = service.request("alice", "proj-a", "pds-hello")
    files = service.approve(ADMIN, "pds-hello==1.0")
    assert {(f.name, f.version, f.licence) for f in files} == {("pds-hello", "1.0", "MIT"),
                                                              ("pds-dep", "2.0", "Apache-2.0")}
    served = Wheelhouse(packages_runtime.settings.paths.packages).projects()
    assert {name: [e["sha256"] for e in entries] for name, entries in served.items()} == {
        f.name: [f.sha256] for f in files}
    (request,) = service.requests("alice")
    assert (request.id, request.state, request.decided_by, request.decision) == (asked.id, APPROVED, ADMIN,
                                                                                 "pds-hello==1.0")
    (entry,) = packages_runtime.audit.entries(action="packages.approve")
    assert entry.actor == ADMIN and entry.details["requests"] == [asked.id]
    assert {f["file"]: f["sha256"] for f in entry.details["files"]} == {f.file: f.sha256 for f in files}
    assert packages_runtime.audit.verify().ok
    with pytest.raises(InvalidTransition, match="already approved"):
        service.request("alice", "proj-a", "pds-hello==1.0")


def test_approval_needs_an_exact_release_that_exists(packages_runtime):
    service = PackageService(packages_runtime)
    with pytest.raises(InvalidInput, match="exact version"):
        service.approve(ADMIN, "pds-hello")
    with pytest.raises(NotFound, match="cannot download pds-hello==9.9"):
        service.approve(ADMIN, "pds-hello==9.9")
    assert Wheelhouse(packages_runtime.settings.paths.packages).projects() == {}


def test_refusal_is_recorded_with_its_reason(packages_runtime):
    service = PackageService(packages_runtime)
    asked = service.request("alice", "proj-a", "pds-hello")
    refused = service.refuse(ADMIN, asked.id, "use the approved alternative")
    assert (refused.state, refused.decision) == ("refused", "use the approved alternative")
    with pytest.raises(InvalidTransition):
        service.refuse(ADMIN, asked.id, "again")


@pytest.mark.parametrize("text", ["https://evil.example/x.whl", "../etc", "pkg>=1", "pkg[extra]", "a b",
                                  "pkg==1.0; python_version>'3'", "pkg==../1", ""])
def test_a_request_names_one_project_and_at_most_one_release(packages_runtime, text):
    with pytest.raises(InvalidInput):
        PackageService(packages_runtime).request("alice", "proj-a", text)


def test_cli_request_approve_list(packages_runtime, tmp_path):
    pds = str(Path(sys.prefix) / "bin" / "pds")

    def run(actor, *argv):
        config = write_config(packages_runtime.settings, tmp_path / f"pds-{actor}.yaml", actor)
        return subprocess.run([pds, "-c", str(config), *argv], capture_output=True, text=True, timeout=300)

    asked = run("alice", "packages", "request", "pds-hello", "--project", "proj-a")
    assert asked.returncode == 0, asked.stderr
    assert "requested pds-hello for project proj-a" in asked.stdout
    approved = run(ADMIN, "packages", "approve", "pds-hello==1.0")
    assert approved.returncode == 0, approved.stderr
    assert "approved pds-hello==1.0: 2 wheel(s)" in approved.stdout
    listed = run("alice", "packages", "list")
    assert listed.returncode == 0 and "approved" in listed.stdout and "Apache-2.0" in listed.stdout
    refused = run("alice", "packages", "revoke", "pds-hello==1.0", "--reason", "mine")
    assert refused.returncode == PermissionDenied.exit_code, refused.stdout + refused.stderr
    revoked = run(ADMIN, "packages", "revoke", "pds-hello==1.0", "--reason", "CVE in the parser")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked pds-hello==1.0: 1 wheel(s) no longer served" in revoked.stdout


def test_revoke_withdraws_the_release_from_the_index_and_is_audited(packages_runtime):
    """An admin revokes pds-hello 1.0: its wheel leaves the manifest and the disk, its approved
    request becomes revoked, the dependency its approval brought stays; a researcher, an
    impersonated admin and the registry-sync identity may not revoke; the package-approval Job may."""
    service = PackageService(packages_runtime)
    asked = service.request("alice", "proj-a", "pds-hello")
    service.approve(ADMIN, "pds-hello==1.0")
    house = Wheelhouse(packages_runtime.settings.paths.packages)
    for actor in ("alice", permissions.Impersonation(ADMIN, by="root"), permissions.SERVICE_REGISTRY_SYNC):
        with pytest.raises(PermissionDenied):
            service.revoke(actor, "pds-hello==1.0", "a vulnerability")
    assert "pds-hello" in house.projects()
    with pytest.raises(InvalidInput, match="say why"):
        service.revoke(ADMIN, "pds-hello==1.0", " ")
    files = service.revoke(ADMIN, "pds-hello==1.0", "CVE in the parser")
    assert [f.file for f in files] == ["pds_hello-1.0-py3-none-any.whl"]
    assert list(house.projects()) == ["pds-dep"]
    assert not (house.files_dir / files[0].file).exists()
    assert not service.is_approved("pds-hello", "1.0") and service.is_approved("pds-dep", "2.0")
    (request,) = service.requests("alice")
    assert (request.id, request.state) == (asked.id, REVOKED)
    (entry,) = packages_runtime.audit.entries(action="packages.revoke")
    assert (entry.actor, entry.target, entry.details["reason"]) == (ADMIN, "package:pds-hello==1.0",
                                                                    "CVE in the parser")
    assert entry.details["files"] == [{"file": files[0].file, "sha256": files[0].sha256}]
    assert packages_runtime.audit.verify().ok
    with pytest.raises(NotFound, match="nothing to revoke"):
        service.revoke(ADMIN, "pds-hello==1.0", "again")
    service.revoke(permissions.SERVICE_PACKAGE_APPROVAL, "pds-dep==2.0", "withdrawn by the chart's values")
    assert house.projects() == {}
