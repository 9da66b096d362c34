"""Support of tests/security/test_k8s_extract_changed_while_running.py: a workspace pod's notebook
container kept running (bubblewrap, its ``/data`` bound once, as the kubelet binds the claim's
``extract`` sub-path when the container starts) while its claim is changed, its liveness probe run
inside it as the kubelet runs one, and the hub's poll of the pod's status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from tests.k8s.pod_cache import PodCache, pods_seen_by  # noqa: F401 (the tests import them from here)
from tests.k8s.test_extract_mount_k8s import kubelet_argv

#: what runs as the notebook container: it runs each command it is sent (a JSON argv and a timeout,
#: one per line) inside the container, as the kubelet's exec does, and says how it ended; a command
#: that outlives its timeout is killed and reported as such (the kubelet's ``timeoutSeconds``)
_CONTAINER = """
import json, subprocess, sys
for line in sys.stdin:
    argv, timeout = json.loads(line)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        print(json.dumps([done.returncode, done.stdout, done.stderr]), flush=True)
    except subprocess.TimeoutExpired:
        print(json.dumps(["timeout", "", ""]), flush=True)
"""

#: how the claim is changed while the notebook runs (the build's owner may: its files are 0444)
CHANGES = ("append", "rewrite-same-size", "replace-same-size", "add", "remove", "link", "fifo", "symlink-loop",
           "deep-tree", "huge-directory")
#: how deep the "deep-tree" change nests folders
DEEP = 1500


class RunningNotebook:
    """The notebook container, started once: :meth:`probe` runs its liveness probe in it."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def run(self, argv: list[str], timeout: float) -> tuple[object, str, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([argv, timeout]) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the notebook container ended"
        code, out, err = json.loads(line)
        return code, out, err

    def probe(self, probe: dict) -> tuple[object, str]:
        """The kubelet's run of the exec probe ``probe`` (this environment's Python for the image's)."""
        command = probe["exec"]["command"]
        assert command[0] == "python"
        code, _, err = self.run([sys.executable, *command[1:]], probe["timeoutSeconds"])
        return code, err

    def listing(self) -> list[str]:
        """What the notebook serves: the names under its ``/data``."""
        code, out, err = self.run([sys.executable, "-I", "-c",
                                   "import json, os; print(json.dumps(sorted(os.listdir('/data'))))"], 60)
        assert code == 0, err
        return json.loads(out)


@contextmanager
def running_notebook(notebook: dict, claim: Path, record: Path):
    process = subprocess.Popen(kubelet_argv(notebook, claim, record, [sys.executable, "-I", "-c", _CONTAINER]),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        notebook = RunningNotebook(process)
        assert notebook.run(["true"], 60)[0] == 0  # started: its /data bound, as the kubelet bound it
        yield notebook
    finally:
        process.kill()
        process.communicate(timeout=30)


def change(build: Path, how: str) -> None:
    """Change the published build ``build`` (on the project's claim) the way ``how`` says."""
    os.chmod(build, 0o755)
    target = next(p for p in sorted(build.iterdir()) if p.suffix == ".parquet")
    if how == "append":
        target.chmod(0o644)
        with open(target, "ab") as out:  # same inode, more rows
            out.write(b"\0" * 4096)
    elif how == "rewrite-same-size":  # in place, same size, its modification time put back
        info = target.stat()
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 1
        target.chmod(0o644)
        target.write_bytes(bytes(data))
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        target.chmod(0o444)
    elif how == "replace-same-size":  # a new file of the same length renamed over it
        forged = build / ".forged"
        forged.write_bytes(bytes(reversed(target.read_bytes())))
        forged.chmod(0o444)
        os.rename(forged, target)
    elif how == "add":
        (build / "EXTRA.parquet").write_bytes(b"PAR1")
    elif how == "remove":
        target.unlink()
    elif how == "link":
        target.unlink()
        os.symlink("/etc/passwd", target)
    elif how == "fifo":  # a reader that opens it would block
        os.mkfifo(build / "ZZ.parquet")
    elif how == "symlink-loop":
        os.symlink("loop-b", build / "loop-a")
        os.symlink("loop-a", build / "loop-b")
    elif how == "deep-tree":  # deeper than the interpreter's recursion limit
        path = build
        for _ in range(DEEP):
            path = path / "d"
            path.mkdir()
    elif how == "huge-directory":
        folder = build / "many"
        folder.mkdir()
        for i in range(20000):
            (folder / f"{i:05d}").touch()
    else:
        raise ValueError(how)


def remove_deep_tree(build: Path) -> None:
    """Remove what ``change(build, "deep-tree")`` made (too deep for :func:`shutil.rmtree`), deepest first."""
    path = build / "/".join(["d"] * DEEP)
    while path != build:
        if path.is_dir():
            path.rmdir()
        path = path.parent
