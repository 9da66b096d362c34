"""A workspace never mounts an extract changed after its publication.

Each test is one real attempt by someone who can write the projects' storage after an extract
was built, conformity-checked and published (an operator's mistake, a compromised batch job, a
half-finished build, a planted file): it changes diabetes-t2's extract, then asks a real local hub
to start alice's workspace (the sandbox spawner, bubblewrap). The attempt fails when the start is
refused before the sandbox exists, with a message naming what is wrong and who puts it right, and
a ``workspace.refused`` audit entry; or, for the swaps made between the check and the mount, when
the sandbox launcher starts nothing and the tampered bytes are never printed from inside.

Before this check, the spawner only tested that ``projects/<id>/extract`` was a directory and
bubblewrap mounted whatever the path then resolved to: every attempt below got through.
"""

from __future__ import annotations

import os
import shutil
import stat

import extract_mount_support as support
import pytest
from extract_mount_support import (
    OTHER_PROJECT,
    PROJECT,
    TAMPERED,
    assert_refused,
    build_dir,
    launch_after_check,
    project_dir,
    republish,
    same_size_replacement,
    tampered_frame,
    write_manifest,
)

from pds_kernel.extract.mount_check import ExtractRefused, check_for_workspace, run_verify
from pds_kernel.sandbox.exec import run_in_sandbox
from pds_kernel.sandbox.launch import EXTRACT_REFUSED

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

mount_hub = support.mount_hub
#: what a researcher's code reads of /data: how many times the tampered text appears in it
READ_DATA = f"cat /data/*.parquet | grep -c {TAMPERED} || true"


@pytest.fixture
def hub(mount_hub):
    """The module's hub with a freshly published diabetes-t2 extract, put back after the attack."""
    republish(mount_hub)
    yield mount_hub
    support.stop(mount_hub)
    republish(mount_hub)


def test_the_published_extract_is_mounted(hub):
    """The control: the published extract starts (and the sandbox shows its bytes)."""
    started = support.spawn(hub)
    assert started.status_code in (201, 202), started.text
    support.wait_ready(hub)
    support.stop(hub)
    code, out, err = launch_after_check(hub, lambda: None, "ls /data")
    assert code == 0 and "ER_PRS_F.parquet" in out and "manifest.json" in out, err


def test_file_replaced_with_the_same_size(hub):
    same_size_replacement(build_dir(hub) / "ER_PRS_F.parquet")
    assert_refused(hub, "SHA-256 differs")


def test_rows_appended(hub):
    path = build_dir(hub) / "ER_PRS_F.parquet"
    os.chmod(path, 0o644)
    import polars as pl
    pl.concat([pl.read_parquet(path), tampered_frame(5)]).write_parquet(path)
    assert_refused(hub, "bytes, the manifest says")


def test_extra_file(hub):
    os.chmod(build_dir(hub), 0o755)
    tampered_frame().write_parquet(build_dir(hub) / "EXTRA.parquet")
    assert_refused(hub, "EXTRA.parquet is not listed in the manifest")


def test_extra_file_listed_in_a_rewritten_manifest(hub):
    """The manifest rewritten with the extra file and its true size and SHA-256."""
    build = build_dir(hub)
    os.chmod(build, 0o755)
    tampered_frame().write_parquet(build / "EXTRA.parquet")
    os.chmod(build / "manifest.json", 0o644)
    write_manifest(build, PROJECT, build.name)
    assert_refused(hub, "manifest.json is not the published one")


def test_file_and_manifest_rewritten_to_match(hub):
    """The data file replaced and the manifest's size and hash of it rewritten to match; the audit
    trail untouched."""
    build = build_dir(hub)
    os.chmod(build / "ER_PRS_F.parquet", 0o644)
    tampered_frame().write_parquet(build / "ER_PRS_F.parquet")
    os.chmod(build / "manifest.json", 0o644)
    write_manifest(build, PROJECT, build.name)
    assert_refused(hub, "manifest.json is not the published one")


