"""Test helpers of imports: a ClamAV signature database written by the test itself, and settings
that point the gate's scanner at it (real signatures cannot be downloaded here)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from pds_kernel.settings import Airlock

#: A harmless file the test database flags by content (a ClamAV extended signature, .ndb)...
MARKER = b"PDS-TEST-SIGNATURE-7f3a: a harmless test file that the test signature database flags\n"
#: ...and another one flagged by its hash (.hdb: MD5 and size), as freshclam's databases do.
HASHED = b"print('a harmless script the test database knows by its MD5')\n"
SIGNATURE_NAMES = ("PDS.Test.Marker", "PDS.Test.Hashed")


def write_signatures(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pds-test.ndb").write_text(f"{SIGNATURE_NAMES[0]}:0:*:{MARKER[:23].hex()}\n")
    (directory / "pds-test.hdb").write_text(f"{hashlib.md5(HASHED).hexdigest()}:{len(HASHED)}:{SIGNATURE_NAMES[1]}\n")
    return directory


def import_settings(settings, database: Path, **airlock):
    return replace(settings, airlock=replace(Airlock(), clamav_database=str(write_signatures(database)), **airlock))
