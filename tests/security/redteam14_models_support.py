"""Support of tests/security/test_redteam14_models.py: model files that carry the extract's rows
in places the gate's readers skipped (numbers written as text, bytes after a format's end, the low
bits of genuine weights), built with the real libraries."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np


def as_text(values, sep: str = " ") -> str:
    """Numbers written as text, as a researcher's ``str()`` writes them."""
    return sep.join(repr(float(v)) for v in values)


def skops_rewritten(data: bytes, change) -> bytes:
    """The skops ZIP ``data`` with each member's bytes passed through ``change(name, bytes)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, change(item.filename, src.read(item)))
    return out.getvalue()


def with_zip_comment(data: bytes, comment: bytes) -> bytes:
    """The ZIP ``data`` (no comment) with ``comment`` in its end-of-central-directory record."""
    assert data[-22:-18] == b"PK\x05\x06" and data[-2:] == b"\0\0"
    return data[:-2] + struct.pack("<H", len(comment)) + comment


def in_low_bits(weights: np.ndarray, payload: bytes) -> np.ndarray:
    """Float32 ``weights`` whose low 16 mantissa bits are ``payload``, two bytes per weight
    (each weight moves by less than 10^-2 of itself: the model works the same)."""
    bits = weights.astype(np.float32).ravel().view(np.uint32).copy()
    low = np.frombuffer(payload + b"\0" * (len(payload) % 2), dtype="<u2")
    assert len(low) <= len(bits)
    bits[:len(low)] = (bits[:len(low)] & np.uint32(0xFFFF0000)) | low.astype(np.uint32)
    return bits.view(np.float32).reshape(weights.shape)


def zipped_claims(extract) -> bytes:
    """The extract's claims table as a CSV in a ZIP: what a researcher would carry out."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("claims.csv", extract.claims.head(3000).to_csv(index=False))
    return out.getvalue()


def bf16_file(header: dict, data: bytes) -> bytes:
    """A safetensors file of ``header`` and ``data`` (numpy has no bfloat16 to save)."""
    import json

    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data