def test_link_to_another_projects_extract(hub):
    pdir = project_dir(hub)
    other = build_dir(hub, OTHER_PROJECT)
    (pdir / "extract").unlink()
    os.symlink(os.path.relpath(other, pdir), pdir / "extract")
    assert_refused(hub, "not to the latest published build")


def test_build_swapped_for_a_link_to_another_projects_build(hub):
    """The ``extract`` link is left alone; the build it names becomes a link elsewhere."""
    build = build_dir(hub)
    shutil.rmtree(build)
    os.symlink(build_dir(hub, OTHER_PROJECT), build)
    assert_refused(hub, "is not a directory")


@pytest.mark.parametrize("link,why", [(os.symlink, "is not a regular file (a symbolic link)"),
                                       (os.link, "hard links")], ids=["symbolic", "hard"])
def test_file_made_a_link_to_another_projects_file(hub, link, why):
    build = build_dir(hub)
    os.chmod(build, 0o755)
    (build / "ER_PRS_F.parquet").unlink()
    link(build_dir(hub, OTHER_PROJECT) / "ER_PRS_F.parquet", build / "ER_PRS_F.parquet")
    assert_refused(hub, why)


def test_fifo(hub):
    build = build_dir(hub)
    os.chmod(build, 0o755)
    os.mkfifo(build / "COHORT.parquet")
    assert_refused(hub, "is not a regular file (a FIFO)")


def test_device_node(hub):
    build = build_dir(hub)
    os.chmod(build, 0o755)
    os.mknod(build / "mem", stat.S_IFCHR | 0o444, os.makedev(1, 3))  # what /dev/null is
    assert_refused(hub, "is not a regular file (a character device)")


def test_nested_directory(hub):
    build = build_dir(hub)
    os.chmod(build, 0o755)
    (build / "hidden").mkdir()
    tampered_frame().write_parquet(build / "hidden" / "rows.parquet")
    assert_refused(hub, "hidden/ is a directory the manifest does not list")


def test_file_missing(hub):
    build = build_dir(hub)
    os.chmod(build, 0o755)
    (build / "ER_PRS_F.parquet").unlink()
    assert_refused(hub, "listed in the manifest but missing")


def test_build_interrupted_after_the_link_swap(hub):
    """A build killed after it swapped the link, before its audit entry: a new build directory with
    a consistent manifest, never recorded as published."""
    pdir = project_dir(hub)
    half = pdir / "builds" / "20991231T235959Z-abcdef"
    half.mkdir()
    tampered_frame().write_parquet(half / "ER_PRS_F.parquet")
    write_manifest(half, PROJECT, half.name)
    (pdir / "extract").unlink()
    os.symlink(f"builds/{half.name}", pdir / "extract")
    assert_refused(hub, "not to the latest published build")


def test_older_published_build_put_back(hub):
    """A rollback: the link pointed back at a build that was published before the latest one."""
    pdir = project_dir(hub)
    old = build_dir(hub)
    keep = pdir / "kept-build"
    shutil.copytree(old, keep, symlinks=True)
    republish(hub)
    os.rename(keep, old)
    (pdir / "extract").unlink()
    os.symlink(f"builds/{old.name}", pdir / "extract")
    assert_refused(hub, "not to the latest published build")


def test_extract_never_published(hub):
    """An extract directory with content and no publication in the audit trail (a new project)."""
    hub.registry.upsert_project("root", "planted", title="planted", start_date=hub.registry.get_project(PROJECT)
                                .start_date, end_date=hub.registry.get_project(PROJECT).end_date,
                                cpu_limit=1.0, mem_limit_mb=4096, dask_workers=1)
    hub.registry.add_member("root", "planted", "alice", "researcher",
                            hub.registry.get_project(PROJECT).end_date)
    extract = project_dir(hub, "planted") / "extract"
    extract.mkdir(parents=True)
    tampered_frame().write_parquet(extract / "ER_PRS_F.parquet")
    write_manifest(extract, "planted", "20990101T000000Z-000000")
    try:
        with pytest.raises(ExtractRefused, match="never published"):
            run_in_sandbox(hub.runtime, "alice", "planted", ["/bin/sh", "-c", READ_DATA], actor="alice")
    finally:
        hub.registry.remove_member("root", "planted", "alice")


