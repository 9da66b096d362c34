"""Checks on what callers send the gate besides files: text fields and the request context.

Pure functions raising :class:`InvalidInput` with a message that says what to send instead. The
service calls them (so the CLI and the web service validate alike); the web service also checks
the shape of each HTTP body before it reaches the service (:mod:`.web.bodies`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInput

#: Deepest nesting accepted in a JSON value from a caller (an ACRO record in the context is 7 deep).
MAX_DEPTH = 12
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: The most characters of something a caller sent that a message quotes: messages are audited and
#: logged, and administrators, who read both, may not read what a workspace holds
#: (tests/security/test_redteam12_refusal_text.py: a refused "file name" of 85,000 characters
#: reached the audit trail whole before).
QUOTED_CHARS = 40


def quoted(value: object, most: int = QUOTED_CHARS) -> str:
    """``value`` quoted for a message, at most ``most`` characters of it (with its length when cut)."""
    text = value if isinstance(value, str) else str(value)
    return repr(text) if len(text) <= most else f"{text[:most]!r}... ({len(text)} characters)"


def brief(text: str, most: int) -> str:
    """``text`` (a message to audit or log) cut to ``most`` characters, saying so."""
    return text if len(text) <= most else f"{text[:most]}... (cut at {most} of {len(text)} characters)"


def depth_within(value: Any, limit: int) -> bool:
    """True when ``value`` (lists and dicts) nests no deeper than ``limit``; iterative, so a deep
    value cannot exhaust the stack while being measured."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def check_text(value: Any, what: str, max_chars: int) -> str:
    """A text field: a string, without control characters (tab and newlines allowed), not too long."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text")
    if len(value) > max_chars:
        raise InvalidInput(f"{what} is longer than {max_chars} characters")
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} contains control characters: send plain text")
    return value


def _mapping_of(value: Any, what: str, item_ok, item_what: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"context[{what!r}] must be a JSON object (file name -> {item_what})")
    for key, item in value.items():
        if not isinstance(key, str) or not item_ok(item):
            raise InvalidInput(f"context[{what!r}][{str(key)[:80]!r}] must be {item_what}")


def check_context_shape(context: Any) -> None:
    """The request context: a JSON object, nested at most :data:`MAX_DEPTH` deep, whose keys the
    checks read have the types they expect (``acro`` and ``tables``: file name -> object,
    ``figures``: figure name -> table name, ``models``: model name -> declaration of its training
    and test rows, :func:`pds_kernel.modelcheck.inputs.check_declaration`). Other keys (``notebook``...) are kept for checkers."""
    if not isinstance(context, Mapping):
        raise InvalidInput("the request context must be a JSON object")
    if not depth_within(context, MAX_DEPTH):
        raise InvalidInput(f"the request context nests deeper than {MAX_DEPTH} levels")
    if "acro" in context:
        _mapping_of(context["acro"], "acro", lambda v: isinstance(v, Mapping), "an ACRO record (object)")
    if "tables" in context:
        _mapping_of(context["tables"], "tables", lambda v: isinstance(v, Mapping),
                    'an object such as {"measure": "count", "label_columns": 1}')
        for name, options in context["tables"].items():
            measure, labels = options.get("measure"), options.get("label_columns")
            if measure is not None and not isinstance(measure, str):
                raise InvalidInput(f"context['tables'][{name[:80]!r}]['measure'] must be text")
            if labels is not None and (isinstance(labels, bool) or not isinstance(labels, int)
                                       or not 0 <= labels <= 10_000):
                raise InvalidInput(f"context['tables'][{name[:80]!r}]['label_columns'] must be a whole "
                                   "number from 0 to 10000")
    if "models" in context:
        from ..modelcheck.inputs import check_models_context

        check_models_context(context["models"])
    if "figures" in context:
        _mapping_of(context["figures"], "figures", lambda v: isinstance(v, str), "a table name (text)")
