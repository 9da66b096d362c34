"""A small Universal Binary JSON (UBJSON, draft 12) reader for XGBoost ``.ubj`` models.

The gate reads a model's numbers without the model's library (:mod:`.model_arrays`). Objects,
arrays (plain and the optimised ``$type#count`` form XGBoost writes), integers, floats, strings,
booleans and null; numbers are big-endian. Nesting is followed iteratively up to :data:`MAX_DEPTH`,
and a typed array becomes a NumPy array, read at once. A count is never trusted beyond the bytes
that follow (a container of a billion nulls takes no bytes: refused). Anything else raises
``ValueError``.
"""

from __future__ import annotations

import numpy as np

MAX_DEPTH = 256
_FIXED = {b"i": ">i1", b"U": ">u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4", b"D": ">f8"}


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated UBJSON")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def marker(self) -> bytes:
        while True:
            m = self.take(1)
            if m != b"N":  # no-op
                return m

    def number(self, m: bytes):
        dtype = _FIXED.get(m)
        if dtype is None:
            raise ValueError(f"UBJSON marker {m!r} is not a number")
        value = np.frombuffer(self.take(np.dtype(dtype).itemsize), dtype=dtype)[0]
        return float(value) if m in (b"d", b"D") else int(value)

    def length(self) -> int:
        value = self.number(self.marker())
        if not isinstance(value, int) or value < 0:
            raise ValueError("a negative UBJSON length")
        return value

    def scalar(self, m: bytes):
        if m in _FIXED:
            return self.number(m)
        if m == b"S" or m == b"H":
            text = self.take(self.length()).decode("utf-8")
            return text if m == b"S" else float(text)
        if m == b"C":
            return self.take(1).decode("latin-1")
        if m in (b"T", b"F"):
            return m == b"T"
        if m == b"Z":
            return None
        raise ValueError(f"unexpected UBJSON marker {m!r}")

    def header(self) -> tuple[bytes | None, int | None]:
        """The optimised container header: (element type, count), each optional."""
        kind = count = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            kind = self.take(1)
        if self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            count = self.length()
        elif kind is not None:
            raise ValueError("a UBJSON type without a count")
        if kind is not None and kind not in _FIXED and kind not in (b"S", b"H", b"C", b"[", b"{"):
            raise ValueError(f"a UBJSON container of {kind!r}, whose items take no bytes")
        if count is not None and count > len(self.data) - self.pos and kind not in _FIXED:
            raise ValueError("a UBJSON count larger than the bytes that follow")
        return kind, count


def decode(data: bytes):
    """The value of the UBJSON document ``data`` (dicts, lists, NumPy arrays, scalars)."""
    return decode_prefix(data)[0]


def decode_prefix(data: bytes):
    """(the value of the UBJSON document at the start of ``data``, the bytes it takes): XGBoost's
    loader stops there too, so what follows is bytes no reader of the model sees."""
    reader = _Reader(data)
    root: list = []
    # each frame: (container, remaining count or None, element type or None, is_object)
    stack: list[tuple[object, list, bytes | None, bool]] = [(root, [1], None, False)]
    while stack:
        container, remaining, kind, is_object = stack[-1]
        if remaining[0] == 0:
            stack.pop()
            continue
        if remaining[0] < 0:  # no count: ends with a closing marker
            if reader.data[reader.pos:reader.pos + 1] in (b"}", b"]"):
                reader.pos += 1
                stack.pop()
                continue
        else:
            remaining[0] -= 1
        key = reader.take(reader.length()).decode("utf-8") if is_object else None
        m = kind or reader.marker()
        if m in (b"[", b"{"):
            if len(stack) > MAX_DEPTH:
                raise ValueError(f"UBJSON nested more than {MAX_DEPTH} deep")
            sub_kind, count = reader.header()
            if m == b"[" and sub_kind in _FIXED and count is not None:
                dtype = np.dtype(_FIXED[sub_kind])
                value = np.frombuffer(reader.take(count * dtype.itemsize), dtype=dtype).astype(
                    np.float64 if dtype.kind == "f" else np.int64)
            else:
                value = {} if m == b"{" else []
                stack.append((value, [-1 if count is None else count], sub_kind, m == b"{"))
        else:
            value = reader.scalar(m)
        if is_object:
            container[key] = value  # type: ignore[index]
        else:
            container.append(value)  # type: ignore[union-attr]
    if len(root) != 1:
        raise ValueError("empty UBJSON")
    return root[0], reader.pos


__all__ = ["decode", "decode_prefix"]
