"""How much one researcher's exports may stage in a day: ``airlock.export_max_bytes_per_day``.

Every export request stages its own copy of each file, and staged files are kept for the record
(withdrawn, rejected and resubmitted rounds included, until the project's purge): one researcher
submitting the same file again and again filled the disk every project's staged files share (red
team 15, tests/security/test_redteam15_hidden_room.py; got through before). Imports had their
bound (:mod:`.import_quota`); this is the exports' one. What counts is what is on the disk: the
files written in the last 24 hours under the staging folders of the author's export requests
changed in that time (each round, and the submitted bytes of rebuilt copies), so a resubmission
counts as much as a new request. A refused round is deleted at once and does not count.

Two submissions of one author running at the same moment are each judged on what was staged
before them (neither sees the other's files): the bound is the day's, not the instant's.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from ..db import transaction
from .models import ExportRequest
from .staging import RefusedFiles, StagedFile, request_dir
from .submission import discard, stage_all

WINDOW = timedelta(days=1)


def staged_bytes(sessions, staging: Path, author: str) -> int:
    """Bytes written in the last :data:`WINDOW` under the folders of ``author``'s export requests."""
    since = datetime.now(UTC) - WINDOW
    with transaction(sessions) as s:
        rows = s.execute(select(ExportRequest.project_id, ExportRequest.id)
                         .where(ExportRequest.author == author, ExportRequest.direction == "export",
                                ExportRequest.updated_at >= since)).all()
    cutoff, total = since.timestamp(), 0
    for project, request_id in rows:
        for folder, _, names in os.walk(request_dir(staging, project, request_id)):
            for name in names:
                info = os.lstat(os.path.join(folder, name))
                if stat.S_ISREG(info.st_mode) and info.st_mtime >= cutoff:
                    total += info.st_size
    return total


def stage_export(service, author: str, directory: Path, round_: int,
                 items: list[tuple[int, str, BinaryIO]]) -> list[StagedFile]:
    """Stage ``items`` for ``author``'s export request (:func:`.submission.stage_all`), or refuse
    them all, leaving nothing staged, when they would take the author's exports of the day past
    ``airlock.export_max_bytes_per_day``."""
    limit = service.settings.airlock.export_max_bytes_per_day
    used = staged_bytes(service.sessions, service.settings.paths.staging, author)
    staged = stage_all(directory, round_, items, service.limits)
    adding = sum(sf.size for sf in staged)
    if used + adding > limit:
        discard(directory, staged)
        raise RefusedFiles({"this request": (
            f"the exports of {author} staged {used} bytes in the last 24 hours; these files ({adding} bytes) would "
            f"pass the limit of {limit} bytes a day (airlock.export_max_bytes_per_day; withdrawing frees nothing: "
            "staged files are kept for the record): submit only the files that changed, try again once the day's "
            "first submissions are 24 hours old, or ask an admin")})
    return staged
