"""Field validators shared by the declarative YAML specs (registry, extract): each raises
:class:`~pds_kernel.errors.InvalidInput` with the field's location and the expected form."""

from __future__ import annotations

from datetime import date
from typing import Any

from .errors import InvalidInput


def parse_date(where: str, value: Any) -> date:
    """``value`` as a date: a ``date`` (YAML reads ISO dates itself) or ISO text ``YYYY-MM-DD``."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None
