"""A published extract's files, read through directory file descriptors: what a workspace mounts.

Standard library only: the sandbox launcher (:mod:`pds_kernel.sandbox.launch`) and the workspace
pod's init container on Kubernetes (``python -I -m pds_kernel.extract.tree``) use it as well as the
hub and the ``pds`` command.

Nothing here follows a symbolic link after the one ``extract`` link that :func:`publish
<pds_kernel.extract.build.publish>` makes: :func:`open_published` checks that the link names the
expected build (``builds/<build id>``) and opens ``builds`` and the build with ``O_NOFOLLOW``;
everything below is opened relative to that directory's descriptor, again with ``O_NOFOLLOW``. So
what is checked is the directory that was opened, whatever is renamed or swapped afterwards, and
the caller mounts that same descriptor (the launcher binds ``/proc/self/fd/N``).

:func:`scan` reads the tree against the manifest: every entry is a regular file with one link
(no symbolic or hard link, FIFO, socket or device) named in the manifest with the manifest's size,
or a directory holding such files; nothing is missing. It also gives the tree's *fingerprint*: a
SHA-256 over every entry's name, type, size, inode, modification and change times. The kernel sets
the change time (``ctime``) on every write, rename, link or mode change, and no system call lets
an unprivileged process set it back: a file replaced or rewritten after the fingerprint was taken
gives another fingerprint, without reading a byte of it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..trees import DIRECTORY
from .writers import WriterFound, identities, refuse_writers

MANIFEST = "manifest.json"
#: The name of a build (``builds/<build id>``), as :func:`pds_kernel.extract.build.run_build` makes it.
BUILD_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
#: A manifest larger than this is not read (a national extract's is a few hundred kB).
MAX_MANIFEST_BYTES = 64 << 20
BLOCK = 8 << 20
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class TreeRefused(Exception):
    """The extract on disk is not the published one; the message says what differs."""


@dataclass(frozen=True)
class Listed:
    """A file the manifest lists: its path in the extract, size (None in manifests written before
    sizes were recorded) and SHA-256."""

    path: str
    size: int | None
    sha256: str


@dataclass(frozen=True)
class Tree:
    """What :func:`scan` found: the manifest's SHA-256 and parsed content, the listed files, their
    total size, and the fingerprint of every entry's state."""

    manifest_sha256: str
    manifest: dict
    files: tuple[Listed, ...]
    total_bytes: int
    fingerprint: str


