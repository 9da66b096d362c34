"""``pip install`` in a real workspace sandbox: approved packages install from the platform's index
(the real server on the bridged packages socket), unapproved ones fail with the way to ask."""

from __future__ import annotations

from dataclasses import replace

import pytest
from packagefixtures import ADMIN, ThreadedIndex, with_signatures

from pds_kernel.packages.service import PackageService
from pds_kernel.runtime import Runtime
from pds_kernel.sandbox.exec import run_in_sandbox
from pds_kernel.settings import Packages

pytestmark = pytest.mark.functional


def pip_in_sandbox(runtime, tmp_path, script: str) -> tuple[int, str, ThreadedIndex]:
    """Run ``script`` (sh) in alice's proj-a sandbox with the package index bridged; return its
    exit code, what it printed (stdout and stderr, kept in the home) and the index."""
    home = runtime.settings.paths.homes / "proj-a" / "alice"
    with ThreadedIndex(runtime.settings.paths.packages, unix_socket=tmp_path / "packages.sock") as index:
        code = run_in_sandbox(runtime, "alice", "proj-a", ["sh", "-c", f"( {script} ) > $HOME/out.txt 2>&1"],
                              actor="test", sockets={"packages": tmp_path / "packages.sock"}, timeout=300)
    return code, (home / "out.txt").read_text(), index


def test_an_approved_package_installs_with_pip_in_the_sandbox(packages_runtime, tmp_path):
    PackageService(packages_runtime).approve(ADMIN, "pds-hello==1.0")
    code, out, index = pip_in_sandbox(
        packages_runtime, tmp_path,
        "pip install pds-hello && python -c 'import pds_hello, pds_dep; print(\"got\", pds_hello.VALUE)'")
    assert code == 0, out
    assert "got pds-hello 1.0" in out and "Successfully installed pds-dep-2.0 pds-hello-1.0" in out
    assert ("GET", "/files/pds_hello-1.0-py3-none-any.whl", 200) in index.requests
    installed = packages_runtime.settings.paths.homes / "proj-a" / "alice" / ".local" / "pds-packages"
    assert list(installed.glob("lib/python3.*/site-packages/pds_hello/__init__.py"))


def test_an_unapproved_package_fails_with_the_way_to_ask(packages_runtime, tmp_path):
    code, out, index = pip_in_sandbox(packages_runtime, tmp_path, "pip install scikit-learn-extra")
    assert code != 0
    assert ("scikit-learn-extra is not an approved package: ask for it with pds packages request "
            'scikit-learn-extra (in a notebook: ws.request_package("scikit-learn-extra"))') in out
    assert "Failed to resolve" not in out and "NameResolutionError" not in out and "Retrying" not in out
    assert index.requests == [("GET", "/simple/scikit-learn-extra/", 200)]


def test_a_revoked_package_no_longer_installs(packages_runtime, tmp_path):
    """Approved, then revoked (``pds packages revoke``): pip in the sandbox gets the one-line
    answer, and the index never hands out the wheel."""
    service = PackageService(packages_runtime)
    service.approve(ADMIN, "pds-hello==1.0")
    service.revoke(ADMIN, "pds-hello==1.0", "CVE in the parser")
    code, out, index = pip_in_sandbox(packages_runtime, tmp_path, "pip install pds-hello==1.0")
    assert code != 0, out
    assert ('pds-hello is not an approved package: ask for it with pds packages request pds-hello '
            '(in a notebook: ws.request_package("pds-hello"))') in out
    assert index.requests == [("GET", "/simple/pds-hello/", 200)]


@pytest.mark.slow
def test_a_package_approved_from_the_real_registry_installs_in_the_sandbox(world, tmp_path):
    """The one test that reaches PyPI (from the host, as an admin's approval does): texttable, a
    small pure-Python package that is not in the workspace environment."""
    settings = with_signatures(replace(world.runtime.settings, packages=Packages()), tmp_path / "signatures")
    world.registry.upsert_user("admin", ADMIN, is_admin=True)
    runtime = Runtime(settings)
    try:
        files = PackageService(runtime).approve(ADMIN, "texttable==1.7.0")
        assert [(f.name, f.licence) for f in files] == [("texttable", "MIT License")]  # its licence classifier
        code, out, _ = pip_in_sandbox(runtime, tmp_path, "pip install texttable && python -c "
                                      "'import texttable; t = texttable.Texttable(); t.add_rows([[\"a\"], [1]]); "
                                      "print(t.draw())'")
    finally:
        runtime.close()
    assert code == 0, out
    assert "Successfully installed texttable-1.7.0" in out and "| 1 |" in out
