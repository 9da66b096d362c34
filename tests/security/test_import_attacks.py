"""Red team: the inward airlock. Each test is one real attempt against the real gate (production
application on loopback, real ClamAV with the test's own signatures), the real service, a real
hub and sandbox, and asserts that it fails: nothing staged for review, nothing under /imports."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from imports_support import (  # noqa: F401  (fixtures)
    IMPORT_LIMIT,
    MARKER,
    PROJECT,
    gate_registry_fixture,
    import_gate_fixture,
    link_member,
    settings_fixture,
    tar_of,
    zeros_zip,
    zip_of,
)

from pds_kernel.airlock.models import ExportRequest
from pds_kernel.pseudo import KeyStore
from pds_kernel.snds.cohort_list import generate_cohort_list
from pds_kernel.snds.generator import generate

README = b"# our analysis code\n"


def approvals(created: dict) -> dict:
    """A review approving every file of the request ``created`` (its JSON view), bound to their bytes."""
    return {"verdicts": {str(f["index"]): {"decision": "approve", "sha256": f["sha256"]} for f in created["files"]}}


def refused(answer, reason: str, gate) -> None:
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert reason in answer.json()["error"], answer.json()["error"]
    assert not gate.staged_anything()
    assert gate.service.list_requests("olga", scope="all") == []


def test_zip_member_climbing_out_with_dotdot(import_gate):
    answer = import_gate.upload("alice", "repo.zip", zip_of(("repo/README.md", README),
                                                            ("../../home/jovyan/.bashrc", b"curl evil\n")))
    refused(answer, "climbs out of the archive", import_gate)


def test_tar_member_with_an_absolute_path(import_gate):
    answer = import_gate.upload("alice", "repo.tar", tar_of(("README.md", README), ("/etc/profile.d/x.sh", b"id\n")))
    refused(answer, "absolute path", import_gate)


def test_tar_symlink_member_pointing_at_the_lake(import_gate):
    answer = import_gate.upload("alice", "repo.tar.gz", tar_of(
        ("README.md", README), link_member("data", "/srv/pds/lake", tarfile.SYMTYPE), compression="gz"))
    refused(answer, "symbolic link", import_gate)


def test_zip_symlink_member(import_gate):
    answer = import_gate.upload("alice", "repo.zip", zip_of(("keys", b"/srv/pds/keys"), mode=0o120777))
    refused(answer, "symbolic link", import_gate)


def test_tar_hardlink_member(import_gate):
    answer = import_gate.upload("alice", "repo.tar", tar_of(
        ("README.md", README), link_member("shadow", "/etc/shadow", tarfile.LNKTYPE)))
    refused(answer, "hard link", import_gate)


def test_tar_device_member(import_gate):
    device = tarfile.TarInfo("dev/mem")
    device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 1
    answer = import_gate.upload("alice", "repo.tar", tar_of(("README.md", README), device))
    refused(answer, "not a regular file", import_gate)


def test_archive_nested_in_an_archive_under_a_text_name(import_gate):
    """A ZIP holding a ZIP renamed ``notes.txt`` (the inner one would hide from the listing)."""
    inner = zip_of(("payload.py", b"import os\n"))
    answer = import_gate.upload("alice", "repo.zip", zip_of(("repo/README.md", README), ("repo/notes.txt", inner)))
    refused(answer, "itself an archive", import_gate)


def test_zip_bomb(import_gate):
    """100 MiB of zeros in about 100 KiB: refused on the ratio, well before it is all unpacked."""
    answer = import_gate.upload("alice", "data.zip", zeros_zip(100))
    refused(answer, "compression bomb", import_gate)


def test_gzip_tar_bomb(import_gate):
    big = tarfile.TarInfo("table.csv")
    big.size = 300 * 1024 * 1024
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        tf.addfile(big, io.BytesIO(b"\0" * big.size))
    answer = import_gate.upload("alice", "data.tgz", buffer.getvalue())
    refused(answer, "times its size", import_gate)


def test_executable_named_csv(import_gate):
    answer = import_gate.upload("alice", "reference.csv", Path(shutil.which("true")).read_bytes()[:200_000])
    refused(answer, "binary content", import_gate)


def test_archive_named_python(import_gate):
    answer = import_gate.upload("alice", "setup.py", zip_of(("x.py", b"print(1)\n")))
    refused(answer, "binary content", import_gate)


def test_test_signature_hidden_in_a_tar_gz(import_gate):
    answer = import_gate.upload("alice", "repo.tgz", tar_of(("README.md", README), ("docs/notes.txt", MARKER),
                                                            compression="gz"))
    refused(answer, "PDS.Test.Marker", import_gate)


def test_upload_name_with_a_path(import_gate):
    answer = import_gate.upload("alice", "../../imports/diab-2024/x.py", b"print(1)\n")
    assert answer.status_code == 400 and not import_gate.staged_anything()


def test_oversize_body(import_gate):
    """A body over the import limit is refused from its declared length (413), never staged."""
    answer = import_gate.upload("alice", "big.csv", b"a,b\n" + b"1,2\n" * (IMPORT_LIMIT // 2))
    assert answer.status_code == 413, answer.text
    assert not import_gate.staged_anything()


def test_non_member_imports_into_a_project(import_gate):
    answer = import_gate.upload("mallory", "tool.py", b"print('hello')\n")
    assert answer.status_code == 403, answer.text
    assert not import_gate.staged_anything()


def test_checker_imports_without_being_a_researcher(import_gate):
    """olga checks the project's requests; she may not also bring files in."""
    answer = import_gate.upload("olga", "tool.py", b"print('hello')\n")
    assert answer.status_code == 403, answer.text
    assert not import_gate.staged_anything()


