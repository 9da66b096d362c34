"""Values the tests read from the Makefile, the one place they are written."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def variable(name: str) -> list[str]:
    """The words of ``NAME := ...`` (continuation lines included)."""
    found = re.search(rf"^{re.escape(name)} := ((?:.*\\\n)*.*)$", MAKEFILE.read_text(), re.M)
    if found is None:
        raise LookupError(f"no {name} in {MAKEFILE}")
    return found.group(1).replace("\\\n", " ").split()
