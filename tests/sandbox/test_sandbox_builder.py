"""The bubblewrap command builder is pure: check the argv it returns (no process started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pds_kernel.errors import InvalidInput, PermissionDenied
from pds_kernel.sandbox.bwrap import HostFacts, cpu_list, prepare_runtime_dir, sandbox_command
from pds_kernel.sandbox.identity import SandboxAccount
from pds_kernel.sandbox.spec import Mount, WorkspaceSpec

HOST = HostFacts(python="/opt/venv/bin/python", python_roots=("/opt/python", "/opt/venv"),
                 package_dir="/src/pds_kernel", cpus=(0, 1, 2, 3))


def _spec(tmp_path: Path) -> WorkspaceSpec:
    return WorkspaceSpec(
        user="alice", project="proj-a",
        mounts=(Mount("extract-proj-a", "/data", True, tmp_path / "projects/proj-a/extract"),
                Mount("home-proj-a-alice", "/home/jovyan", False, tmp_path / "homes/proj-a/alice")),
        cpu_limit=1.5, mem_limit_mb=2048, dask_workers=3, gpu=False)


def _pairs(argv: list[str], option: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == option]


def bwrap_part(argv: list[str]) -> list[str]:
    return argv[argv.index("/usr/bin/bwrap"):]


def test_namespaces_privileges_and_limits(tmp_path):
    argv = sandbox_command(_spec(tmp_path), ["python", "-V"], env={}, runtime_dir=tmp_path / "run", host=HOST)
    # the launcher comes first (seccomp, options through a file descriptor); not root: no --run-as
    # without control groups it pins the sandbox to ceil(1.5) CPUs (the filter denies it inside)
    assert argv[:7] == ["/opt/venv/bin/python", "-I", "-m", "pds_kernel.sandbox.launch", "--cpu-list", "0,1", "--"]
    sandbox, rest = bwrap_part(argv)[:bwrap_part(argv).index("--")], rest_of(argv)
    assert sandbox[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"):
        assert flag in sandbox
    assert "--disable-userns" not in sandbox  # this (fake) bubblewrap is too old for it
    assert "--share-net" not in sandbox
    assert sandbox[sandbox.index("--cap-drop") + 1] == "ALL"
    # no control groups on this (fake) host: per-process limits
    assert rest[:3] == ["/usr/bin/prlimit", "--nproc=1024", f"--as={(2048 + 4096) * 1024 * 1024}"]
    assert "/usr/bin/taskset" not in rest
    assert rest[rest.index("-m") + 1] == "pds_kernel.sandbox.inside"
    assert rest[-3:] == ["--", "python", "-V"]
    assert rest[rest.index("--dask-workers") + 1] == "3"


def test_control_group_limits_go_to_the_launcher_when_available(tmp_path):
    host = HostFacts(**{**HOST.__dict__, "cgroup": "v1"})
    argv = sandbox_command(_spec(tmp_path), ["true"], env={}, runtime_dir=tmp_path / "run", host=host)
    assert argv[:14] == ["/opt/venv/bin/python", "-I", "-m", "pds_kernel.sandbox.launch",
                         "--cgroup", "proj-a--alice", "--memory-mb", "2048", "--cpus", "1.5",
                         "--pids", "1024", "--", "/usr/bin/bwrap"]
    rest = rest_of(argv)
    assert rest[:3] == ["/usr/bin/prlimit", "--nproc=1024", "--"]
    assert "/usr/bin/taskset" not in rest


def test_mounts_are_exactly_the_spec_and_python(tmp_path):
    argv = sandbox_command(_spec(tmp_path), ["true"], env={}, runtime_dir=tmp_path / "run",
                           sockets={"hub": tmp_path / "hub.sock"}, host=HOST)
    ro = dict((dest, src) for src, dest in _pairs(argv, "--ro-bind"))
    rw = dict((dest, src) for src, dest in _pairs(argv, "--bind"))
    assert ro["/data"] == str(tmp_path / "projects/proj-a/extract")
    assert {"/opt/python", "/opt/venv", "/src/pds_kernel", "/usr"} <= set(ro)
    assert rw == {"/home/jovyan": str(tmp_path / "homes/proj-a/alice"),
                  "/run/pds": str(tmp_path / "run"),
                  "/run/pds/hub.sock": str(tmp_path / "hub.sock")}
    assert not any(dest.startswith("/etc/") and dest not in {"/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf",
                                                             "/etc/hosts", "/etc/pip.conf", "/etc/R",
                                                             "/etc/alternatives"}
                   for dest in ro)
    assert ro["/etc/hosts"].endswith("pds_kernel/sandbox/etc/hosts")  # ours: localhost only
    assert ro["/etc/pip.conf"].endswith("pds_kernel/sandbox/etc/pip.conf")  # ours: the package index only
    # the runtime dir comes before the sockets mounted into it; the root ends read-only
    assert argv.index(str(tmp_path / "run")) < argv.index(str(tmp_path / "hub.sock"))
    assert _values(argv, "--remount-ro") == ["/dev", "/run", "/"]
    # the memory file systems it may write have a size: /tmp and /dev/shm the spec's, /run 1 MiB
    sized = {argv[i + 3]: int(argv[i + 1]) for i, word in enumerate(argv) if word == "--size"}
    assert sized == {"/tmp": 1024 << 20, "/dev/shm": 1024 << 20, "/run": 1 << 20}
    assert _values(argv, "--tmpfs") == ["/dev/shm", "/tmp", "/run"]
    assert rest_of(argv)[rest_of(argv).index("--socket") + 1] == "hub"


def _values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == option]


def rest_of(argv: list[str]) -> list[str]:
    """What bubblewrap runs inside: after its own ``--``."""
    sandbox = bwrap_part(argv)
    return sandbox[sandbox.index("--") + 1:]


def test_root_drops_to_the_sandbox_account_and_never_maps_to_root(tmp_path):
    root = HostFacts(**{**HOST.__dict__, "root": True, "account": None})
    with pytest.raises(PermissionDenied, match="as root"):
        sandbox_command(_spec(tmp_path), ["true"], env={}, runtime_dir=tmp_path / "run", host=root)
    account = SandboxAccount("pds-sandbox", 999, 995)
    argv = sandbox_command(_spec(tmp_path), ["true"], env={}, runtime_dir=tmp_path / "run",
                           host=HostFacts(**{**root.__dict__, "account": account}))
    launcher = argv[:argv.index("/usr/bin/bwrap")]
    assert launcher[launcher.index("--run-as") + 1] == "999:995"
    with pytest.raises(PermissionDenied, match="privileged"):
        SandboxAccount("root", 0, 0)
    with pytest.raises(PermissionDenied, match="privileged"):
        SandboxAccount("wheel", 1001, 0)


def test_nested_user_namespaces_off_and_proc_hardened_when_supported(tmp_path):
    host = HostFacts(**{**HOST.__dict__, "disable_userns": True,
                        "proc_entries": frozenset({"sys", "sysrq-trigger", "kcore", "keys"})})
    argv = bwrap_part(sandbox_command(_spec(tmp_path), ["true"], env={}, runtime_dir=tmp_path / "run", host=host))
    assert {"--disable-userns", "--assert-userns-disabled"} <= set(argv[:argv.index("--")])
    ro = _pairs(argv, "--ro-bind")
    assert ("/proc/sys", "/proc/sys") in ro and ("/proc/sysrq-trigger", "/proc/sysrq-trigger") in ro
    assert ("/dev/null", "/proc/kcore") in ro and ("/dev/null", "/proc/keys") in ro
    assert ("/proc/fs", "/proc/fs") not in ro  # absent on this (fake) kernel: not bound
    # after the new /proc, before anything else is mounted over it
    assert argv.index("/proc/sys") > argv.index("--proc")


def test_environment_values_never_enter_argv(tmp_path):
    argv = sandbox_command(_spec(tmp_path), ["true"], env={"JUPYTERHUB_API_TOKEN": "s3cr3t-token", "B": "x"},
                           runtime_dir=tmp_path / "run", host=HOST)
    assert not any("s3cr3t-token" in a for a in argv)
    assert rest_of(argv)[rest_of(argv).index("--keep-env") + 1] == "B,JUPYTERHUB_API_TOKEN"


@pytest.mark.parametrize("kwargs, message", [
    ({"sockets": {"db": Path("/x.sock")}}, "unknown sandbox socket"),
    ({"env": {"BAD NAME": "1"}}, "invalid environment variable"),
    ({"runtime_dir": Path("relative/run")}, "absolute"),
    ({"argv": []}, "nothing to run"),
])
def test_bad_input_is_refused(tmp_path, kwargs, message):
    args = {"argv": ["true"], "env": {}, "runtime_dir": tmp_path / "run", **kwargs}
    with pytest.raises(InvalidInput, match=message):
        sandbox_command(_spec(tmp_path), args.pop("argv"), host=HOST, **args)


def test_cpu_list():
    assert cpu_list(0.5, (0, 1)) == "0"
    assert cpu_list(2.0, (4, 6, 7)) == "4,6"
    assert cpu_list(16, (0, 1)) == "0,1"
    with pytest.raises(InvalidInput):
        cpu_list(0, (0,))


def test_prepare_runtime_dir_removes_planted_links_without_following(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "hub.sock").symlink_to(victim / "keep.txt")
    (run / "sub").mkdir()
    (run / "sub" / "link").symlink_to(victim)
    prepare_runtime_dir(run)
    assert list(run.iterdir()) == []
    assert (run.stat().st_mode & 0o777) == 0o700
    assert (victim / "keep.txt").read_text() == "x"
