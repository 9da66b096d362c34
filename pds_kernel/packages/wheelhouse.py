"""The wheelhouse: the approved wheels on disk and the manifest the package index serves.

Layout under ``settings.paths.packages``::

    files/<wheel file name>     the approved wheels (written once, never changed)
    index.json                  {"version": 1, "projects": {name: [{file, version, sha256, size,
                                 requires_python, licence}]}}

The index server (:mod:`.index`) reads ``index.json`` only and serves only the files listed there,
checking nothing else on disk: a file dropped into ``files/`` by hand is not served. Only the
package service (:mod:`.service`, on approval and revocation) writes here, with the manifest
replaced atomically (write to a temporary file, then rename), under an exclusive lock. A revoked
release leaves the manifest first (the index stops serving it at its next request), then its
files are deleted.
"""

from __future__ import annotations

import email.parser
import fcntl
import hashlib
import json
import os
import shutil
import unicodedata
import zipfile
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import IntegrityError, InvalidInput
from .names import check_version, normalise, wheel_project

MANIFEST = "index.json"
FILES = "files"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class WheelInfo:
    file: str
    project: str  #: normalised name
    version: str
    sha256: str
    size: int
    requires_python: str
    licence: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _printable(text: str) -> str:
    """``text`` without control or format characters: a licence is shown in an administrator's
    terminal (``pds packages list``), where an escape sequence from METADATA would be obeyed."""
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf")).strip()


def _licence(meta) -> str:
    """The licence a wheel declares: ``License-Expression``, else the classifiers, else ``License``
    (printable characters only)."""
    expression = _printable(str(meta.get("License-Expression") or ""))
    if expression:
        return expression
    classifiers = [_printable(c.split("::")[-1]) for c in meta.get_all("Classifier") or []
                   if str(c).startswith("License ::")]
    if any(classifiers):
        return "; ".join(c for c in classifiers if c)
    lines = [_printable(line) for line in str(meta.get("License") or "").splitlines()]
    lines = [line for line in lines if line]
    return lines[0][:200] if lines else "unknown"


