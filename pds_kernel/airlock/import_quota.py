"""How much one researcher may bring to the gate's staging area in a day: ``airlock.import_max_bytes_per_day``.

Staged files are kept for the record (the reviewed bytes of every request, withdrawn, rejected
and revoked ones included, until the project's purge): nothing else bounded what one researcher
could put on the disk that every project's staged files share. One account importing 100 MiB,
withdrawing it and importing it again filled it at the rate of the scan (red team 13,
tests/security/test_redteam13_import_load.py; got through before). The files of the author's
imports created in the last 24 hours count, whatever became of them; a refused import is deleted
at once and does not count. The check runs inside the author's scan slot (:mod:`.scan_slots`: one
import of hers at a time), so two imports of hers cannot both pass it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from ..db import transaction
from ..errors import InvalidInput
from .models import ExportRequest, RequestFile

WINDOW = timedelta(days=1)


def staged_bytes(sessions, author: str) -> int:
    """Bytes of the files of ``author``'s imports created in the last :data:`WINDOW`."""
    since = datetime.now(UTC) - WINDOW
    with transaction(sessions) as s:
        return int(s.scalar(
            select(func.coalesce(func.sum(RequestFile.size), 0))
            .join(ExportRequest, RequestFile.request_id == ExportRequest.id)
            .where(ExportRequest.author == author, ExportRequest.direction == "import",
                   ExportRequest.created_at >= since)) or 0)


def check_quota(used: int, adding: int, limit: int) -> None:
    """Refuse ``adding`` bytes on top of ``used`` past ``limit``."""
    if used + adding > limit:
        raise InvalidInput(f"your imports of the last 24 hours hold {used} bytes; this one ({adding} bytes) would "
                           f"pass the limit of {limit} bytes a day (airlock.import_max_bytes_per_day): "
                           "import it tomorrow, or ask an admin")
