"""The sandbox launcher's pure parts: how it reads bubblewrap's command line and stages mounts."""

from __future__ import annotations

import os

import pytest

from pds_kernel.sandbox.launch import LaunchError, drop_privileges, main, split_bwrap, staged_options


def test_split_keeps_each_option_with_its_values():
    cmd = split_bwrap(["/usr/bin/bwrap", "--unshare-all", "--uid", "1000", "--ro-bind", "/a", "/b",
                       "--", "python", "--", "x"])
    assert cmd.bwrap == "/usr/bin/bwrap"
    assert cmd.options == [["--unshare-all"], ["--uid", "1000"], ["--ro-bind", "/a", "/b"]]
    assert cmd.command == ["python", "--", "x"]


@pytest.mark.parametrize("argv, message", [
    (["/usr/bin/bwrap", "--share-net", "--", "sh"], "unexpected bubblewrap option"),
    (["/usr/bin/bwrap", "--seccomp", "3", "--", "sh"], "unexpected bubblewrap option"),
    (["/usr/bin/bwrap", "--bind", "/a"], "lacks its values"),
    (["/usr/bin/bwrap", "--unshare-all", "--"], "no command"),
    ([], "no bubblewrap command"),
])
def test_split_refuses_what_the_builder_never_emits(argv, message):
    with pytest.raises(LaunchError, match=message):
        split_bwrap(argv)


def test_staging_replaces_every_bind_source_and_drops_missing_optional_ones(tmp_path):
    present = tmp_path / "present"
    present.mkdir()
    options = [["--unshare-all"], ["--ro-bind", str(present), "/data"], ["--bind", "/x/home", "/home/jovyan"],
               ["--ro-bind-try", str(tmp_path / "absent"), "/opt"], ["--symlink", "usr/bin", "/bin"]]
    staged, sources = staged_options(options, staging="/run/stage")
    assert staged == [["--unshare-all"], ["--ro-bind", "/run/stage/0", "/data"],
                      ["--bind", "/run/stage/1", "/home/jovyan"], ["--symlink", "usr/bin", "/bin"]]
    assert sources == [str(present), "/x/home"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root could map a sandbox to root")
def test_root_launcher_refuses_to_keep_root():
    # without --run-as, a root launcher would hand bubblewrap host uid 0: refused, nothing started
    assert main(["--", "/usr/bin/bwrap", "--unshare-all", "--", "/bin/true"]) == 125
    with pytest.raises(LaunchError, match="as root"):
        drop_privileges(0, 0)
    assert main(["--run-as", "0:0", "--", "/usr/bin/bwrap", "--unshare-all", "--", "/bin/true"]) == 125