# ---- opening ------------------------------------------------------------------------------------
def open_published(project_dir: str, build_id: str) -> int:
    """A descriptor of the build ``build_id`` of the project at ``project_dir``, reached through its
    ``extract`` link, which must read exactly ``builds/<build_id>``. The caller closes it."""
    if not BUILD_ID.fullmatch(build_id or ""):
        raise TreeRefused(f"{build_id!r} is not a build id")
    pfd = os.open(project_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            target = os.readlink("extract", dir_fd=pfd)
        except FileNotFoundError:
            raise TreeRefused("the extract is missing (no 'extract' link in the project's directory)") from None
        except OSError:
            raise TreeRefused("'extract' in the project's directory is not the link a publication makes "
                              "(a directory or a file was put in its place)") from None
        if target != f"builds/{build_id}":
            raise TreeRefused(f"the 'extract' link points to {target[:200]!r}, not to the latest published "
                              f"build builds/{build_id}")
        builds = _open_dir(pfd, "builds")
        try:
            return _open_dir(builds, build_id)
        finally:
            os.close(builds)
    finally:
        os.close(pfd)


def _open_dir(parent: int, name: str) -> int:
    try:
        return os.open(name, DIRECTORY, dir_fd=parent)
    except FileNotFoundError:
        raise TreeRefused(f"{name} is missing") from None
    except OSError:  # ELOOP (a symbolic link) or ENOTDIR
        raise TreeRefused(f"{name} is not a directory (a symbolic link or another file was put in its place)") from None


def _open_file(parent: int, name: str) -> int:
    """A regular file below ``parent``, opened without following a link or blocking on a FIFO."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
    except OSError as exc:
        raise TreeRefused(f"{name} cannot be opened as a regular file ({os.strerror(exc.errno or 0)})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise TreeRefused(f"{name} is not a regular file with a single link")
    return fd


# ---- the manifest -------------------------------------------------------------------------------
def read_manifest(root: int) -> tuple[bytes, dict]:
    fd = _open_file(root, MANIFEST)
    try:
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_MANIFEST_BYTES:
        raise TreeRefused(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise TreeRefused(f"{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        raise TreeRefused(f"{MANIFEST} lists no tables")
    return data, manifest


def listed_files(manifest: dict) -> tuple[Listed, ...]:
    """Every file of the manifest (both layouts of :mod:`.layout`), checked to be a plain relative
    path inside the extract."""
    found: dict[str, Listed] = {}
    for entry in manifest["tables"].values():
        items = entry.get("files") if isinstance(entry, dict) and "files" in entry else [entry]
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                raise TreeRefused(f"{MANIFEST} has a file entry that is not an object")
            path, size, digest = item.get("file"), item.get("size"), item.get("sha256")
            if not isinstance(path, str) or not _plain(path) or path == MANIFEST:
                raise TreeRefused(f"{MANIFEST} lists {str(path)[:120]!r}, which is not a file of the extract")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise TreeRefused(f"{MANIFEST} gives no SHA-256 for {path}")
            if size is not None and (not isinstance(size, int) or size < 0):
                raise TreeRefused(f"{MANIFEST} gives an invalid size for {path}")
            found[path] = Listed(path, size, digest)
    return tuple(sorted(found.values(), key=lambda f: f.path))


def _plain(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) <= 2 and "\\" not in rel and "\0" not in rel and all(p not in ("", ".", "..") for p in parts)


# ---- scanning -----------------------------------------------------------------------------------
def _walk(root: int, prefix: str = "") -> Iterator[tuple[str, os.stat_result, int]]:
    """``(relative path, lstat, directory fd)`` of every entry below ``root``, sorted, depth first.
    A folder inside a folder is given but not walked: an extract has none (:func:`scan` refuses it,
    and a fingerprint with it differs from every published one), so no tree, however deep, makes
    the walk recurse more than once (a deep one raised ``RecursionError`` before: red team 7)."""
    for name in sorted(os.listdir(root)):
        info = os.stat(name, dir_fd=root, follow_symlinks=False)
        yield prefix + name, info, root
        if stat.S_ISDIR(info.st_mode) and not prefix:
            sub = _open_dir(root, name)
            try:
                yield from _walk(sub, f"{prefix}{name}/")
            finally:
                os.close(sub)


def _state(rel: str, info: os.stat_result) -> bytes:
    """One entry's part of the fingerprint. A name that is not UTF-8 (``os.listdir`` gives its bytes
    as surrogates) is hashed as its bytes: it makes the fingerprint differ, never fail."""
    kind = "d" if stat.S_ISDIR(info.st_mode) else "f"
    return (f"{rel}\0{kind}\0{info.st_size if kind == 'f' else 0}\0{info.st_ino}\0{info.st_mtime_ns}\0"
            f"{info.st_ctime_ns}\n").encode("utf-8", "surrogateescape")


def scan(root: int) -> Tree:
    """Check the tree at ``root`` against its manifest (see the module docstring); raises
    :class:`TreeRefused` with the first difference."""
    data, manifest = read_manifest(root)
    files = listed_files(manifest)
    expected = {f.path: f for f in files}
    folders = {f.path.split("/")[0] for f in files if "/" in f.path}
    digest = hashlib.sha256(_state(".", os.fstat(root)))
    seen = set()
    for rel, info, _parent in _walk(root):
        if stat.S_ISDIR(info.st_mode):
            if rel not in folders:
                raise TreeRefused(f"{rel}/ is a directory the manifest does not list")
        elif not stat.S_ISREG(info.st_mode):
            raise TreeRefused(f"{rel} is not a regular file ({_kind(info)})")
        elif info.st_nlink != 1:
            raise TreeRefused(f"{rel} has {info.st_nlink} hard links (a published file has one)")
        elif rel != MANIFEST:
            listed = expected.get(rel)
            if listed is None:
                raise TreeRefused(f"{rel} is not listed in the manifest")
            if listed.size is not None and listed.size != info.st_size:
                raise TreeRefused(f"{rel} has {info.st_size} bytes, the manifest says {listed.size}")
            seen.add(rel)
        digest.update(_state(rel, info))
    missing = sorted(set(expected) - seen)
    if missing:
        raise TreeRefused(f"{missing[0]} is listed in the manifest but missing"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    total = sum(os.stat(f.path, dir_fd=root, follow_symlinks=False).st_size for f in files)
    return Tree(hashlib.sha256(data).hexdigest(), manifest, files, total, digest.hexdigest())


def scan_unwritten(root: int) -> Tree:
    """:func:`scan`, after making sure no process could change the tree unseen: none holds one
    of its files open for writing or mapped writable (:mod:`.writers`) while its state is taken.
    Every fingerprint trusted later (a publication's, a start's check) is taken so."""
    states: dict[str, os.stat_result] = {}
    before = fingerprint(root, states)
    try:
        refuse_writers(identities(states.values()))
    except WriterFound as exc:
        raise TreeRefused(f"a file of the extract may be changing: {exc}") from None
    tree = scan(root)
    if tree.fingerprint != before:
        raise TreeRefused("the extract's files changed while they were being checked")
    return tree


def _kind(info: os.stat_result) -> str:
    mode = info.st_mode
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a file"


def fingerprint(root: int, states: dict[str, os.stat_result] | None = None) -> str:
    """The fingerprint of the tree at ``root`` (:func:`scan`'s, without its checks); ``states``,
    when given, receives the state of every entry the fingerprint was taken over."""
    digest = hashlib.sha256(_state(".", os.fstat(root)))
    for rel, info, _parent in _walk(root):
        digest.update(_state(rel, info))
        if states is not None:
            states[rel] = info
    return digest.hexdigest()


def open_listed(root: int, rel: str) -> int:
    """A descriptor of the regular file ``rel`` (``NAME`` or ``FOLDER/NAME``) below ``root``,
    opened without following a link; the caller closes it."""
    folder, _, name = rel.rpartition("/")
    if not _plain(rel):
        raise TreeRefused(f"{rel[:120]!r} is not a file of the extract")
    parent = _open_dir(root, folder) if folder else root
    try:
        return _open_file(parent, name)
    finally:
        if folder:
            os.close(parent)


def hash_files(root: int, tree: Tree, on_bytes: Callable[[int], None] | None = None) -> None:
    """Re-hash every listed file below ``root``; raises :class:`TreeRefused` on the first whose
    SHA-256 differs from the manifest's. ``on_bytes`` is told the bytes read (progress)."""
    for listed in tree.files:
        fd = open_listed(root, listed.path)
        digest = hashlib.sha256()
        with os.fdopen(fd, "rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
                if on_bytes:
                    on_bytes(len(block))
        if digest.hexdigest() != listed.sha256:
            raise TreeRefused(f"{listed.path} is not the published file (its SHA-256 differs from the manifest's)")


def verify(root: int, manifest_sha256: str, *, hash_max_bytes: int, expected_fingerprint: str | None = None,
           on_total: Callable[[int], None] | None = None,
           on_bytes: Callable[[int], None] | None = None) -> tuple[Tree, bool]:
    """:func:`scan` the tree at ``root`` and compare its manifest with ``manifest_sha256`` (what the
    audit trail recorded). Then an extract of up to ``hash_max_bytes`` has every file re-hashed (a
    tree that changes meanwhile is refused too); a larger one must have the fingerprint
    ``expected_fingerprint``. Returns the tree and whether it was re-hashed. ``on_total`` is told
    the bytes to hash, ``on_bytes`` the bytes hashed (progress). A tree that a process could be
    changing unseen is refused (:func:`scan_unwritten`)."""
    tree = scan_unwritten(root)
    if tree.manifest_sha256 != manifest_sha256:
        raise TreeRefused(f"{MANIFEST} is not the published one (its SHA-256 differs from the one the "
                          "audit trail recorded when the extract was published)")
    if tree.total_bytes > hash_max_bytes:
        if expected_fingerprint is None:
            raise TreeRefused(f"it holds {tree.total_bytes} bytes, more than are re-hashed at each start, and no "
                              "state of its files was recorded yet (published before such records)")
        if tree.fingerprint != expected_fingerprint:
            raise TreeRefused("the extract's files changed since they were last verified (their state differs "
                              "from the one recorded at publication or by the last pds extract verify)")
        return tree, False
    if on_total:
        on_total(tree.total_bytes)
    hash_files(root, tree, on_bytes)
    if fingerprint(root) != tree.fingerprint:
        raise TreeRefused("the extract's files changed while they were being verified")
    return tree, True


# ---- the init container of a workspace pod, and its notebook container's start ----------------------
#: The exit code of a refusal (the init container's, or the notebook's start): the hub reads it in
#: the pod's status (:mod:`pds_kernel.k8s.pod_status`).
REFUSED_EXIT = 3
#: What walking a tree may raise besides :class:`TreeRefused`: each is a refusal (a tree too deep for
#: the interpreter's recursion limit or too large for memory is no published extract).
UNREADABLE = (OSError, ValueError, RecursionError, MemoryError)
#: Set in a Kubernetes workspace's notebook container: the file where its ``verify-extract``
#: container recorded the fingerprint of the tree it verified (:func:`refuse_unless_checked`).
CHECKED_ENV = "PDS_EXTRACT_CHECKED"


def refuse_to_start(reason: object) -> int:
    """Say why the extract is refused (standard error, and ``/dev/termination-log``, which the kubelet
    puts in the container's status); return :data:`REFUSED_EXIT`."""
    message = f"the project's extract is refused: {reason}; the data manager must re-publish it (pds extract build)"
    print(message, file=sys.stderr)
    try:
        with open("/dev/termination-log", "w", encoding="utf-8") as log:
            log.write(message)
    except OSError:
        pass
    return REFUSED_EXIT


def main(argv: list[str] | None = None) -> int:
    """``python -I -m pds_kernel.extract.tree DIR --manifest-sha256 HEX --hash-max-bytes N
    [--fingerprint HEX] [--record FILE]``: :func:`verify` the extract mounted at ``DIR`` (the pod's
    ``/data``) and write the fingerprint of the tree it verified to ``FILE`` (a folder the
    notebook container mounts read-only: :func:`refuse_unless_checked`); exit 0, or
    :data:`REFUSED_EXIT` with the reason on standard error and in ``/dev/termination-log`` (shown
    in the pod's status)."""
    parser = argparse.ArgumentParser(prog="pds_kernel.extract.tree", description="verify a mounted extract")
    parser.add_argument("directory")
    parser.add_argument("--manifest-sha256", required=True)
    parser.add_argument("--hash-max-bytes", type=int, required=True, help="re-hash every file up to this size")
    parser.add_argument("--fingerprint", default=None, help="the recorded fingerprint of the files' state")
    parser.add_argument("--record", default=None, help="write the verified tree's fingerprint to this file")
    args = parser.parse_args(argv)
    try:
        root = os.open(args.directory, DIRECTORY)
        try:
            tree, _ = verify(root, args.manifest_sha256, hash_max_bytes=args.hash_max_bytes,
                             expected_fingerprint=args.fingerprint)
        finally:
            os.close(root)
        if args.record:
            with open(args.record, "w", encoding="ascii") as record:
                record.write(tree.fingerprint)
    except (TreeRefused, *UNREADABLE) as exc:
        return refuse_to_start(f"{exc} ({type(exc).__name__})" if isinstance(exc, RecursionError) else exc)
    print("the extract is the published one")
    return 0


def refuse_unless_checked(environ, directory: str = "/data") -> None:
    """The notebook container's start on Kubernetes, before it serves anything: when ``environ``
    names the init container's record (:data:`CHECKED_ENV`), the tree mounted at ``directory``
    must have the fingerprint recorded there, i.e. be the very tree the init container verified,
    unchanged (the kubelet mounts each container's ``subPath`` when that container starts: the
    ``extract`` link re-pointed, or a file replaced, in between gives another tree). Otherwise
    exit :data:`REFUSED_EXIT` (a missing or unreadable record too). Without the variable (the
    local sandbox, whose launcher mounts the very descriptor it checked) it does nothing."""
    record = environ.get(CHECKED_ENV)
    if not record:
        return
    _compare_with_record(record, directory)


def require_checked(environ, directory: str = "/data") -> None:
    """:func:`refuse_unless_checked` for a start that runs only in a pod with a ``verify-extract``
    container (a Dask worker's, the cohort-link Job's linker): without :data:`CHECKED_ENV` it
    refuses too (deny by default)."""
    record = environ.get(CHECKED_ENV)
    if not record:
        raise SystemExit(refuse_to_start(f"${CHECKED_ENV} is not set (the check of its mount cannot be read)"))
    _compare_with_record(record, directory)


def matches_record(record: str, directory: str) -> bool:
    """Whether the tree at ``directory`` has the fingerprint ``verify-extract`` wrote to ``record``
    (an empty or another tree's record: no). Raises :class:`OSError` or :class:`ValueError` when
    either cannot be read (a missing record, ``directory`` not a directory)."""
    with open(record, encoding="ascii") as handle:
        expected = handle.read(65)
    root = os.open(directory, DIRECTORY)
    try:
        return fingerprint(root) == expected
    finally:
        os.close(root)


def _compare_with_record(record: str, directory: str) -> None:
    try:
        same = matches_record(record, directory)
    except (TreeRefused, *UNREADABLE) as exc:
        raise SystemExit(refuse_to_start(f"the check of its mount cannot be read ({exc})")) from None
    if not same:
        raise SystemExit(refuse_to_start("the extract mounted in this container is not the one its pod's "
                                          "verify-extract container checked (it changed in between)"))


if __name__ == "__main__":
    sys.exit(main())
