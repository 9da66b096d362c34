"""Reading files of a project's extract bound to the check it passed (the gate's reads).

The gate checks the project's extract as a workspace's is (:func:`.mount_check.check_for_workspace`,
a :class:`.mount_check.CheckedMount`), then reads some of its files: ``COHORT.parquet`` (the
project's PERSON_IDs) and the tables a model's numbers are compared with. Read by their paths, a
file replaced or rewritten between the check and the read would be read unchecked. So
:func:`read_checked`:

* opens the build that was checked again through the project's ``extract`` link (it must still
  name that build) and every file relative to that directory's descriptor, no link followed
  (:func:`.tree.open_published`, :func:`.tree.open_listed`);
* after the reads, takes the tree's fingerprint again (:func:`.tree.fingerprint`). It must be the
  one the check found, and every descriptor read must be, by device, inode, size, modification and
  change time, the entry of that name in the tree. The kernel sets a file's change time on every
  write, rename and link, so the bytes read are the checked file's, unchanged since the check,
  during the read too.

Otherwise it raises :class:`ExtractChangedWhileRead` (an :class:`.mount_check.ExtractRefused`),
saying what moved and who puts it right; the gate's callers audit it as a refused submission.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from .mount_check import WHO_FIXES, CheckedMount, ExtractRefused
from .tree import TreeRefused, fingerprint, open_listed, open_published

T = TypeVar("T")
#: opens a file of the extract (``NAME`` or ``FOLDER/NAME``) for reading, bound to the check
Opener = Callable[[str], BinaryIO]


class ExtractChangedWhileRead(ExtractRefused):
    """A file of the extract changed between its check and the end of the gate's read of it."""


def _changed(project: str, what: str) -> ExtractChangedWhileRead:
    return ExtractChangedWhileRead(
        f"the gate checks an export against its project's published extract, and the extract of project "
        f"{project} changed between the gate's check and its reading ({what}): the submission is refused; "
        f"{WHO_FIXES}, then submit again")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == \
        (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def read_checked(projects_root, checked: CheckedMount, read: Callable[[Opener], T]) -> T:
    """``read(open_file)``, where ``open_file(rel)`` opens a file of the checked extract (see the
    module docstring), or :class:`ExtractChangedWhileRead` when what was read is not exactly what
    ``checked`` found. A file missing or not regular raises it too."""
    project = checked.expected.project
    try:
        root = open_published(str(projects_root / project), checked.expected.build_id)
    except (TreeRefused, OSError) as exc:
        raise _changed(project, f"its build cannot be opened again: {exc}") from None
    opened: list[tuple[str, int]] = []

    def open_file(rel: str) -> BinaryIO:
        try:
            fd = open_listed(root, rel)
        except (TreeRefused, OSError) as exc:
            raise _changed(project, f"{rel}: {exc}") from None
        opened.append((rel, os.dup(fd)))  # compared after the read, whether the reader closes its file or not
        return os.fdopen(fd, "rb")

    try:
        try:
            value = read(open_file)
        except ExtractChangedWhileRead:
            raise
        except Exception:  # a file rewritten under the reader can break it: say so, rather than its error
            _check_unchanged(root, checked, opened)
            raise
        _check_unchanged(root, checked, opened)
        return value
    finally:
        for _, fd in opened:
            os.close(fd)
        os.close(root)


def _check_unchanged(root: int, checked: CheckedMount, opened: list[tuple[str, int]]) -> None:
    project = checked.expected.project
    after = [(rel, os.fstat(fd)) for rel, fd in opened]
    states: dict[str, os.stat_result] = {}
    try:
        now = fingerprint(root, states)
    except (TreeRefused, OSError) as exc:
        raise _changed(project, f"its files cannot be read as the check found them: {exc}") from None
    if now != checked.fingerprint:
        raise _changed(project, "its files are no longer in the state the check found")
    for rel, info in after:
        if rel not in states or not _same(info, states[rel]):
            raise _changed(project, f"{rel} was replaced or rewritten while the gate read it")
