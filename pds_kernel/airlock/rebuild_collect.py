"""Taking the rebuilt copies back from the folder the rebuild's child wrote them in.

The child parses what researchers submit (:mod:`.rebuild_formats`): a file that exploits a flaw of
a parser runs code as the child, which then writes what it likes in its out folder and says what
it likes about it. Whatever confines it (a sandbox of this machine, :mod:`.rebuild_sandbox`, or a
Job of the project on Kubernetes, :mod:`.rebuild_job`), the gate takes back from that folder only
the copies it asked for, the child says it wrote, and that are regular files of at most
:data:`MAX_COPY_BYTES`: the folder is opened without following a link, and each copy relative to
it, without following one either (a link to a host file would make the gate copy that file).
On Kubernetes the same bounds are applied first inside the Job's pod (:func:`copy_out`, its second
container, :func:`collect_container`), from the pod-local folder the child wrote to the staging
claim: the rebuild's Job (:mod:`.rebuild_job`) and the cohort link's (:mod:`.cohort_link_job`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from ..k8s.pods import build_resources

#: the largest copy the gate takes back from the child
MAX_COPY_BYTES = 512 * 1024 * 1024


def collect_copies(out: Path, copies: list[tuple[str, Path, str]], results: object) -> None:
    """For each ``(file, target, name)`` whose result is None (``name`` rebuilt), copy the regular
    file ``file`` of the folder ``out`` to ``target`` (which must not exist); what is missing, too
    large or not a regular file stays missing (the gate then refuses the batch)."""
    if not isinstance(results, dict):
        return
    # The child may have replaced its out folder by a link: it is opened without following one,
    # and each copy relative to it.
    try:
        folder = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for file, target, name in copies:
            if results.get(name, "") is None:
                _copy_back(folder, file, target)
    finally:
        os.close(folder)


def _copy_back(folder: int, name: str, target: Path, bound: int = MAX_COPY_BYTES) -> int:
    """Copy the regular file ``name`` of the folder open as ``folder`` (no link followed, at most
    ``bound`` bytes) to ``target``: the bytes copied; nothing (0) when it is anything else, or
    grows past the bound while it is read."""
    if "/" in name or name in {"", ".", ".."}:
        return 0
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        return 0
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > bound:  # a folder, a FIFO, a device: skipped
        os.close(fd)
        return 0
    with os.fdopen(fd, "rb") as src:
        with open(target, "xb") as out:
            left = bound + 1  # one byte more tells a copy that grew past the bound
            while left and (block := src.read(min(left, 1 << 20))):
                out.write(block)
                left -= len(block)
        if not left:
            os.unlink(target)
            return 0
        return bound + 1 - left


def copy_out(source: Path, dest: Path, names: list[str], max_total: int) -> None:
    """The rebuild Job's second container (:mod:`.rebuild_job`): copy the regular files ``names``
    of ``source`` (the pod-local folder the child wrote, after it ended) into ``dest`` (its work
    folder on the staging claim), no link followed, each at most :data:`MAX_COPY_BYTES` and all
    at most ``max_total`` bytes: what the child wrote reaches the shared claim only this way."""
    try:
        folder = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    left = max_total
    try:
        for name in names:
            if left > 0:
                left -= _copy_back(folder, name, dest / name, min(MAX_COPY_BYTES, left))
    finally:
        os.close(folder)


#: the Job's second container, and its share of the pod: it only copies
COLLECT_CONTAINER = "collect"
COLLECT_CPU = 0.25
COLLECT_MEMORY_MB = 256
#: the names of the pod's volumes the second container reads from and writes to
SOURCE_VOLUME, DEST_VOLUME = "out", "copies"


def collect_container(image: str, pull_policy: str, *, source: PurePosixPath, dest: PurePosixPath, dest_path: str,
                      names: list[str], max_bytes: int) -> dict[str, Any]:
    """A Job's second container (:data:`COLLECT_CONTAINER`): :func:`copy_out` of ``names`` from the pod-local folder
    (the emptyDir :data:`SOURCE_VOLUME` at ``source``, read-only here) to ``dest_path`` of the staging
    claim (the volume :data:`DEST_VOLUME`, by sub-path at ``dest``), at most ``max_bytes`` in all.
    It mounts nothing else."""
    if any("/" in name or name in {"", ".", ".."} for name in names):
        raise ValueError("a collected file is a name of the folder, not a path")
    return {
        "name": COLLECT_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["python", "-I", "-m", "pds_kernel.airlock.rebuild_collect", "--from", str(source),
                    "--to", str(dest), "--max-bytes", str(int(max_bytes)), *names],
        "resources": build_resources(COLLECT_CPU, COLLECT_MEMORY_MB),
        "volumeMounts": [
            {"name": SOURCE_VOLUME, "mountPath": str(source), "readOnly": True},
            {"name": DEST_VOLUME, "mountPath": str(dest), "subPath": dest_path},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m pds_kernel.airlock.rebuild_collect --from DIR --to DIR --max-bytes N NAME...``"""
    import argparse

    parser = argparse.ArgumentParser(prog="pds_kernel.airlock.rebuild_collect", description=copy_out.__doc__)
    parser.add_argument("--from", dest="source", required=True)
    parser.add_argument("--to", dest="dest", required=True)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    copy_out(Path(args.source), Path(args.dest), args.names, args.max_bytes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
