"""Red team, sixteenth round: a hidden room in the figures of an exported notebook.

A notebook leaves as it was submitted, and its figures with it: the PNG and JPEG of its outputs and
of its Markdown cells' attachments are base64 text inside the JSON. The gate rebuilt figure *files*
from their pixels (the payloads of test_redteam15_hidden_room.py never leave), but the same figure
inside a notebook left with whatever its bytes held beyond the pixels, and the checker's own
browser decoded those bytes on the review page. Each attack submits, through the real service, a
notebook whose figure carries the payload (a PNG text chunk, bytes after a PNG's end, a JPEG
comment, a figure attached to a Markdown cell, a key of the JSON given twice) and asserts that the
notebook the checker approves and the release copies holds the same pixels and not the payload.

All 6 got through before the fix (the notebook left byte for byte; the sixth: a key given twice
in a notebook without a figure). Now a notebook holding a figure or giving a key twice is rebuilt in
the rebuild's child, figures as figure files are (:mod:`pds_kernel.airlock.rebuild_notebook`); one
whose figure cannot be decoded is refused, saying which; any other leaves as written.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from redteam13_support import gate13_fixture  # noqa: F401  (fixture)
from test_redteam15_hidden_room import SECRET, _chunk, _png, _png_with, released_copy, submit

from pds_kernel.airlock.staging import RefusedFiles


def _jpeg_with_comment() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (30, 30, 200)).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    comment = b"\xff\xfe" + (len(SECRET) + 2).to_bytes(2, "big") + SECRET
    return data[:2] + comment + data[2:]


def _notebook(figure: bytes, mime: str = "image/png", where: str = "output", extra: str = "") -> bytes:
    """A one-cell notebook showing ``figure`` (as an output, or as a Markdown attachment)."""
    b64 = base64.b64encode(figure).decode()
    if where == "output":
        cell = {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": ["plot()"],
                "outputs": [{"output_type": "display_data", "metadata": {}, "data": {mime: b64, "text/plain": ["<Figure>"]}}]}
    else:
        cell = {"cell_type": "markdown", "metadata": {}, "source": ["![fig](attachment:fig.png)"],
                "attachments": {"fig.png": {mime: b64}}}
    text = json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)
    if extra:  # a key given twice: readers keep the last value, the first stays in the raw text
        text = text.replace('"metadata": {}, "nbformat"', f'"metadata": {{"note": "{extra}", "note": "fine"}}, "nbformat"')
        text = text.replace('"metadata": {},\n "nbformat"', f'"metadata": {{"note": "{extra}", "note": "fine"}},\n "nbformat"')
    return text.encode()


def _figures_of(notebook: bytes) -> list[bytes]:
    found = []
    for cell in json.loads(notebook)["cells"]:
        bundles = [o["data"] for o in cell.get("outputs", [])] + list(cell.get("attachments", {}).values())
        for bundle in bundles:
            for mime in ("image/png", "image/jpeg"):
                if mime in bundle:
                    found.append(base64.b64decode(bundle[mime]))
    return found


def _pixels(data: bytes):
    return list(Image.open(io.BytesIO(data)).convert("RGB").getdata())


ATTACKS = {
    "a PNG text chunk in an output": lambda: _notebook(_png_with(_chunk(b"tEXt", b"Comment\x00" + SECRET))),
    "bytes after a PNG's end in an output": lambda: _notebook(_png_with(tail=SECRET)),
    "a JPEG comment in an output": lambda: _notebook(_jpeg_with_comment(), "image/jpeg"),
    "a PNG text chunk in a Markdown attachment": lambda: _notebook(
        _png_with(_chunk(b"tEXt", b"Comment\x00" + SECRET)), where="attachment"),
    "a JSON key given twice": lambda: _notebook(_png(), extra=SECRET.decode()),
}


def test_a_key_given_twice_in_a_notebook_without_a_figure_does_not_leave(gate13):
    text = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)
    crafted = text.replace('"metadata": {}', f'"metadata": {{"note": "{SECRET.decode()}", "note": "fine"}}').encode()
    assert SECRET in crafted
    view = submit(gate13, ("analysis.ipynb", crafted))
    leaves = released_copy(gate13, view, 0)
    assert SECRET not in leaves and json.loads(leaves)["metadata"] == {"note": "fine"}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_notebooks_figures_leave_rebuilt_from_their_pixels(gate13, attack):
    crafted = ATTACKS[attack]()
    assert SECRET in crafted or SECRET in b"".join(_figures_of(crafted))  # the payload is there to carry
    view = submit(gate13, ("analysis.ipynb", crafted))
    leaves = released_copy(gate13, view, 0)
    assert SECRET not in leaves and base64.b64encode(SECRET)[:20] not in leaves, attack
    figures = _figures_of(leaves)
    assert all(SECRET not in f for f in figures), attack
    originals = _figures_of(crafted)
    assert len(figures) == len(originals)
    for original, copy in zip(originals, figures, strict=True):
        if copy.startswith(b"\x89PNG"):
            assert _pixels(copy) == _pixels(original)  # the same picture, from its pixels
        else:
            assert Image.open(io.BytesIO(copy)).size == Image.open(io.BytesIO(original)).size


def test_a_figure_that_is_not_one_refuses_the_notebook_saying_which(gate13):
    with pytest.raises(RefusedFiles) as refused:
        submit(gate13, ("analysis.ipynb", _notebook(b"\x89PNG\r\n\x1a\n" + SECRET)))
    said = str(refused.value)
    assert "figure 1 (image/png)" in said and SECRET.decode() not in said


def test_a_notebook_without_a_figure_leaves_as_written(gate13):
    plain = json.dumps({"cells": [{"cell_type": "code", "execution_count": 1, "metadata": {}, "source": ["1 + 1"],
                                   "outputs": [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                                                "data": {"text/plain": ["2"]}}]}],
                        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1).encode()
    view = submit(gate13, ("analysis.ipynb", plain))
    assert released_copy(gate13, view, 0) == plain
