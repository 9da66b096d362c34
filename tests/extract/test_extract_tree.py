"""``pds_kernel.extract.tree``: how a published extract is read for mounting (no sandbox needed)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from pds_kernel.extract.tree import TreeRefused, fingerprint, open_published, scan, verify

BUILD = "20260101T000000Z-abcdef"


def _project(tmp_path: Path, files: dict[str, bytes], manifest_files: list[dict] | None = None) -> Path:
    build = tmp_path / "p" / "builds" / BUILD
    for name, data in files.items():
        (build / name).parent.mkdir(parents=True, exist_ok=True)
        (build / name).write_bytes(data)
    listed = manifest_files if manifest_files is not None else [
        {"file": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]
    (build / "manifest.json").write_text(json.dumps({"tables": {"T": {"files": listed}}}))
    os.symlink(f"builds/{BUILD}", tmp_path / "p" / "extract")
    return tmp_path / "p"


def _scan(project: Path):
    fd = open_published(str(project), BUILD)
    try:
        return scan(fd)
    finally:
        os.close(fd)


def test_a_published_tree_scans_and_verifies(tmp_path):
    project = _project(tmp_path, {"T/part-0.parquet": b"abc", "T/part-1.parquet": b"defg"})
    tree = _scan(project)
    assert [f.path for f in tree.files] == ["T/part-0.parquet", "T/part-1.parquet"] and tree.total_bytes == 7
    fd = open_published(str(project), BUILD)
    try:
        assert verify(fd, tree.manifest_sha256, hash_max_bytes=100)[1] is True  # re-hashed
        assert verify(fd, tree.manifest_sha256, hash_max_bytes=0, expected_fingerprint=tree.fingerprint)[1] is False
        with pytest.raises(TreeRefused, match="no state of its files was recorded"):
            verify(fd, tree.manifest_sha256, hash_max_bytes=0)
        with pytest.raises(TreeRefused, match="not the published one"):
            verify(fd, "0" * 64, hash_max_bytes=100)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["../other/T.parquet", "/etc/passwd", "T/a/b.parquet", "", "manifest.json",
                                  "T/../T.parquet", "T\\x.parquet"])
def test_manifest_paths_out_of_the_extract_are_refused(tmp_path, path):
    project = _project(tmp_path, {"T.parquet": b"abc"}, [{"file": path, "size": 3, "sha256": "a" * 64}])
    with pytest.raises(TreeRefused, match="not a file of the extract"):
        _scan(project)


def test_a_manifest_that_is_a_link_is_refused(tmp_path):
    project = _project(tmp_path, {"T.parquet": b"abc"})
    manifest = project / "builds" / BUILD / "manifest.json"
    (tmp_path / "elsewhere.json").write_text(manifest.read_text())
    manifest.unlink()
    os.symlink(tmp_path / "elsewhere.json", manifest)
    with pytest.raises(TreeRefused, match="manifest.json cannot be opened as a regular file"):
        _scan(project)


def test_a_bad_build_id_or_link_is_refused(tmp_path):
    project = _project(tmp_path, {"T.parquet": b"abc"})
    with pytest.raises(TreeRefused, match="is not a build id"):
        open_published(str(project), "../builds")
    (project / "extract").unlink()
    (project / "extract").mkdir()
    with pytest.raises(TreeRefused, match="not the link a publication makes"):
        open_published(str(project), BUILD)


@pytest.mark.parametrize("change", ["touch", "chmod", "rewrite same bytes", "replace same bytes"])
def test_the_fingerprint_sees_what_reading_would_not(tmp_path, change):
    """The bytes stay the same; the file's state does not (what a large extract is checked by)."""
    project = _project(tmp_path, {"T.parquet": b"abc"})
    before = _scan(project).fingerprint
    time.sleep(0.05)  # file times tick with the kernel's coarse clock (a few ms)
    path = project / "builds" / BUILD / "T.parquet"
    stat = path.stat()
    if change == "touch":
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same times put back: ctime moves
    elif change == "chmod":
        os.chmod(path, stat.st_mode)
    elif change == "rewrite same bytes":
        path.write_bytes(b"abc")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        path.unlink()
        path.write_bytes(b"abc")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fd = open_published(str(project), BUILD)
    try:
        assert fingerprint(fd) != before
    finally:
        os.close(fd)