def test_author_approves_her_own_import(import_gate):
    created = import_gate.upload("bob", "tool.py", b"print('hello')\n").json()  # bob: researcher AND checker
    rid = created["id"]
    answer = import_gate.api("bob", "POST", f"requests/{rid}/reviews", json=approvals(created))
    assert answer.status_code == 403 and "never reviews" in answer.json()["error"]
    assert import_gate.api("olga", "GET", f"requests/{rid}").json()["reviews"] == []


def test_checker_of_another_project_approves(import_gate):
    created = import_gate.upload("alice", "tool.py", b"print('hello')\n").json()
    rid = created["id"]
    for _ in range(2):
        answer = import_gate.api("oscar", "POST", f"requests/{rid}/reviews", json=approvals(created))
        assert answer.status_code == 403
    assert import_gate.api("olga", "GET", f"requests/{rid}").json()["state"] == "submitted"


def test_release_of_an_import_before_approval(import_gate):
    created = import_gate.upload("alice", "tool.py", b"print('hello')\n").json()
    rid = created["id"]
    assert import_gate.api("olga", "POST", f"requests/{rid}/reviews", json=approvals(created)).status_code == 200
    answer = import_gate.api("omar", "POST", f"requests/{rid}/release", json={})
    assert answer.status_code == 409, answer.text
    assert not (import_gate.service.settings.paths.imports / PROJECT / rid).exists()


# ---- cohort lists: NIRs never enter ----------------------------------------------------------------
@pytest.fixture
def cohort(import_gate, tmp_path):
    paths = import_gate.service.settings.paths
    generate(tmp_path / "delivery", patients=120, years=(2022, 2022), seed=3)
    KeyStore(paths.keys).ensure(PROJECT, "setup")
    return generate_cohort_list(tmp_path / "delivery", tmp_path / "outside" / "list.csv", paths.ttp,
                                matched=20, unmatched=5, seed=5)


def test_nir_smuggled_in_a_study_column(import_gate, cohort):
    """The study copies the NIR (with spaces) into ``patient_ref``: the list is refused outright."""
    frame = pl.read_csv(cohort.path)
    smuggled = frame.with_columns(pl.col("NIR").alias("patient_ref")).write_csv().encode()
    answer = import_gate.upload("alice", "list.csv", smuggled, kind="cohort")
    refused(answer, "shaped like a NIR", import_gate)


