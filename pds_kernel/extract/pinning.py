"""Which versions of the lake's tables an extract is built from, and what changed since the last one.

An extract's manifest records ``lake_versions``: ``{table: version}`` of every versioned table of
the lake when it was built (its ``lake_snapshot`` is a hash of them). The build reads exactly those
versions (:class:`~pds_kernel.extract.frames.LakeFrames`), so building the same spec again on the
same versions (``pds extract build --same-lake-version``) gives the same table files, byte for
byte, even after corrections were loaded, as long as the retention policy has not expired them.
Building on newer versions records ``lake_changes``: for each table the extract writes whose
version moved, the versions and the rows added, changed and removed between them (by primary key,
:mod:`pds_kernel.lake.diff`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidInput
from ..lake import versions as lake_versions_mod
from ..lake.diff import diff_versions


def pinned_versions(lake: Path, pin: dict[str, int] | None) -> dict[str, int]:
    """The versions a build reads: ``pin`` (checked: known tables, versions that exist), else the
    latest version of every versioned table."""
    if pin is None:
        return lake_versions_mod.lake_versions(lake, lake_versions_mod.versioned_tables(lake))
    checked = {}
    for table, version in sorted(pin.items()):
        number = lake_versions_mod.check_version(version)
        lake_versions_mod.files_at(lake, table, number)  # refuses unknown tables and expired versions
        checked[table] = number
    return checked


def previous_versions(settings, project: str) -> dict[str, int] | None:
    """The ``lake_versions`` of the project's published extract (None: no extract, or one built
    before versions)."""
    from .build import MANIFEST, extract_dir

    path = extract_dir(settings, project) / MANIFEST
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("lake_versions")
    except ValueError:
        return None
    return found if isinstance(found, dict) and found else None


def pins_broken_by(settings, deleted: dict[str, list[str]]) -> list[tuple[str, str, int]]:
    """``(project, table, version)`` of every published extract built on a table version that loses
    a file in ``deleted`` (``{table: [file relative to the lake]}``, what an expiry deletes): once
    they are gone, rebuilding that extract on its versions (``--same-lake-version``) is refused.
    Called before the files are deleted (an expired version can no longer be listed)."""
    from ..errors import PdsError
    from ..registry.names import check_project_id

    lake, root = settings.paths.lake, settings.paths.projects
    broken = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
        try:
            check_project_id(folder.name)
        except InvalidInput:
            continue  # not a project's folder
        for table, version in sorted((previous_versions(settings, folder.name) or {}).items()):
            gone = set(deleted.get(table, ()))
            if not gone or not isinstance(version, int):
                continue
            try:
                files, _ = lake_versions_mod.files_at(lake, table, version)
            except PdsError:
                continue  # expired already, or the table is gone: nothing more to lose
            if any(str(f.relative_to(lake)) in gone for f in files):
                broken.append((folder.name, table, version))
    return broken


def check_pin_available(pin: dict[str, int] | None, project: str) -> dict[str, int]:
    if not pin:
        raise InvalidInput(f"the extract of project {project} records no lake versions (none yet, or built "
                           "before versions): build it without --same-lake-version")
    return pin


def lake_changes(lake: Path, before: dict[str, int] | None, after: dict[str, int],
                 tables: list[str]) -> list[dict]:
    """For each of ``tables`` whose version differs between ``before`` and ``after``: the versions
    and the rows added, changed and removed (or why they could not be compared)."""
    if not before:
        return []
    changes = []
    for table in sorted(set(tables)):
        old, new = before.get(table), after.get(table)
        if old is None or new is None or old == new:
            continue
        change = {"table": table, "from_version": old, "to_version": new}
        try:
            diff = diff_versions(lake, table, int(old), int(new))
            change.update(diff.as_dict())
        except Exception as exc:  # an expired version: say so rather than fail the build
            change["note"] = f"not compared: {exc}"
        changes.append(change)
    return changes
