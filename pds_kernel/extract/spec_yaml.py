"""The YAML of an extract spec, read as hostile input: bounded size and depth, no aliases, no
duplicate keys, UTF-8 only.

A spec is short hand-written YAML. What plain ``yaml.safe_load`` accepts beyond that is a way in:

* **aliases** (``&a [x, x]`` then ``[*a, *a]``): a 400-byte "billion laughs" spec parses into a
  structure that is small in memory but whose ``repr`` (quoted in an error message) is hundreds of
  megabytes, or gigabytes with one more level; a spec never needs them, so anchors and aliases are
  refused;
* **duplicate keys**: PyYAML keeps the last value silently, so a reviewer who reads the first
  ``tables:`` approves a spec that the build reads with the second; refused;
* **deep nesting** (``[[[[...]]]]``): PyYAML's composer recurses once per level and fails with a
  ``RecursionError`` (a traceback, not an error naming the place); refused beyond
  :data:`MAX_DEPTH` levels;
* **size**: a spec is kilobytes; a file above :data:`MAX_SPEC_BYTES` is refused before it is read;
* **encoding**: a file that is not UTF-8 is refused with its name, not a ``UnicodeDecodeError``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

from ..errors import InvalidInput

#: A spec is a few kilobytes; this bounds the text parsed and every value an error message quotes.
MAX_SPEC_BYTES = 256 * 1024
#: The deepest a spec goes is 4 levels (include -> criterion -> field -> list); some margin.
MAX_DEPTH = 12


class _Refused(Exception):
    pass


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML without anchors, aliases or duplicate keys, and at most :data:`MAX_DEPTH` deep."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(f"line {line}: anchors and aliases (&name, *name) are not allowed in a spec: "
                           "write each value out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"line {line}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen = set()
            for key_node, _value in node.value:
                if isinstance(key_node, ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise _Refused(f"line {key_node.start_mark.line + 1}: key {key_node.value[:60]!r} "
                                       "is given twice (YAML would keep the last one silently): keep one")
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_spec_yaml(text: str, origin: str) -> Any:
    """The data of the spec text ``text`` (see the module docstring for what is refused)."""
    if len(text) > MAX_SPEC_BYTES:
        raise InvalidInput(f"{origin}: a spec is at most {MAX_SPEC_BYTES // 1024} KiB of text")
    try:
        return yaml.load(text, Loader=_SpecLoader)
    except _Refused as exc:
        raise InvalidInput(f"{origin}: {exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{origin} is not valid YAML: {' '.join(str(exc).split())[:400]}") from None


def read_spec_text(path: Path) -> str:
    """The text of the spec file ``path``: a regular file of at most :data:`MAX_SPEC_BYTES`, UTF-8."""
    try:
        info = os.stat(path)
    except OSError:
        raise InvalidInput(f"spec file {path} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"spec file {path} is not a regular file")
    with open(path, "rb") as handle:
        data = handle.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise InvalidInput(f"spec file {path}: a spec is at most {MAX_SPEC_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"spec file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
