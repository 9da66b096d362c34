"""Red team 7: a home, or a sandbox's runtime directory, nested past the longest path the system
takes (``PATH_MAX``, 4,096 bytes), from a real sandbox.

The walks of researchers' trees (:mod:`pds_kernel.trees`) kept their own stack after an earlier red
team (1,200 nested directories raised ``RecursionError``), but still named every entry by its full
path: 20 directories of 250-character names, each made relative to the last from a workspace,
made every ``stat``, ``scandir`` and ``unlink`` below them fail with ``File name too long``. It GOT
THROUGH where the earlier nest was stopped: the hub's quota pass raised (no home measured, the
watcher's later checks skipped: ``test_redteam7_extract_watch.py`` shows it through a real hub),
and a project's purge stopped halfway (its extract deleted, its homes and key kept, no
certificate). Now the walks hold one directory descriptor at a time and name entries relative to
it: no depth, and no path length, is too much.
"""

from __future__ import annotations

import os
import shutil

import pytest
import sandbox_support
from sandbox_redteam_support import LONG_HOME, nested_home, purge_now, quota_settings

from pds_kernel import trees
from pds_kernel.project_end import homes_over_quota
from pds_kernel.sandbox.exec import run_in_sandbox, workspace_runtime_dir

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]

#: the sandbox tests' registry, extracts and secrets (fixture)
world = sandbox_support.world


def test_a_home_nested_past_the_longest_path_in_the_quota_pass(world, capfd):
    """bob's home over the quota is still found, and alice's home measured."""
    bob = world.runtime.settings.paths.homes / "proj-b" / "bob"
    bob.mkdir(parents=True, exist_ok=True)
    (bob / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    with nested_home(world, capfd, script=LONG_HOME):
        over = homes_over_quota(quota_settings(world, 1), {"alice": ["proj-a"], "bob": ["proj-b"]})
    assert [(user, project) for user, project, _ in over] == [("bob", "proj-b")]


def test_a_runtime_directory_nested_past_the_longest_path_before_the_next_start(world, capfd):
    nest = LONG_HOME.replace('"/home/jovyan"', '"/run/pds"')
    run_in_sandbox(world.runtime, "alice", "proj-a", ["python", "-c", nest], actor="red-team", timeout=120)
    assert "nested" in capfd.readouterr().out
    runtime_dir = workspace_runtime_dir(world.runtime.settings, "alice", "proj-a")
    try:
        code = run_in_sandbox(world.runtime, "alice", "proj-a", ["true"], actor="red-team", timeout=60)
        assert code == 0 and not (runtime_dir / ("d" * 250)).exists()
    finally:
        if (runtime_dir / ("d" * 250)).is_dir():
            trees.remove(runtime_dir / ("d" * 250))


def test_a_home_nested_past_the_longest_path_in_the_projects_purge(world, capfd):
    with nested_home(world, capfd, script=LONG_HOME) as home:
        done = purge_now(world, "proj-a")
    assert done.done and not home.exists()
    listed = done.certificate["areas"]["homes"]
    assert listed["files"] >= 1 and any(name.endswith("/rows.csv") for name in listed["sha256"])


def test_a_folder_moved_up_while_the_walk_is_inside_it(tmp_path, monkeypatch):
    """The walk goes back up by ``..``: a researcher who moves the folder the walk is in to the top
    of her home (while the hub measures it) would send it up past her home, into the other homes of
    the project. It stops instead, and the home counts as one that cannot be measured."""
    from pds_kernel.project_end import home_quota_refusal

    home = tmp_path / "homes" / "proj-a" / "alice"
    (home / "a" / "b").mkdir(parents=True)
    (home / "a" / "b" / "rows.csv").write_text("1,2\n")
    (tmp_path / "homes" / "proj-a" / "bob").mkdir()
    seen = []
    with pytest.raises(trees.TreeMoved):
        for entry in trees.walk(home):
            seen.append(entry.path)
            if entry.path == b"a/b/rows.csv":
                os.rename(home / "a" / "b", home / "b")
    assert b"bob" not in seen and all(not p.startswith(b"..") for p in seen)

    class Quota:
        class project_end:
            home_quota_mb = 1

    os.rename(home / "b", home / "a" / "b")
    real = trees.walk

    def moving(root, on_leave=None):
        for entry in real(root, on_leave):
            yield entry
            if entry.path == b"a/b/rows.csv":
                os.rename(home / "a" / "b", home / "b")

    monkeypatch.setattr(trees, "walk", moving)
    assert "cannot be measured" in home_quota_refusal(Quota, home)
