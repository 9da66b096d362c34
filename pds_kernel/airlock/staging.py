"""The staging area: immutable, hashed copies of the files of a request.

    staging/<project>/<request>/<index>-r<round>-<name>

A file is copied once, hashed while copied, made read-only, and never rewritten: a changed file
at resubmission is a new copy with a new round, and the old bytes stay for the record. Names come
from outside, so they are validated here (a base name, never a path); the staging directory is not
reachable from a workspace.

Types are judged twice: :func:`check_types` refuses blocked, unknown and not-allowed extensions
before a byte is copied, :func:`check_staged_types` refuses a staged copy whose content is not what
its extension says (a ZIP named ``.csv``). Both raise :class:`RefusedFiles`, one reason per file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import IntegrityError, InvalidInput
from ..registry.names import check_project_id
from .checks import filetypes
from .inputs import quoted
from .limits import AirlockLimits

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ ()+-]{0,199}$")
_REQUEST_ID = re.compile(r"^[a-f0-9]{32}$")
_CHUNK = 1024 * 1024


class RefusedFiles(InvalidInput):
    """Files the gate will not take at all, with the reason for each (shown to the researcher)."""

    def __init__(self, reasons: Mapping[str, str]):
        self.reasons = dict(reasons)
        super().__init__("refused: " + "; ".join(f"{name}: {why}" for name, why in self.reasons.items()))


@dataclass(frozen=True)
class StagedFile:
    index: int
    name: str
    stored_name: str
    sha256: str
    size: int


def fsync_path(path: Path) -> None:
    """Make ``path`` (a file or a folder's entries) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_file_name(name: str) -> str:
    """A base file name safe in a path and a URL: letters, digits, ``._ ()+-``; no leading dot."""
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(f"invalid file name {quoted(name)}: use letters, digits, '.', '_', '-', spaces; "
                           "no folders, at most 200 characters")
    return name


def check_request_id(value: str) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise InvalidInput(f"invalid request id {value!r}")
    return value


def request_dir(staging: Path, project: str, request_id: str) -> Path:
    return staging / check_project_id(project) / check_request_id(request_id)


def check_names(names: list[str], limits: AirlockLimits) -> None:
    """Validate the list of names of a request before anything is copied."""
    if not names:
        raise InvalidInput("a request needs at least one file")
    if len(names) > limits.max_files:
        raise InvalidInput(f"{len(names)} files: a request holds at most {limits.max_files}")
    for name in names:
        check_file_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"file name(s) given twice: {', '.join(duplicates)}")


def check_types(names: list[str], limits: AirlockLimits) -> None:
    """Refuse, before staging, every file whose type is blocked, unknown or not allowed here."""
    reasons = {}
    for name in names:
        why = filetypes.refusal(name, limits.allowed_extensions)
        if why is not None:
            reasons[name] = why
    if reasons:
        raise RefusedFiles(reasons)


def check_staged_types(directory: Path, staged: list[StagedFile], limits: AirlockLimits) -> None:
    """Refuse staged copies whose first bytes contradict their extension (the ``file-type`` rule)."""
    reasons = {}
    for sf in staged:
        why = filetypes.staged_refusal(directory / sf.stored_name, sf.name, limits.allowed_extensions)
        if why is not None:
            reasons[sf.name] = why
    if reasons:
        raise RefusedFiles(reasons)


def staged_round(stored_name: str) -> int | None:
    """The round in which a staged copy was sent (its name is ``<index>-r<round>-<name>``), else None."""
    found = re.match(r"[0-9]{1,6}-r([0-9]{1,6})-", stored_name)
    return int(found.group(1)) if found else None


def stage_file(directory: Path, index: int, round_: int, name: str, source: BinaryIO,
               limits: AirlockLimits, budget: int) -> StagedFile:
    """Copy ``source`` into ``directory`` read-only, hashing it; refuse beyond the size limits.

    ``budget`` is what is left of the request's total size. A refused file leaves nothing behind.
    """
    check_file_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    stored_name = f"{index}-r{round_}-{name}"
    target = directory / stored_name
    partial = directory / f".{stored_name}.partial"
    digest = hashlib.sha256()
    size = 0
    cap = min(limits.max_file_bytes, budget)
    try:
        with open(partial, "xb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > cap:
                    which = ("the per-file limit" if cap == limits.max_file_bytes
                             else "what is left of the request's size limit")
                    raise InvalidInput(f"{name} is larger than {which} ({cap} bytes)")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, 0o444)
        if target.exists():
            raise IntegrityError(f"staged file {stored_name} already exists: staged bytes are never replaced")
        os.rename(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return StagedFile(index=index, name=name, stored_name=stored_name, sha256=digest.hexdigest(), size=size)

