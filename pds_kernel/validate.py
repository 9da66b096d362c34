"""Field validators shared by the declarative YAML specs (registry, extract): each raises
:class:`~pds_kernel.errors.InvalidInput` with the field's location and the expected form; and the
test of a whole number written in text, shared by the boundaries that read one (web forms and
queries, JSON bodies, CLI arguments, declarations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from .errors import InvalidInput


def is_digits(text: str, most: int) -> bool:
    """Whether ``text`` is 1 to ``most`` digits 0-9. ``str.isdigit`` alone also accepts the other
    scripts' digits and superscripts (``٣``, ``３``, ``²``), which ``int()`` reads as another number
    or refuses with an error; the bound keeps ``int()`` from a number of any length."""
    return text.isascii() and text.isdigit() and len(text) <= most


def parse_date(where: str, value: Any) -> date:
    """``value`` as a date: a ``date`` (YAML reads ISO dates itself) or ISO text ``YYYY-MM-DD``.

    A date with a time (YAML reads ``2022-03-01 10:00:00`` as a ``datetime``, a subclass of
    ``date``) is refused: compared with a date later on, it raised a ``TypeError`` instead of an
    error naming the field."""
    if isinstance(value, datetime):
        raise InvalidInput(f"{where}: {str(value)[:40]!r} is a date and time: give the date alone (YYYY-MM-DD)")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def check_mapping(where: str, data: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> Mapping:
    """``data`` if it is a mapping with only ``allowed`` keys and every ``required`` one."""
    allowed = sorted(allowed) if isinstance(allowed, (set, frozenset)) else list(allowed)
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = [str(k) for k in data if k not in allowed]
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                           f"(allowed: {', '.join(allowed)})")
    missing = [k for k in (sorted(required) if isinstance(required, (set, frozenset)) else required)
               if k not in data]
    if missing:
        raise InvalidInput(f"{where}: missing {', '.join(missing)}")
    return data