def test_nir_leaks_into_what_reviewers_and_the_workspace_see(import_gate, cohort):
    """A correct cohort import, then every byte a reviewer, the author or a workspace can read is
    searched for the NIRs: the linked files, the request view, the manifest, the audit trail."""
    raw = cohort.path.read_bytes()
    created = import_gate.upload("alice", "list.csv", raw, kind="cohort").json()
    rid = created["id"]
    for checker in ("olga", "omar"):
        assert import_gate.api(checker, "POST", f"requests/{rid}/reviews",
                               json=approvals(import_gate.api(checker, "GET", f"requests/{rid}").json())).status_code == 200
    assert import_gate.api("omar", "POST", f"requests/{rid}/release", json={}).status_code == 200
    paths = import_gate.service.settings.paths
    seen = [import_gate.api(u, "GET", f"requests/{rid}").content for u in ("olga", "alice")]
    seen += [import_gate.api("olga", "GET", f"requests/{rid}/files/{i}").content for i in (0, 1)]
    seen += [p.read_bytes() for p in (paths.imports / PROJECT).rglob("*") if p.is_file()]
    seen += [json.dumps(e.details).encode() for e in import_gate.service.runtime.audit.entries()]
    nirs = [n.replace(" ", "").encode() for n in pl.read_csv(cohort.path)["NIR"].to_list()]
    assert len(seen) > 5 and not [n for n in nirs if any(n in blob for blob in seen)]


# ---- from inside a workspace -----------------------------------------------------------------------
IMPORT_FROM_KERNEL = """
from pds_kernel.airlock.client import AirlockClient, _multipart
body, ctype = _multipart({"project": %r, "justification": "from inside", "kind": "files"},
                         [("tool.py", b"print(1)\\n")])
try:
    AirlockClient().request("POST", "api/imports", body, ctype)
    print("ACCEPTED")
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
"""


@pytest.fixture
def import_hub(monkeypatch):
    from hubfixtures import free_port_block, make_world

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    monkeypatch.setenv("PDS_HUB_AIRLOCK", "on")
    root = Path(tempfile.mkdtemp(prefix="pdsm", dir="/tmp"))
    hub = make_world(root, free_port_block())
    yield hub
    hub.stop()
    hub.runtime.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.functional
@pytest.mark.timeout(300)
def test_import_from_inside_a_workspace_through_the_gate_socket(import_hub):
    """Code in alice's workspace posts an import to the gate through /run/pds/gate.sock with the
    workspace's own token: refused (audited), nothing staged, no request."""
    from hub_kernel import execute
    from hubfixtures import PASSWORD
    from hubfixtures import PROJECT as HUB_PROJECT
    from test_hub import wait_ready

    from pds_kernel.hub.local import provision_account

    hub = import_hub
    secret = provision_account(hub.settings, hub.registry, "alice", PASSWORD, actor="root")
    hub.registry.add_member("root", HUB_PROJECT, "alice", "researcher", date.today() + timedelta(days=100))
    hub.start()
    alice = hub.client()
    assert alice.login("alice", secret)
    token = alice.make_token("alice")
    assert alice.api("POST", f"/hub/api/users/alice/servers/{HUB_PROJECT}").status_code in (201, 202)
    state = wait_ready(alice, "alice", HUB_PROJECT)
    result = execute(hub.server(state), token, IMPORT_FROM_KERNEL % HUB_PROJECT)
    assert result["error"] is None, result["error"]
    line = result["stdout"].strip().splitlines()[-1]
    assert line.startswith("REFUSED PermissionDenied"), line
    with hub.runtime.sessions() as s:
        assert s.query(ExportRequest).filter(ExportRequest.direction == "import").count() == 0
    denied = [e for e in hub.runtime.audit.entries(action="airlock.access.workspace") if e.outcome == "denied"]
    assert denied and denied[-1].actor == "alice"
