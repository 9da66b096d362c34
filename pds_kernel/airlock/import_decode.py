"""What the workspace decodes from an imported file and ClamAV does not: decoded, and scanned too.

Used by :mod:`.imports_scan` (red team 20G, tests/security/test_redteam20_imports.py; all of these
got through): ClamAV reads a notebook as JSON text and a PNG as its chunks, and neither decodes

* **a notebook's base64**: the outputs of its cells (``image/png``, ``application/pdf``...) and the
  attachments of its markdown cells, which JupyterLab decodes to show them and a checker does not
  read (she reads the code). The tests' signature in the base64 of a figure passed the scan, alone
  or inside a ZIP or a TAR.GZ; an ``image/png`` output that was an ELF came in where the same file
  named ``plot.png`` is refused;
* **a PNG's deflated streams**: its compressed text chunks (``zTXt``, compressed ``iTXt``), which
  Pillow inflates, and its pixels (``IDAT``): the signature written as one row of grey pixels passed.

:class:`Decoded` writes each decoded part to a file of its folder, for the same ClamAV run as the
file itself; a decoded output must be the type its MIME type says (PNG, JPEG, GIF, PDF). Decoding
stops at the scan's ``max_unpacked_bytes`` (more is refused). A PNG is read leniently (what cannot be
inflated is not decoded, as Pillow cannot show it either): only a notebook that is not JSON is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

#: MIME type of a notebook output or attachment -> the first bytes its decoded content must have
MAGIC = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",), "image/gif": (b"GIF87a", b"GIF89a"),
         "application/pdf": (b"%PDF-",)}
_PNG = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1 << 20
#: decoded files of one imported file (each an argument of the one ClamAV run)
MAX_PARTS = 1000


class DecodeRefusal(Exception):
    """Why a decodable file is refused."""


def decodable(name: str) -> bool:
    return PurePosixPath(name.lower()).suffix in (".ipynb", ".png")


def _binary(mime: str) -> bool:
    """A MIME type whose notebook value is base64 (nbformat: every type but text and JSON)."""
    return mime in MAGIC or (mime.startswith("image/") and not mime.startswith("image/svg")) \
        or mime == "application/octet-stream"


class Decoded:
    """The decoded parts of one import's files, as files of ``directory``, at most ``limit`` bytes."""

    def __init__(self, directory: Path, limit: int, *, whole_limit: int):
        self.directory, self.limit, self.total = Path(directory), limit, 0
        self.whole_limit = whole_limit  #: the most bytes of one archive member read whole to decode it
        self.paths: list[Path] = []

    def add(self, name: str, data: bytes | bytearray) -> None:
        """Decode the file or member ``name`` whose bytes are ``data`` (a notebook or a PNG)."""
        if PurePosixPath(name.lower()).suffix == ".ipynb":
            self._notebook(name, data)
        else:
            self._png(data)

    def _write(self) -> BinaryIO:
        if len(self.paths) >= MAX_PARTS:
            raise DecodeRefusal(f"the imported notebooks and images hold more than {MAX_PARTS} encoded figures or "
                                "streams: import them in several requests")
        path = self.directory / f"decoded-{len(self.paths)}"
        self.paths.append(path)
        return open(path, "wb")

    def _count(self, size: int) -> None:
        self.total += size
        if self.total > self.limit:
            raise DecodeRefusal(f"what the imported notebooks and images decode to is longer than {self.limit} "
                                "bytes (the scan's limit): import fewer or smaller files")

    def _notebook(self, name: str, data: bytes | bytearray) -> None:
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):
            raise DecodeRefusal(f"{name[:200]} is not a notebook (it is not JSON): save it again from "
                                "Jupyter") from None
        cells = document.get("cells") if isinstance(document, dict) else None
        for cell in cells if isinstance(cells, list) else []:
            if not isinstance(cell, dict):
                continue
            bundles = [o.get("data") for o in cell.get("outputs") or [] if isinstance(o, dict)]
            attachments = cell.get("attachments")
            bundles += list(attachments.values()) if isinstance(attachments, dict) else []
            for bundle in bundles:
                for mime, value in (bundle.items() if isinstance(bundle, dict) else ()):
                    if isinstance(mime, str) and _binary(mime):
                        self._output(name, mime, value)

    def _output(self, name: str, mime: str, value) -> None:
        text = "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
        if not isinstance(text, str):
            raise DecodeRefusal(f"{name[:200]} holds a {mime[:60]} output that is not base64 text")
        try:
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise DecodeRefusal(f"{name[:200]} holds a {mime[:60]} output that is not base64") from None
        self._count(len(raw))
        magic = MAGIC.get(mime)
        if magic is not None and not raw.startswith(magic):
            kind = mime.split("/")[1].upper()
            raise DecodeRefusal(f"an output of {name[:200]} says {mime} and is not {kind}: import the figure "
                                "as its own file, or run the notebook again")
        with self._write() as out:
            out.write(raw)
        if raw.startswith(_PNG):
            self._png(raw)

    def _png(self, data: bytes | bytearray) -> None:
        """The inflated ``zTXt``/``iTXt`` chunks (one file) and ``IDAT`` stream (another) of the PNG ``data``."""
        at, idat, texts = len(_PNG), [], []
        while at + 12 <= len(data):
            length, kind = struct.unpack(">I4s", data[at:at + 8])
            body = data[at + 8:at + 8 + length]
            at += 12 + length
            if kind == b"IDAT":
                idat.append(body)
            elif kind == b"zTXt":
                texts.append(body.partition(b"\x00")[2][1:])
            elif kind == b"iTXt":
                rest = body.partition(b"\x00")[2]
                if rest[:1] == b"\x01":
                    texts.append(rest[2:].split(b"\x00", 2)[-1])
            elif kind == b"IEND":
                break
        for streams in (texts, [b"".join(idat)] if idat else []):
            if streams:
                with self._write() as out:
                    for stream in streams:
                        self._inflate(stream, out)

    def _inflate(self, data: bytes, out: BinaryIO) -> None:
        """Write to ``out`` what the zlib stream ``data`` inflates to (up to an error: Pillow stops there too)."""
        stream = zlib.decompressobj()
        try:
            while data and not stream.eof:
                chunk = stream.decompress(data, _CHUNK)
                self._count(len(chunk))
                out.write(chunk)
                data = stream.unconsumed_tail
            rest = stream.flush()
        except zlib.error:
            return
        self._count(len(rest))
        out.write(rest)
