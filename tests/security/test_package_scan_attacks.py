"""Attacks on the package index's malware scan: every wheel of an approval is scanned by ClamAV
(the airlock's scanner, here with the tests' own signatures) before the index serves it, and a
scan that finds something, or cannot give a verdict, refuses the whole approval. Each test is one
real attempt: a real upstream index over loopback, real ``pip download``, real ``clamscan``."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import replace

import package_index_support
import pytest
from packagefixtures import ADMIN, MARKER, ThreadedIndex, build_wheel, with_signatures

from pds_kernel.packages.service import PackageRefused, PackageService
from pds_kernel.packages.wheelhouse import Wheelhouse, read_wheel
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Packages

pytestmark = pytest.mark.skipif(shutil.which("clamscan") is None, reason="ClamAV is not installed")

world = package_index_support.world
#: what the tests' .hdb signature knows by its MD5 and size
HASHED = b"print('a harmless script the test database knows by its MD5')\n"


def _deflated(wheel):
    """``wheel`` rewritten with every member deflated (as real wheels are)."""
    with zipfile.ZipFile(wheel) as source:
        members = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, data in members:
            target.writestr(name, data)
    return wheel


@pytest.fixture
def upstream(tmp_path):
    """An upstream index with clean and infected releases:

    * ``pds-clean 1.0``: clean; ``pds-host 1.0``: clean itself but needs ``pds-carrier`` (infected:
      the marker in its code, deflated);
    * ``pds-marker 1.0``: the marker in its code, stored; ``pds-hashed 1.0``: a module the hash
      signature knows."""
    source = tmp_path / "upstream-src"
    wheels = [build_wheel(source, "pds-clean", "1.0"),
              build_wheel(source, "pds-host", "1.0", requires=("pds-carrier>=1",)),
              _deflated(build_wheel(source, "pds-carrier", "1.0", code=MARKER.decode())),
              build_wheel(source, "pds-marker", "1.0", code="# " + MARKER.decode()),
              build_wheel(source, "pds-hashed", "1.0", code=HASHED.decode())]
    house = Wheelhouse(tmp_path / "upstream")
    house.add([read_wheel(w) for w in wheels], source)
    with ThreadedIndex(house.root) as index:
        yield index


@pytest.fixture
def scanned(world, upstream, tmp_path):
    """A runtime whose approvals download from ``upstream`` and are scanned with the tests'
    signatures; ``ada`` is an admin."""
    world.registry.upsert_user("admin", ADMIN, is_admin=True)
    settings = with_signatures(replace(world.runtime.settings, packages=Packages(upstream_index=upstream.url)),
                               tmp_path / "signatures")
    rt = Runtime(settings)
    yield rt
    rt.close()


def _served(runtime) -> dict:
    return Wheelhouse(runtime.settings.paths.packages).projects()


def _denied(runtime, requirement: str):
    return [e for e in runtime.audit.entries(action="packages.approve")
            if e.target == f"package:{requirement}" and e.outcome == "denied"]


def test_a_clean_release_is_approved_after_its_scan(scanned):
    files = PackageService(scanned).approve(ADMIN, "pds-clean==1.0")
    assert [f.name for f in files] == ["pds-clean"] and "pds-clean" in _served(scanned)


@pytest.mark.parametrize(("requirement", "infected", "signature"), [
    ("pds-marker==1.0", "pds_marker-1.0-py3-none-any.whl", "PDS.Test.Marker"),
    ("pds-hashed==1.0", "pds_hashed-1.0-py3-none-any.whl", "PDS.Test.Hashed"),
    # the release asked for is clean; a dependency of its closure carries the payload, deflated
    ("pds-host==1.0", "pds_carrier-1.0-py3-none-any.whl", "PDS.Test.Marker"),
])
def test_an_infected_wheel_refuses_the_whole_approval(scanned, requirement, infected, signature):
    with pytest.raises(PackageRefused, match=f"{infected} failed the malware scan.*{signature}"):
        PackageService(scanned).approve(ADMIN, requirement)
    assert _served(scanned) == {}  # nothing of the closure, not even its clean wheels
    assert not list((scanned.settings.paths.packages / "files").glob("*.whl"))
    (entry,) = _denied(scanned, requirement)
    assert entry.actor == ADMIN and entry.details["file"] == infected and signature in entry.details["reason"]
    assert PackageService(scanned).approved_files() == []


def test_an_open_request_stays_open_when_its_approval_is_refused(scanned):
    asked = PackageService(scanned).request("alice", "proj-a", "pds-marker")
    with pytest.raises(PackageRefused):
        PackageService(scanned).approve(ADMIN, "pds-marker==1.0")
    assert [r.state for r in PackageService(scanned).requests(ADMIN) if r.id == asked.id] == ["requested"]


@pytest.mark.parametrize("broken", ["no signatures", "no scanner", "timeout"])
def test_no_verdict_from_the_scanner_refuses_even_a_clean_release(scanned, tmp_path, broken):
    airlock = scanned.settings.airlock
    if broken == "no signatures":
        empty = tmp_path / "empty-signatures"
        empty.mkdir()
        airlock = replace(airlock, clamav_database=str(empty))
    elif broken == "no scanner":
        airlock = replace(airlock, clamscan=str(tmp_path / "clamscan-missing"))
    packages = replace(scanned.settings.packages, scan_timeout_seconds=0) if broken == "timeout" \
        else scanned.settings.packages
    rt = Runtime(replace(scanned.settings, airlock=airlock, packages=packages))
    try:
        with pytest.raises(PackageRefused, match="pds_clean-1.0-py3-none-any.whl failed the malware scan"):
            PackageService(rt).approve(ADMIN, "pds-clean==1.0")
        assert _served(rt) == {} and _denied(rt, "pds-clean==1.0")
    finally:
        rt.close()


def test_a_wheel_larger_than_the_scan_reads_is_refused(scanned):
    rt = Runtime(replace(scanned.settings, packages=replace(scanned.settings.packages, scan_max_bytes=256)))
    try:
        with pytest.raises(PackageRefused, match="more than the scan reads"):
            PackageService(rt).approve(ADMIN, "pds-clean==1.0")
        assert _served(rt) == {}
    finally:
        rt.close()
