"""The malware scan every wheel goes through before the package index serves it.

An approval downloads code that every workspace of the platform may then install and run, so its
wheels are scanned as imported files are (:func:`pds_kernel.airlock.imports_scan.run_malware_scan`:
ClamAV's ``clamscan``, with the airlock's scanner and signatures, ``airlock.clamscan`` and
``airlock.clamav_database``), inside the archive too, in one run for the whole closure. Deny by default: a signature found, a wheel
over the scan's limits, or no verdict at all (no scanner, no signatures, a timeout) refuses the
whole approval, and nothing of it reaches the wheelhouse. Scanning does not make code safe; the
administrator's review of what is approved, and the sandbox it runs in, are the other lines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..airlock.imports_scan import ImportLimits, ScanRefusal, run_malware_scan

#: ClamAV reads at most this much of one file (its own ceiling is just under 4 GiB)
_CLAMAV_CEILING = 4000 * 1024 * 1024


@dataclass(frozen=True)
class WheelRefusal:
    """A wheel the scan refused: its file name and why."""

    file: str
    reason: str


def scan_limits(settings) -> ImportLimits:
    """The airlock's scanner and signatures, with the package index's size and time limits: a wheel
    is read whole up to ``packages.scan_max_bytes``, and its members up to 4 times that."""
    packages = settings.packages
    return replace(ImportLimits.from_settings(settings), max_file_bytes=min(packages.scan_max_bytes, _CLAMAV_CEILING),
                   max_unpacked_bytes=min(4 * packages.scan_max_bytes, _CLAMAV_CEILING),
                   timeout_seconds=packages.scan_timeout_seconds)


def scan_wheels(paths: list[Path], settings) -> WheelRefusal | None:
    """Scan the wheels of ``paths`` in one ``clamscan`` run (the signatures load once, however many
    wheels the closure holds; its time limit is ``packages.scan_timeout_seconds`` a wheel); the
    first refusal (a signature names the wheel it is in, no verdict the first wheel), or None when
    every wheel is clean."""
    if not paths:
        return None
    limits = scan_limits(settings)
    for path in paths:
        if path.stat().st_size > limits.max_file_bytes:
            return WheelRefusal(path.name, f"{path.stat().st_size} bytes, more than the scan reads "
                                           f"(packages.scan_max_bytes = {settings.packages.scan_max_bytes})")
    try:
        run_malware_scan(paths, replace(limits, timeout_seconds=limits.timeout_seconds * len(paths)))
    except ScanRefusal as refusal:
        return WheelRefusal(refusal.file or paths[0].name, refusal.message)
    return None