def _same_version(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def check_identity(file: str, project: str, version: str, dist_info: str, meta) -> None:
    """The wheel's ``.dist-info`` folder and METADATA name the release its file name does.

    The index lists a wheel under its file name's project; pip installs what METADATA says, and the
    approval's audit entry reads the licence there: a ``texttable-1.7.0`` wheel whose METADATA says
    ``evil 6.6`` was served as texttable before (tests/security/test_redteam8_imports.py)."""
    folder_name, _, folder_version = dist_info.removesuffix(".dist-info").rpartition("-")
    meta_name, meta_version = (meta.get("Name") or "").strip(), (meta.get("Version") or "").strip()
    try:
        same = normalise(meta_name) == project == normalise(folder_name)
    except InvalidInput:
        same = False
    if not (same and _same_version(meta_version, version) and _same_version(folder_version, version)):
        raise InvalidInput(f"{file} says it is {meta_name or '?'} {meta_version or '?'} (METADATA, in "
                           f"{dist_info}), not {project} {version} as its file name: refused; approve the "
                           "release from its project's own files")


def read_wheel(path: Path) -> WheelInfo:
    """Name, version, hash, size, Requires-Python and licence of the wheel at ``path`` (whose
    version must be a public release, :func:`~.names.check_version`, and whose METADATA must name
    the release of its file name: :func:`check_identity`)."""
    path = Path(path)
    project, version = wheel_project(path.name)
    try:  # revoke names NAME==VERSION, and the index serves file names without "!" or "%"
        check_version(version)
    except InvalidInput:
        raise InvalidInput(f"{path.name}: its version {version[:50]!r} is not a public release the index can "
                           "serve and revoke (no local label '+...', no epoch '!'): refused; approve a release "
                           "whose dependencies are public releases") from None
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
            if len(names) != 1:
                raise InvalidInput(f"{path.name}: not a wheel (no single .dist-info/METADATA)")
            meta = email.parser.BytesParser().parsebytes(archive.read(names[0]), headersonly=True)
    except zipfile.BadZipFile:
        raise InvalidInput(f"{path.name}: not a wheel (not a zip archive)") from None
    check_identity(path.name, project, version, names[0].split("/")[0], meta)
    return WheelInfo(file=path.name, project=project, version=version, sha256=sha256_of(path),
                     size=path.stat().st_size, requires_python=_printable(str(meta.get("Requires-Python") or "")),
                     licence=_licence(meta))


class Wheelhouse:
    """The approved wheels under ``root`` (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def files_dir(self) -> Path:
        return self.root / FILES

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def projects(self) -> dict[str, list[dict]]:
        """Normalised project name -> its approved files (an empty house has none)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if data.get("version") != MANIFEST_VERSION:
            raise IntegrityError(f"{self.manifest_path}: unknown manifest version {data.get('version')!r}")
        return data["projects"]

    @contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def add(self, wheels: Iterable[WheelInfo], source_dir: Path) -> list[WheelInfo]:
        """Copy ``wheels`` (read from ``source_dir``, hashes checked again) into the house and list
        them in the manifest. A file already there must have the same hash, and a release already
        served gets no other file (a build tag or another spelling of its file name, which pip
        would install instead of the approved one: red team 20G). Returns those added."""
        added: list[WheelInfo] = []
        with self._locked():
            self.files_dir.mkdir(parents=True, exist_ok=True)
            projects = self.projects()
            wheels = list(wheels)
            for wheel in wheels:  # every check before any copy: a refusal leaves nothing behind
                source = Path(source_dir) / wheel.file
                if "/" in wheel.file or sha256_of(source) != wheel.sha256:
                    raise IntegrityError(f"{wheel.file} changed after it was checked: approve again")
                others = [e["file"] for e in projects.get(wheel.project, [])
                          if _same_version(e["version"], wheel.version) and e["file"] != wheel.file]
                if others:
                    raise IntegrityError(f"{wheel.file}: {wheel.project} {wheel.version} is already approved with "
                                         f"other files ({', '.join(others)[:300]}): the index serves the files of "
                                         "a release that were approved, never one added later (pip would prefer it); "
                                         f"revoke {wheel.project}=={wheel.version} first to approve other files")
                target = self.files_dir / wheel.file
                if target.exists() and sha256_of(target) != wheel.sha256:
                    raise IntegrityError(f"{wheel.file} is already approved with another SHA-256: "
                                         "the index must never serve two files under one name")
            for wheel in wheels:
                source = Path(source_dir) / wheel.file
                target = self.files_dir / wheel.file
                if not target.exists():
                    partial = target.with_name(f".{wheel.file}.part")
                    shutil.copyfile(source, partial)
                    os.chmod(partial, 0o644)
                    os.replace(partial, target)
                entries = projects.setdefault(wheel.project, [])
                if all(e["file"] != wheel.file for e in entries):
                    entries.append(asdict(wheel))
                    added.append(wheel)
            self._write_manifest(projects)
        return added

    def remove(self, project: str, version: str) -> list[dict]:
        """Stop serving release ``version`` of ``project`` (normalised name): drop its files from
        the manifest, then delete them. Returns the manifest entries removed (none: nothing served)."""
        with self._locked():
            projects = self.projects()
            entries = projects.get(project, [])
            removed = [e for e in entries if e["version"] == version]
            if not removed:
                return []
            kept = [e for e in entries if e["version"] != version]
            if kept:
                projects[project] = kept
            else:
                del projects[project]
            self._write_manifest(projects)
            for entry in removed:
                (self.files_dir / entry["file"]).unlink(missing_ok=True)
        return removed

    def _write_manifest(self, projects: dict[str, list[dict]]) -> None:
        for entries in projects.values():
            entries.sort(key=lambda e: e["file"])
        partial = self.manifest_path.with_name(f".{MANIFEST}.part")
        partial.write_text(json.dumps({"version": MANIFEST_VERSION, "projects": projects},
                                      indent=1, sort_keys=True), encoding="utf-8")
        os.chmod(partial, 0o644)
        os.replace(partial, self.manifest_path)
