"""Red team 11 on the package index: a wheel's RECORD made to break the approval's check itself
(``pds_kernel.packages.wheelcheck``), read before any scan: a field past csv's limit (an exception
out of the check: got through before its fix), a NUL byte, and a compression bomb of a RECORD
(read whole before any budget: got through before its fix, now bounded by ``MAX_RECORD``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pds_kernel.packages.wheelcheck import wheel_refusal

#: the scan's limit of unpacked bytes, as the approval passes it
LIMIT = 1 << 30


def _with_record(path: Path, record: bytes, *, method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A wheel of one module whose RECORD is ``record``."""
    dist = "pds_ok-1.0.dist-info"
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        archive.writestr("pds_ok/__init__.py", b"x = 1\n")
        archive.writestr(f"{dist}/METADATA", b"Metadata-Version: 2.1\nName: pds-ok\nVersion: 1.0\n")
        archive.writestr(f"{dist}/RECORD", record)
    return path


@pytest.mark.parametrize("record, why", [
    (b"pds_ok/__init__.py,sha256=" + b"A" * 200_000 + b",6\n", "cannot be read as CSV"),  # past csv's field limit
    (b"pds_ok/__init__.py,sha256=\x00,6\n", None),
    (b"\n" * (17 * 1024 * 1024), "RECORD is more than"),  # a compression bomb of a RECORD: 17 MiB in 17 KiB
])
def test_a_hostile_record_is_refused_with_a_reason_not_an_error(tmp_path, record, why):
    """A RECORD csv cannot read, or too large to read whole, is a refusal (the approval says why),
    never an exception out of the check, nor memory spent on a bomb."""
    reason = wheel_refusal(_with_record(tmp_path / "w.whl", record), LIMIT)
    assert reason is not None
    assert why is None or why in reason, reason
