"""Attacks on the curated package index: each test is one real attempt, from inside a real
workspace sandbox (pip, raw HTTP through the bridged index) or through the real ``pds`` command
and package service, asserted to fail."""

from __future__ import annotations

import shutil
import subprocess

import package_index_support
import pytest
from package_index_support import ADMIN, PDS, in_sandbox, installed, write_config

from pds_kernel.errors import NotFound
from pds_kernel.packages.service import PackageService
from pds_kernel.packages.wheelhouse import Wheelhouse

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

#: fixtures: the sandbox tests' world, a local upstream index, the runtime with pds-hello approved
world = package_index_support.world
upstream = package_index_support.upstream
attack_runtime = package_index_support.attack_runtime

RAW_GET = ("python - <<'EOF'\n"
           "import socket\n"
           "s = socket.create_connection(('127.0.0.1', 8083), timeout=10)\n"
           "s.sendall(b'{method} {path} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: {length}\\r\\n\\r\\n' + {body!r})\n"
           "print(s.recv(200).split(b'\\r\\n')[0].decode())\n"
           "EOF")


def test_pip_index_url_to_another_host_reaches_nothing(attack_runtime, tmp_path):
    code, out, index = in_sandbox(attack_runtime, tmp_path,
                                  "pip install --index-url http://192.0.2.1/simple/ --timeout 3 texttable")
    assert code != 0 and not installed(attack_runtime, "texttable")
    assert "Successfully installed" not in out and index.requests == []


def test_pip_extra_index_url_to_pypi_installs_nothing_unapproved(attack_runtime, tmp_path):
    code, out, _ = in_sandbox(attack_runtime, tmp_path,
                              "pip install --extra-index-url https://pypi.org/simple/ --timeout 3 texttable")
    assert code != 0 and not installed(attack_runtime, "texttable")
    assert "texttable is not an approved package" in out


def test_editing_the_platform_pip_conf_is_refused(attack_runtime, tmp_path):
    code, out, _ = in_sandbox(attack_runtime, tmp_path,
                              "printf '[global]\\nindex-url = https://pypi.org/simple/\\n' > /etc/pip.conf; "
                              "echo written=$?; cat /etc/pip.conf")
    assert "written=0" not in out
    assert "index-url = http://127.0.0.1:8083/simple/" in out


def test_a_pip_conf_of_ones_own_reaches_no_other_index(attack_runtime, tmp_path):
    script = ("mkdir -p $HOME/.config/pip && printf '[global]\\nindex-url = https://pypi.org/simple/\\n"
              "timeout = 3\\n' > $HOME/.config/pip/pip.conf && PIP_CONFIG_FILE=$HOME/.config/pip/pip.conf "
              "PIP_INDEX_URL=https://pypi.org/simple/ pip install texttable")
    code, out, _ = in_sandbox(attack_runtime, tmp_path, script)
    assert code != 0 and not installed(attack_runtime, "texttable")
    assert "Successfully installed" not in out


@pytest.mark.parametrize("path", ["/files/../index.json", "/files/%2e%2e/index.json", "/simple/../index.json",
                                  "/files/..%2findex.json", "/simple/pds-hello/../../index.json",
                                  "//etc/passwd", "/files/.lock"])
def test_path_traversal_in_index_urls_reaches_no_other_file(attack_runtime, tmp_path, path):
    code, out, _ = in_sandbox(attack_runtime, tmp_path, RAW_GET.format(method="GET", path=path, length=0, body=b""))
    assert code == 0, out
    assert out.strip() == "HTTP/1.1 404 Not Found"


def test_uploading_a_wheel_through_the_index_is_refused(attack_runtime, tmp_path):
    wheel = b"PK\x03\x04 not really a wheel"
    script = RAW_GET.format(method="POST", path="/", length=len(wheel), body=wheel) + "\n" + RAW_GET.format(
        method="PUT", path="/files/evil-1.0-py3-none-any.whl", length=len(wheel), body=wheel)
    code, out, _ = in_sandbox(attack_runtime, tmp_path, script)
    assert out.split().count("405") == 2, out
    assert "evil" not in Wheelhouse(attack_runtime.settings.paths.packages).projects()
    assert not (attack_runtime.settings.paths.packages / "files" / "evil-1.0-py3-none-any.whl").exists()


def test_reaching_an_outside_address_from_the_sandbox_fails(attack_runtime, tmp_path):
    script = ("python - <<'EOF'\nimport socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
              "    print('CONNECTED')\nexcept OSError as exc:\n    print('refused', exc.errno)\nEOF")
    code, out, _ = in_sandbox(attack_runtime, tmp_path, script)
    assert "CONNECTED" not in out and "refused" in out


def test_requesting_a_package_for_a_project_one_is_not_a_member_of(attack_runtime, tmp_path):
    config = write_config(attack_runtime.settings, tmp_path / "pds.yaml", "bob")
    run = subprocess.run([PDS, "-c", str(config), "packages", "request", "texttable",
                          "--project", "proj-a"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 4, run.stdout + run.stderr
    assert PackageService(attack_runtime).requests(ADMIN) == []
    denied = [e for e in attack_runtime.audit.entries(action="packages.access.request") if e.outcome == "denied"]
    assert [e.actor for e in denied] == ["bob"]


def test_approving_as_a_researcher_is_refused(attack_runtime, tmp_path):
    config = write_config(attack_runtime.settings, tmp_path / "pds.yaml", "alice")
    PackageService(attack_runtime).request("alice", "proj-a", "pds-other")
    run = subprocess.run([PDS, "-c", str(config), "packages", "approve", "pds-other==1.0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 4 and "platform administrators only" in run.stdout + run.stderr
    assert "pds-other" not in Wheelhouse(attack_runtime.settings.paths.packages).projects()
    assert [r.state for r in PackageService(attack_runtime).requests(ADMIN)] == ["requested"]


def test_an_approval_never_builds_a_source_distribution(attack_runtime, upstream, tmp_path):
    """A project published as a source archive only (its setup.py would run at build): the
    approval downloads wheels only, so it fails and nothing ran."""
    import io
    import tarfile

    marker = tmp_path / "setup-py-ran"
    setup = f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='pds-sdist', version='1.0')\n"
    sdist = upstream.root / "files" / "pds_sdist-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        data = setup.encode()
        info = tarfile.TarInfo("pds_sdist-1.0/setup.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    import hashlib
    import json
    manifest = json.loads((upstream.root / "index.json").read_text())
    manifest["projects"]["pds-sdist"] = [{"file": "pds_sdist-1.0.tar.gz", "project": "pds-sdist", "version": "1.0",
                                          "sha256": hashlib.sha256(sdist.read_bytes()).hexdigest(),
                                          "size": sdist.stat().st_size, "requires_python": "", "licence": "MIT"}]
    (upstream.root / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(NotFound, match="cannot download pds-sdist==1.0 as wheels"):
        PackageService(attack_runtime).approve(ADMIN, "pds-sdist==1.0")
    assert not marker.exists()
    assert "pds-sdist" not in Wheelhouse(attack_runtime.settings.paths.packages).projects()