def test_directory_swapped_between_check_and_mount(hub):
    """TOCTOU: the extract passes the check, then its build directory is renamed away and another
    one (tampered rows, the same manifest) put under its name before the sandbox mounts it."""
    build = build_dir(hub)

    def swap():
        os.rename(build, build.with_name("moved"))
        shutil.copytree(build.with_name("moved"), build)
        os.chmod(build / "ER_PRS_F.parquet", 0o644)
        tampered_frame().write_parquet(build / "ER_PRS_F.parquet")

    code, out, err = launch_after_check(hub, swap, READ_DATA)
    assert code == EXTRACT_REFUSED, (code, out, err)
    assert out == "" and "changed between its check and its mount" in err


def test_link_swapped_between_check_and_mount(hub):
    pdir = project_dir(hub)

    def swap():
        (pdir / "extract").unlink()
        os.symlink(os.path.relpath(build_dir(hub, OTHER_PROJECT), pdir), pdir / "extract")

    code, out, err = launch_after_check(hub, swap, READ_DATA)
    assert code == EXTRACT_REFUSED and out == "", (code, out, err)


def test_file_rewritten_in_place_between_check_and_mount(hub):
    path = build_dir(hub) / "ER_PRS_F.parquet"
    code, out, err = launch_after_check(hub, lambda: same_size_replacement(path), READ_DATA)
    assert code == EXTRACT_REFUSED and out == "", (code, out, err)


def test_large_extract_file_replaced(hub):
    """An extract over the re-hash bound: a same-size replacement is seen by the files' state
    (change time, inode), without reading them; ``pds extract verify`` then records the failure,
    and the start stays refused until the extract is verified good again."""
    runtime = support.small_bound(hub, 0)
    try:
        check_for_workspace(runtime.settings, runtime.audit, PROJECT)  # the published state: accepted
        path = build_dir(hub) / "ER_PRS_F.parquet"
        original = path.read_bytes()
        same_size_replacement(path)
        with pytest.raises(ExtractRefused, match="changed since they were last verified"):
            check_for_workspace(runtime.settings, runtime.audit, PROJECT)
        with pytest.raises(ExtractRefused, match="SHA-256 differs"):
            run_verify(runtime, PROJECT, actor="root")
        path.write_bytes(original)  # the bytes put back: the state still differs, the last verification failed
        with pytest.raises(ExtractRefused, match="last full verification .* failed"):
            check_for_workspace(runtime.settings, runtime.audit, PROJECT)
        with pytest.raises(ExtractRefused, match="last full verification .* failed"):
            run_in_sandbox(runtime, "alice", PROJECT, ["/bin/sh", "-c", READ_DATA], actor="alice")
        run_verify(runtime, PROJECT, actor="root")  # verified good: the new state is recorded
        assert check_for_workspace(runtime.settings, runtime.audit, PROJECT).hashed is False
    finally:
        runtime.close()


def test_republished_extract_is_mounted_again(hub):
    """After a refusal, the data manager's re-publication is what the workspace mounts."""
    same_size_replacement(build_dir(hub) / "ER_PRS_F.parquet")
    assert_refused(hub, "SHA-256 differs")
    publish_again = republish(hub)
    started = support.spawn(hub)
    assert started.status_code in (201, 202), started.text
    support.wait_ready(hub)
    support.stop(hub)
    code, out, err = launch_after_check(hub, lambda: None, READ_DATA)
    assert code == 0 and out.splitlines()[-1] == "0", (out, err)
    assert publish_again == build_dir(hub)
