"""Bytes of a model file that its format's reader never reads: refused at submission.

A safetensors file with bytes between or after its tensors is refused by :mod:`.model_formats`.
The same room exists in the other containers, where no reader of the model (nor the gate's number
and string rules, which read what the format's reader reads) would see it:

- an XGBoost UBJ model followed by bytes: XGBoost's loader, and the gate's UBJ reader, stop at the
  end of the document;
- a skops ZIP with an archive comment, a member comment or extra field, bytes before its first
  member, between members or after its end record: skops (Python's ``zipfile``) reads members by
  the central directory only;
- a skops ``.npy`` member with bytes after its array: ``numpy.load`` reads as many bytes as the
  header's shape says.

- a LightGBM text model holding bytes that are not text (an archive appended to it): LightGBM's
  parser stops at the end of its sections, and a text reader shows no binary bytes.

skops, XGBoost and LightGBM write none of these. Each is refused, naming where the bytes are.
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

#: how far the gate reads a UBJ model to find its end (the tensor rule reads as much)
MAX_UBJ_BYTES = 1024 * 1024 * 1024


def ubj_problem(path: Path) -> str | None:
    """Why the UBJ model at ``path`` is refused (bytes after its document), else None; a damaged
    document is left to the number rule, which sends it to a checker with the reason."""
    from .ubjson import decode_prefix

    data = path.read_bytes()[:MAX_UBJ_BYTES]
    try:
        _, end = decode_prefix(data)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if end < len(data):
        return (f"{len(data) - end} bytes after the end of the UBJ document, which XGBoost never reads: room for "
                "hidden records; save the model again with XGBoost")
    return None


def lightgbm_problem(path: Path) -> str | None:
    """Why the LightGBM text model at ``path`` is refused (bytes that are not text), else None."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"byte {exc.start} is not UTF-8 text: a LightGBM model is a text file, and binary bytes in it (an "
                "appended archive) are read by no one but the person who put them there")
    control = next((i for i, c in enumerate(text) if ord(c) < 32 and c not in "\t\n\r"), None)
    if control is not None:
        return f"character {control} is a control character: a LightGBM model is a text file"
    return None


def _npy_problem(name: str, data: bytes) -> str | None:
    import numpy as np

    try:
        stream = io.BytesIO(data)
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream)
    except (ValueError, OSError, EOFError):
        return None  # not an array: the string scan reads it as bytes
    expected = stream.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if dtype.hasobject or len(data) == expected:
        return None
    return (f"the array {name[:60]} holds {len(data) - expected} bytes after the numbers its header declares, which "
            "numpy never reads: room for hidden records")


def skops_problem(path: Path) -> str | None:
    """Why the skops ZIP at ``path`` is refused (bytes no reader sees), else None."""
    size = path.stat().st_size
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as archive:
        if archive.comment:
            return f"the archive has a comment of {len(archive.comment)} bytes, which skops never reads"
        members = sorted(archive.infolist(), key=lambda m: m.header_offset)
        pos = 0
        for member in members:
            if member.header_offset != pos:
                return f"{abs(member.header_offset - pos)} bytes before the member {member.filename[:60]!r} belong to no member"
            if member.comment or member.extra:
                return f"the member {member.filename[:60]!r} has a comment or an extra field, which skops never reads"
            fh.seek(pos)
            local = fh.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return f"the member {member.filename[:60]!r} has no local header"
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            if extra_len:
                return f"the member {member.filename[:60]!r} has an extra field of {extra_len} bytes, which skops never reads"
            pos += 30 + name_len + member.compress_size
            if member.flag_bits & 0x08:
                fh.seek(pos)
                pos += 16 if fh.read(4) == b"PK\x07\x08" else 12
        directory = archive.start_dir
        if directory != pos:
            return f"{abs(directory - pos)} bytes between the last member and the archive's directory belong to no member"
        fh.seek(size - 22)
        if fh.read(4) != b"PK\x05\x06":
            return "bytes after the archive's end record, which skops never reads"
        for member in members:
            if member.filename.endswith(".npy"):
                why = _npy_problem(member.filename, archive.read(member))
                if why:
                    return why
    return None


__all__ = ["lightgbm_problem", "skops_problem", "ubj_problem"]
