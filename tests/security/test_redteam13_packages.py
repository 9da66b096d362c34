"""Red team, thirteenth round, the package index: a release whose file spells its version another
way than the approval asked. Real ``pip download`` from a local upstream over loopback, real
ClamAV with the tests' signatures (tests/security/redteam11_packages_support.py); and a release
offered only as a source archive. Both were refused before this round, but neither refusal was
audited (the download's and the release check's refusals left no ``packages.approve`` entry):
both got through as unaudited refusals before their fix. And a revoked release served again as
a dependency of the next approval, a ZIP64 member hiding the tests' signature from ClamAV, and a
damaged member ending the approval with a traceback and no audit entry (got through before their
fix).
"""

from __future__ import annotations

import zipfile

import pytest
import redteam11_packages_support as support
from redteam11_packages_support import members, wheel_name, write_wheel

from pds_kernel.errors import NotFound
from pds_kernel.packages.service import PackageRefused, PackageService

world = support.world
hostile = support.hostile


def test_a_release_spelled_another_way_upstream_is_not_approved(hostile, tmp_path):
    """``pds-pad==1.0`` is asked; upstream's file spells it ``1.0.0`` (PEP 440: the same release,
    which pip downloads for ``==1.0``). Served under ``1.0.0``, ``pds packages revoke
    pds-pad==1.0`` would find nothing to revoke: the approval refuses it instead."""
    hostile.publish(write_wheel(tmp_path / wheel_name("pds-pad", "1.0.0"), members("pds-pad", "1.0.0")))
    with pytest.raises(NotFound, match="did not hold pds-pad 1.0 itself"):
        hostile.approve("pds-pad==1.0")
    assert hostile.served() == {}
    assert not list((hostile.runtime.settings.paths.packages / "files").glob("*.whl"))
    _denied(hostile, "pds-pad==1.0", "did not hold pds-pad 1.0 itself")


def _denied(hostile, requirement: str, reason: str) -> None:
    entry = hostile.runtime.audit.entries(action="packages.approve")[-1]
    assert entry.target == f"package:{requirement}" and entry.outcome == "denied", entry
    assert entry.actor == support.ADMIN and reason in entry.details["reason"], entry.details


def test_a_source_only_release_is_refused_and_audited(hostile, tmp_path):
    """The upstream offers ``pds-src`` only as a source archive whose ``setup.py`` would run at
    install: refused before (wheels only), nothing ran, but the refusal left no audit entry."""
    marker = tmp_path / "setup-py-ran"
    path = write_wheel(tmp_path / "pds-src-1.0.zip", [("pds-src-1.0/setup.py", f"open({str(marker)!r}, 'w')\n".encode()),
                                                       ("pds-src-1.0/PKG-INFO", b"Metadata-Version: 1.1\nName: pds-src\n")])
    with support.StaticUpstream(tmp_path / "static", hostile) as static:
        static.publish(path, project="pds-src")
        with pytest.raises(NotFound, match="cannot download pds-src==1.0 as wheels"):
            hostile.approve("pds-src==1.0")
    assert not marker.exists() and hostile.served() == {}
    _denied(hostile, "pds-src==1.0", "cannot download pds-src==1.0 as wheels")


def test_a_revoked_release_does_not_come_back_as_a_dependency(hostile, tmp_path):
    """``pds-dep==1.0`` came with ``pds-top``'s approval and was revoked ("CVE in its parser"). The
    next approval needing it (``pds-other``) served it again, and nothing said it had been revoked:
    got through before its fix. Now refused and audited, until an administrator approves
    ``pds-dep==1.0`` by name."""
    for name, needs in (("pds-dep", ()), ("pds-top", ("Requires-Dist: pds-dep==1.0",)),
                        ("pds-other", ("Requires-Dist: pds-dep",))):
        hostile.publish(write_wheel(tmp_path / wheel_name(name, "1.0"), members(name, "1.0", metadata=needs)))
    hostile.approve("pds-top==1.0")
    PackageService(hostile.runtime).revoke(support.ADMIN, "pds-dep==1.0", "CVE in its parser")
    with pytest.raises(PackageRefused, match="pds-dep==1.0, a dependency, cannot be approved: it was revoked"):
        hostile.approve("pds-other==1.0")
    assert sorted(hostile.served()) == ["pds-top"]
    _denied(hostile, "pds-other==1.0", "it was revoked")
    hostile.approve("pds-dep==1.0")  # by name: the administrator's own judgement, audited
    assert "pds-dep" in hostile.served()


def test_a_zip64_member_of_a_wheel_hides_a_signature_from_clamav(hostile, tmp_path):
    """Got through before its fix: the module written with ``force_zip64=True`` (sizes in a ZIP64
    field of its local header, which ClamAV 1.4 does not read) carried the tests' signature; pip
    (zipfile) reads it. The wheel was approved and served."""
    files = members("pds-big", "1.0", b"PAYLOAD = " + repr(support.MARKER).encode() + b"\n")
    wheel = tmp_path / wheel_name("pds-big", "1.0")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            with archive.open(name, "w", force_zip64=name.endswith("__init__.py")) as out:
                out.write(data)
    hostile.publish(wheel)
    with pytest.raises(PackageRefused, match="sized the ZIP64 way"):
        hostile.approve("pds-big==1.0")
    assert hostile.served() == {}
    _denied(hostile, "pds-big==1.0", "sized the ZIP64 way")


def test_a_damaged_member_of_a_wheel_is_refused_and_audited(hostile, tmp_path):
    """Got through before its fix: zlib's error escaped the wheel check, so the approval ended
    with a traceback and no audit entry."""
    wheel = write_wheel(tmp_path / wheel_name("pds-torn", "1.0"), members("pds-torn", "1.0", b"VALUE = 1\n" * 200))
    data = bytearray(wheel.read_bytes())
    start = 30 + len("pds_torn/__init__.py")
    for at in range(start, start + 12):
        data[at] ^= 0xFF
    wheel.write_bytes(bytes(data))
    hostile.publish(wheel)
    with pytest.raises(PackageRefused, match="the archive cannot be read"):
        hostile.approve("pds-torn==1.0")
    assert hostile.served() == {}
    _denied(hostile, "pds-torn==1.0", "the archive cannot be read")
