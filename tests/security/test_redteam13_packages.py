"""Red team, thirteenth round, the package index: a release whose file spells its version another
way than the approval asked. Real ``pip download`` from a local upstream over loopback, real
ClamAV with the tests' signatures (tests/security/redteam11_packages_support.py); and a release
offered only as a source archive. Both were refused before this round, but neither refusal was
audited (the download's and the release check's refusals left no ``packages.approve`` entry):
both got through as unaudited refusals before their fix.
"""

from __future__ import annotations

import pytest
import redteam11_packages_support as support
from redteam11_packages_support import members, wheel_name, write_wheel

from pds_kernel.errors import NotFound

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
