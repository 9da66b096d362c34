"""The declaration of a model in an export request, validated at the gate's boundary, and the
snapshot of the files it names.

``context["models"][<model file name>]``::

    {"data": "results/model_data.parquet",     # a table in the author's home: one row per person
     "target": "outcome",                      # its column the model predicts
     "features": ["age", ...],                 # optional: default every column but target and PERSON_ID
     "train": "results/model_train_persons.csv",   # column PERSON_ID, or column row (row numbers of data)
     "test": "results/model_test_persons.csv"}

Paths are relative to the author's home in the project (never absolute, never ``..``) and are
opened component by component without following a symbolic link (``O_NOFOLLOW`` on each
directory and on the file), so a declaration cannot name another project's or another user's
files, even through a link planted in the home. The gate copies the three files into the
request's check directory at submission: the check reads that copy, never the live home.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InvalidInput

KEYS = frozenset({"data", "target", "features", "train", "test"})
FILES = ("data", "train", "test")
SUFFIXES = frozenset({".parquet", ".csv"})
MAX_FEATURES = 10_000
_COLUMN = re.compile(r"^[^\x00-\x1f]{1,200}$")


def check_declaration(name: str, raw: Any) -> dict[str, Any]:
    """The declaration of model ``name`` as the gate keeps it, or :class:`InvalidInput` saying what
    to send. Only :data:`KEYS`: a report, a verdict or any other key is refused (the platform's
    check is the only source of those)."""
    where = f"context['models'][{name[:80]!r}]"
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} must be an object with data, target, train and test")
    unknown = set(raw) - KEYS
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))[:200]}; a model is "
                           f"declared with {', '.join(sorted(KEYS))} only (the platform runs the checks itself)")
    missing = [k for k in ("data", "target", "train", "test") if not raw.get(k)]
    if missing:
        raise InvalidInput(f"{where}: missing {', '.join(missing)}")
    out: dict[str, Any] = {}
    for key in FILES:
        out[key] = check_relative_path(raw[key], f"{where}[{key!r}]")
    target = raw["target"]
    if not isinstance(target, str) or not _COLUMN.fullmatch(target):
        raise InvalidInput(f"{where}['target'] must be a column name")
    out["target"] = target
    features = raw.get("features")
    if features is not None:
        if not isinstance(features, list) or not 0 < len(features) <= MAX_FEATURES or not all(
                isinstance(c, str) and _COLUMN.fullmatch(c) for c in features):
            raise InvalidInput(f"{where}['features'] must be a list of 1 to {MAX_FEATURES} column names")
        out["features"] = list(features)
    return out


def check_relative_path(value: Any, what: str) -> str:
    """A path relative to the home: no absolute path, no ``..``, no empty or hidden trick."""
    if not isinstance(value, str) or not 0 < len(value) <= 500 or "\x00" in value or "\\" in value:
        raise InvalidInput(f"{what} must be a path relative to your home, e.g. results/data.parquet")
    path = PurePosixPath(value)
    if path.is_absolute() or any(part in ("..", ".", "") for part in path.parts) or value.endswith("/"):
        raise InvalidInput(f"{what}: {value[:120]!r} must be a path inside your home, without '..' "
                           "(files of other projects or users cannot be declared)")
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidInput(f"{what}: {value[:120]!r} must be a .parquet or .csv file")
    return str(path)


def check_models_context(models: Any) -> dict[str, dict[str, Any]]:
    """``context["models"]``: model file name -> declaration (:func:`check_declaration`)."""
    if not isinstance(models, Mapping):
        raise InvalidInput("context['models'] must map model file names to their declarations")
    return {str(name): check_declaration(str(name), raw) for name, raw in models.items()}


def open_beneath(root: Path, relative: str) -> int:
    """A read-only descriptor of the regular file ``relative`` under ``root``, opened without
    following any symbolic link on the way (raises :class:`InvalidInput`). The file is opened
    non-blocking, so a FIFO planted in the home is refused at once: a blocking ``open`` waited for
    a writer that only the researcher's sandbox controls, and held the gate."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    parts = PurePosixPath(relative).parts
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError:
        raise InvalidInput("your home in this project does not exist yet") from None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        out = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        raise InvalidInput(f"{relative}: not a file in your home ({os.strerror(exc.errno or 0).lower()}; "
                           "links are not followed)") from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(out).st_mode):
        os.close(out)
        raise InvalidInput(f"{relative}: not a regular file")
    os.set_blocking(out, True)
    return out


def snapshot(home: Path, declaration: Mapping[str, Any], directory: Path, max_bytes: int) -> dict[str, Path]:
    """Copy the declared files from ``home`` into ``directory`` (``data``, ``train``, ``test`` with
    their suffixes); at most ``max_bytes`` in all. Returns key -> copy."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    budget = max_bytes
    out = {}
    for key in FILES:
        relative = declaration[key]
        fd = open_beneath(home, relative)
        with os.fdopen(fd, "rb") as src:
            target = directory / f"{key}{PurePosixPath(relative).suffix.lower()}"
            with open(target, "wb") as dst:  # bounded: the file may grow while it is copied
                while chunk := src.read(min(1 << 20, budget + 1 - dst.tell())):
                    dst.write(chunk)
                    if dst.tell() > budget:
                        raise InvalidInput(f"{relative}: the declared files exceed {max_bytes} bytes in all")
                budget -= dst.tell()
        os.chmod(target, 0o644)
        out[key] = target
    return out
