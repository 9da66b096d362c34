"""Control groups of sandboxes, on this host when it allows them."""

from __future__ import annotations

import subprocess

import pytest

from pds_kernel.sandbox import cgroup, launch

pytestmark = pytest.mark.skipif(cgroup.detect() is None, reason="no writable control groups here")


def test_apply_limits_and_release():
    child = subprocess.Popen(["sleep", "30"])
    try:
        group = cgroup.apply("test-e1--probe", memory_mb=64, cpus=0.5, pid=child.pid)
        limit_file = group / ("memory.max" if cgroup.detect() == "v2" else "memory.limit_in_bytes")
        assert int(limit_file.read_text()) == 64 * 1024 * 1024
        assert str(child.pid) in (group / "cgroup.procs").read_text().split()
        # half a CPU: a CFS quota of half the period, and the child is in that CPU group
        if cgroup.detect() == "v2":
            assert (group / "cpu.max").read_text().split() == ["50000", "100000"]
        else:
            cpu_group = cgroup._v1_bases()["cpu"] / "pds-test-e1--probe"
            assert int((cpu_group / "cpu.cfs_quota_us").read_text()) == 50000
            assert int((cpu_group / "cpu.cfs_period_us").read_text()) == 100000
            assert str(child.pid) in (cpu_group / "cgroup.procs").read_text().split()
        cgroup.release("test-e1--probe")
        assert group.exists()  # busy: kept
    finally:
        child.kill()
        child.wait()
    cgroup.release("test-e1--probe")
    assert not group.exists()


def test_refuses_bad_names_and_fails_closed():
    with pytest.raises(ValueError):
        cgroup.apply("../escape", memory_mb=64, cpus=1)
    # the launcher never starts a sandbox without its limits
    assert launch.main(["--cgroup", "../x", "--memory-mb", "64", "--cpus", "1", "--",
                        "/usr/bin/bwrap", "--unshare-all", "--", "/bin/true"]) == 125


def test_process_limit_of_the_group():
    if not cgroup.can_limit_pids():
        pytest.skip("no pids controller here")
    child = subprocess.Popen(["sleep", "30"])
    try:
        cgroup.apply("test-e1--pids", memory_mb=64, cpus=0.5, pid=child.pid, pids=17)
        if cgroup.detect() == "v2":
            group = cgroup._v2_base() / "pds-test-e1--pids"
        else:
            group = cgroup._v1_bases()["pids"] / "pds-test-e1--pids"
        assert (group / "pids.max").read_text().strip() == "17"
        assert str(child.pid) in (group / "cgroup.procs").read_text().split()
    finally:
        child.kill()
        child.wait()
    cgroup.release("test-e1--pids")
