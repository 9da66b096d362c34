"""An import end to end, for real: uploaded through the gate's web service (API and page), scanned
by ClamAV with the test's own signatures, reviewed by the project's checkers over HTTP, released,
and read inside a workspace sandbox that was already running when the release happened."""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
import zipfile
from pathlib import Path

import polars as pl
import pytest
import requests
from airlock_factories import PROJECT
from airlock_web import FakeIdentity, live_server
from import_signatures import MARKER, import_settings
from published import publish_by_hand

from pds_kernel.airlock.web import make_app, server_options
from pds_kernel.sandbox.exec import finish_sandbox, prepare_sandbox

PREFIX = "/services/airlock/"
SCRIPT = b"def hello():\n    return 'brought in through the gate'\n"

#: Runs in the sandbox: waits for the import to appear under /imports, reads it and the manifest,
#: tries to write there, and reports in the home (the host reads it there).
INSIDE = r"""
import json, os, sys, time
from pathlib import Path
rid = sys.argv[1]
home = Path("/home/jovyan")
target = Path("/imports") / rid / "helpers.py"
seen_before = sorted(os.listdir("/imports"))
(home / "ready").write_text("ready")
manifest = Path("/imports/MANIFEST.json")
deadline = time.time() + 120
# the release writes the files, then replaces the manifest (atomically): wait for both
while time.time() < deadline and not (target.exists() and manifest.exists() and rid in manifest.read_text()):
    time.sleep(0.2)
out = {"seen_before": seen_before, "content": target.read_text() if target.exists() else None}
out["manifest"] = json.loads(manifest.read_text()) if manifest.exists() else None
for label, path in (("new file", "/imports/planted.py"), ("overwrite", str(target)),
                    ("manifest write", "/imports/MANIFEST.json")):
    try:
        with open(path, "a") as fh:
            fh.write("x")
        out[label] = "written"
    except OSError as exc:
        out[label] = exc.strerror
out["mount options"] = [line.split()[5] for line in open("/proc/self/mountinfo") if line.split()[4] == "/imports"]
(home / "result.json").write_text(json.dumps(out))
"""


@pytest.fixture
def settings(settings, tmp_path):
    return import_settings(settings, tmp_path / "clamav")


@pytest.fixture
def gate(runtime, service):
    with live_server(make_app(runtime, FakeIdentity(), prefix=PREFIX, service=service), **server_options()) as url:
        yield url + PREFIX


def api(base, user, method, path, **kwargs):
    return requests.request(method, base + "api/" + path, headers={"Authorization": f"token fake-{user}"},
                            timeout=120, **kwargs)


def upload(base, user, name, content, kind="files"):
    return api(base, user, "POST", "imports", data={"project": PROJECT, "justification": "helpers", "kind": kind},
               files=[("files", (name, content, "application/octet-stream"))])


def test_import_through_the_gate_appears_in_a_running_sandbox(gate, runtime, settings, registry):
    refused = upload(gate, "alice", "notes.txt", MARKER)
    assert refused.status_code == 400 and "PDS.Test.Marker" in refused.json()["error"]
    created = upload(gate, "alice", "helpers.py", SCRIPT)
    assert created.status_code == 201, created.text
    rid, seen = created.json()["id"], created.json()["files"][0]["sha256"]
    assert created.json()["direction"] == "import" and created.json()["state"] == "submitted"

    extract = settings.paths.projects / PROJECT / "extract"
    extract.mkdir(parents=True)
    pl.DataFrame({"x": [1]}).write_parquet(extract / "T.parquet")
    publish_by_hand(runtime, PROJECT)
    prepared = prepare_sandbox(runtime, "alice", PROJECT, ["python", "-I", "-c", INSIDE, rid], actor="alice")
    home = next(m.host_path for m in prepared.spec.mounts if m.target == "/home/jovyan")
    proc = subprocess.Popen(prepared.argv, env=prepared.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd="/")
    try:
        for _ in range(600):
            if (home / "ready").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert (home / "ready").exists(), proc.communicate(timeout=30)
        assert api(gate, "alice", "POST", f"requests/{rid}/reviews",
                   json={"verdicts": {"0": {"decision": "approve", "sha256": seen}}}).status_code == 403  # the author never reviews
        for checker in ("olga", "omar"):
            answer = api(gate, checker, "POST", f"requests/{rid}/reviews",
                         json={"verdicts": {"0": {"decision": "approve", "comment": "fine", "sha256": seen}}})
            assert answer.status_code == 200, answer.text
        released = api(gate, "omar", "POST", f"requests/{rid}/release", json={})
        assert released.status_code == 200 and released.json()["state"] == "released", released.text
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        finish_sandbox(prepared)
    result = json.loads((home / "result.json").read_text())
    assert result["seen_before"] == []  # started before the release...
    assert result["content"] == SCRIPT.decode()  # ...and the import appeared while it ran
    assert [e["id"] for e in result["manifest"]["imports"]] == [rid]
    assert {result["new file"], result["overwrite"], result["manifest write"]} <= {"Read-only file system",
                                                                                   "Permission denied"}
    assert result["mount options"] and all(o.split(",")[0] == "ro" for o in result["mount options"])


def test_import_page_uploads_from_a_browser(gate, settings, registry):
    browser = requests.Session()
    browser.cookies.set("fake_user", "alice")
    page = browser.get(gate + "imports/new", timeout=60)
    assert page.status_code == 200 and "Import files" in page.text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    answer = browser.post(gate + "imports/new", data={"_xsrf": xsrf, "project": PROJECT, "kind": "files",
                                                      "justification": "a nomenclature"},
                          files=[("files", ("codes.csv", b"code,label\nE11,diabetes\n", "text/csv"))],
                          allow_redirects=False, timeout=120)
    assert answer.status_code == 302, answer.text
    rid = answer.headers["Location"].rsplit("/", 1)[-1]
    view = api(gate, "olga", "GET", f"requests/{rid}").json()
    assert view["direction"] == "import" and view["files"][0]["check"]["clamav"]["verdict"] == "clean"
    assert not Path(settings.paths.imports / PROJECT / rid).exists()  # nothing in before review
    checker = requests.Session()
    checker.cookies.set("fake_user", "olga")
    listing = checker.get(gate + "requests", timeout=60)
    assert listing.status_code == 200 and "import" in listing.text and rid[:8] in listing.text
    page = checker.get(gate + f"requests/{rid}", timeout=60)
    assert page.status_code == 200 and "E11" in page.text
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("repo/model.py", SCRIPT)
    zid = upload(gate, "alice", "repo.zip", archive.getvalue()).json()["id"]
    page = checker.get(gate + f"requests/{zid}", timeout=60)
    assert page.status_code == 200 and "repo.zip" in page.text
