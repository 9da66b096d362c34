"""A notebook's figures rebuilt from their pixels, as figure files are.

A notebook leaves as a file, and its figures with it: each PNG or JPEG of an output
(``outputs[].data["image/png"]``) or of a Markdown cell's attachments is base64 text inside the
JSON. The checker's page shows them as images (:func:`pds_kernel.airlock.web.render.notebook_figure`),
so her browser decoded bytes the researcher wrote, and what left held whatever those bytes held
beyond their pixels: text chunks, bytes after the image's end, a second image (the hidden room that
figure files lose when the gate rebuilds them: docs/adr/0010-release-rebuilt-copies.md). Now a
notebook holding a figure is rebuilt in the same child process as figure files
(:mod:`.rebuild_formats`): every figure is decoded and written again from its pixels, and the JSON
is written again by the gate (one value per key: a key given twice hid its first value from
every reader but the raw text, so a notebook giving one twice is written again too). The checker
sees, and the release copies, that notebook; any other leaves as written.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InvalidInput

#: the figure types a notebook's outputs and attachments may hold that the gate rebuilds
FIGURE_KINDS = {"image/png": "png", "image/jpeg": "jpeg"}
#: the most figures one notebook may hold (each is rebuilt like a figure file)
MAX_FIGURES = 500


def _figure_slots(notebook) -> Iterator[tuple[dict, str]]:
    """(the dict holding it, its MIME key) of every PNG or JPEG of a notebook: in an output's data,
    or in a cell's attachments."""
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict):
            continue
        bundles = [o.get("data") for o in cell.get("outputs") or [] if isinstance(o, dict)] \
            if isinstance(cell.get("outputs"), list) else []
        attachments = cell.get("attachments")
        if isinstance(attachments, dict):
            bundles += list(attachments.values())
        for bundle in bundles:
            if isinstance(bundle, dict):
                for mime in FIGURE_KINDS:
                    if mime in bundle:
                        yield bundle, mime


def needs_rebuild(path: Path) -> bool:
    """True when ``path`` is a notebook (JSON) the gate writes again: it holds a PNG or JPEG figure,
    or gives a key twice (every reader keeps one value; the other leaves unseen). One parse: the
    hook notes a key given twice and keeps the last value, as every JSON reader here does."""
    twice: list[str] = []

    def noting_keys_twice(pairs: list[tuple[str, object]]) -> dict:
        if len({k for k, _ in pairs}) != len(pairs):
            twice.append("twice")
        return dict(pairs)

    try:
        notebook = json.loads(path.read_bytes(), object_pairs_hook=noting_keys_twice)
    except (ValueError, RecursionError):
        return False
    return bool(twice) or next(_figure_slots(notebook), None) is not None


def _decoded(value, where: str) -> bytes:
    text = "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
    if not isinstance(text, str):
        raise InvalidInput(f"{where} is not base64 text")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not base64 text") from None


def rebuild_notebook(source: Path, target: Path, rebuild_figure: Callable[[str, Path, Path], None]) -> None:
    """Write at ``target`` the notebook ``source`` with every figure rebuilt by
    ``rebuild_figure(kind, source, target)`` (``png`` or ``jpeg``: the figure files' own rebuild)
    and its JSON written again; raise :class:`InvalidInput` saying why it cannot be."""
    try:
        notebook = json.loads(source.read_bytes())
    except (ValueError, RecursionError):
        raise InvalidInput("it is not a notebook (JSON)") from None
    slots = list(_figure_slots(notebook))
    if len(slots) > MAX_FIGURES:
        raise InvalidInput(f"it holds {len(slots)} figures, more than the {MAX_FIGURES} a notebook may leave with")
    with tempfile.TemporaryDirectory(prefix="pds-notebook-", dir=target.parent) as scratch:
        for number, (bundle, mime) in enumerate(slots, start=1):
            where = f"its figure {number} ({mime})"
            figure, copy = Path(scratch) / f"{number}.in", Path(scratch) / f"{number}.out"
            figure.write_bytes(_decoded(bundle[mime], where))
            try:
                rebuild_figure(FIGURE_KINDS[mime], figure, copy)
            except MemoryError:
                raise
            except InvalidInput as exc:
                raise InvalidInput(f"{where}: {exc}") from None
            except Exception as exc:  # a figure the image library cannot read: the researcher's input
                raise InvalidInput(f"{where} cannot be read as one ({type(exc).__name__}: {str(exc)[:200]})") from None
            bundle[mime] = base64.b64encode(copy.read_bytes()).decode("ascii") + "\n"
            figure.unlink()
            copy.unlink()
    target.write_text(json.dumps(notebook, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
