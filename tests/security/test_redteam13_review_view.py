"""Red team, thirteenth round (13A): make a checker approve something other than what they saw.

The gate releases the bytes it staged (or its rebuilt copy of a table or figure); the checker
approves what the review page shows of them. Each attack here hides data in a part of a file
the page did not show, or showed in a way no one can read, and asserts that it is now either
shown on the page or failed by the automatic checks (a failed file needs the approving checker's
written explanation), or both.

29 attempts and a control; 28 got through before their fix (the checker's page or terminal
showed nothing of the data, and the checks passed it to review or let it pass): a notebook's
HTML, Markdown, JSON and LaTeX outputs behind a harmless ``text/plain`` and an error's traceback
(5), its figures (2, PNG and JPEG); text, a program, a notebook cell, a table's cell and header
holding invisible characters: Unicode tag characters spelling ASCII, zero-width characters,
variation selectors (15); a text and a program holding bytes that are not UTF-8, each drawn as
the same replacement character (2); text reordered by a right-to-left override (1); a text file and a
program longer than the page's preview, the data in the part never shown (2); a text file whose
escape sequences rewrote the checker's terminal in ``pds airlock show`` (1). The table longer than
its preview was announced before, in small type under the table; it now stands above it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re

import PIL.Image
import pytest
from redteam13_support import gate13_fixture  # noqa: F401  (fixture)

from pds_kernel.airlock.web.render import MAX_TEXT

SECRET = "ZZQHIDDEN"


def page_of(gate, view, who: str = "olga") -> str:
    r = gate.browser(who).get(gate.base + f"requests/{view.id}", timeout=60)
    assert r.status_code == 200
    return html.unescape(r.text)


def rules(view, status: str | None = None) -> set[str]:
    return {f["rule"] for f in view.files[0].check.get("findings", []) if status in (None, f["status"])}


def nb(outputs: list[dict], source: str = "df.head()") -> bytes:
    cell = {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": [source], "outputs": outputs}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def shown(mime: str, value: str) -> dict:
    return {"output_type": "execute_result", "execution_count": 1, "metadata": {},
            "data": {"text/plain": ["   n\nA 120\nB 130"], mime: [value]}}


HIDDEN_OUTPUTS = {
    "html": shown("text/html", f"<table><tr><td>{SECRET}</td><td>3</td></tr></table>"),
    "markdown": shown("text/markdown", f"| group | n |\n|---|---|\n| {SECRET} | 3 |"),
    "json": shown("application/json", json.dumps({"group": SECRET, "n": 3})),
    "latex": shown("text/latex", f"\\begin{{tabular}}{{ll}} {SECRET} & 3 \\end{{tabular}}"),
    "traceback": {"output_type": "error", "ename": "ValueError", "evalue": f"bad row {SECRET}",
                  "traceback": [f"\x1b[0;31mValueError\x1b[0m: bad row {SECRET} 3"]},
}


@pytest.mark.parametrize("kind", sorted(HIDDEN_OUTPUTS))
def test_a_notebook_output_behind_a_harmless_text_plain(gate13, kind):
    """The page showed only an output's ``text/plain`` (a decoy the notebook may write as it likes);
    its other representations leave with the notebook, unseen. Now each is shown, as text."""
    view = gate13.submit(content=nb([HIDDEN_OUTPUTS[kind]]), name="analysis.ipynb")
    assert SECRET in page_of(gate13, view), kind


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (30, 30, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("mime,make", [("image/png", _png), ("image/jpeg", _jpeg)], ids=["png", "jpeg"])
def test_a_figure_inside_a_notebook_output(gate13, mime, make):
    """A plot left in a notebook leaves with it: the page showed "display_data: image/png" and no
    figure. Now the page shows the figure itself, served by the gate as an image, to checkers only."""
    data = make()
    output = {"output_type": "display_data", "metadata": {},
              "data": {"text/plain": ["<Figure size 640x480 with 1 Axes>"], mime: base64.b64encode(data).decode()}}
    view = gate13.submit(content=nb([output]), name="plots.ipynb")
    text = page_of(gate13, view)
    links = re.findall(r'<img class="figure" alt="[^"]*" src="([^"]+/outputs/[^"]+)"', text)
    assert len(links) == 1, text[-3000:]
    r = gate13.browser("olga").get(gate13.base.split("/services/")[0] + links[0], timeout=30)
    # the figure of the notebook that leaves: rebuilt from its pixels (test_redteam16_notebook_figures.py)
    _, staged = gate13.service.open_staged("olga", view.id, 0)
    leaves = json.loads(staged.read_bytes())["cells"][0]["outputs"][0]["data"][mime]
    assert r.status_code == 200 and r.content == base64.b64decode(leaves)
    assert r.content[:3] == data[:3] and PIL.Image.open(io.BytesIO(r.content)).size == (40, 20)
    assert r.headers["Content-Type"] == mime and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in r.headers["Content-Security-Policy"]
    for who in ("alice", "mallory", "oscar", "root"):  # the author and others: no bytes before release
        other = gate13.browser(who).get(gate13.base.split("/services/")[0] + links[0], timeout=30)
        assert other.status_code == 403 and data not in other.content, who


#: Tag characters (U+E0000 block) spell ASCII and are drawn as nothing; zero-width characters and
#: variation selectors encode bits between visible letters.
TAGS = "".join(chr(0xE0000 + ord(c)) for c in "NIR 1 84 12 75 123 456 78")
ZERO_WIDTH = "".join("\u200b" if bit == "1" else "\u200c" for bit in format(1841275123456, "b"))
SELECTORS = "".join(chr(0xFE00 + (b & 15)) for b in b"1841275123456")
INVISIBLE = {"tags": TAGS, "zero-width": ZERO_WIDTH, "variation-selectors": SELECTORS}


@pytest.mark.parametrize("how", sorted(INVISIBLE))
@pytest.mark.parametrize("where", ["text", "code", "notebook", "cell", "header"])
def test_invisible_characters_carry_data_past_the_checker(gate13, where, how):
    """Steganography in plain sight: the page drew these characters as nothing, and no rule read
    them. Now the checks fail the file (``hidden-text``) and the page shows each as ``<U+XXXX>``."""
    hidden = "Results by region" + INVISIBLE[how]
    content, name = {
        "text": (f"{hidden}\nsee table 2\n".encode(), "notes.txt"),
        "code": (f"# {hidden}\nx = 1\n".encode(), "fit.py"),
        "notebook": (nb([], source=f"# {hidden}"), "fit.ipynb"),
        "cell": (f'group,n\n"{hidden}",120\nB,130\n'.encode(), "t.csv"),
        "header": (f'"{hidden}",n\nA,120\nB,130\n'.encode(), "t.csv"),
    }[where]
    view = gate13.submit(content=content, name=name)
    assert "hidden-text" in rules(view, "fail"), rules(view)
    text = page_of(gate13, view)
    assert INVISIBLE[how][:3] not in text and f"<U+{ord(INVISIBLE[how][0]):04X}>" in text


def test_text_reordered_by_a_right_to_left_override(gate13):
    """Trojan Source on a checker: an override shows ``n = 21`` as ``n = 12``."""
    view = gate13.submit(content="count of deaths: \u202e21\u202c\n".encode(), name="notes.txt")
    assert "hidden-text" in rules(view, "fail")
    assert "\u202e" not in page_of(gate13, view)


@pytest.mark.parametrize("name", ["notes.txt", "fit.py"])
def test_bytes_that_are_not_utf8_all_look_alike(gate13, name):
    """Bytes 0x80 to 0xFF outside UTF-8: the page draws every one as the same replacement
    character, so a run of them carries any bytes past the checker."""
    payload = bytes(0x80 | (b & 0x7F) for b in b"NIR 1 84 12 75 123 456 78") + b"\xff\xfe"
    view = gate13.submit(content=b"# Results by region " + payload + b"\nx = 1\n", name=name)
    assert "hidden-text" in rules(view, "fail"), rules(view)


def test_an_ordinary_text_and_table_carry_no_hidden_text_finding(gate13):
    """Controls: accents (composed, or wholly decomposed: red team 18 fails a text mixing both), a
    French non-breaking space in a number, a byte-order mark at the start of a file, tabs: none is
    hidden text."""
    for content, name in (("\ufeffRésumé: étude, 12\u202f345 séjours\tok\n".encode(), "notes.txt"),
                          ("Re\u0301sume\u0301: e\u0301tude\n".encode(), "notes.txt"),
                          ("\ufeffgroup,n\nÎle-de-France,120\nB,130\n".encode(), "t.csv")):
        view = gate13.submit(content=content, name=name)
        assert "hidden-text" not in rules(view), (name, view.files[0].check)


@pytest.mark.parametrize("name", ["notes.txt", "fit.py"])
def test_data_past_the_end_of_the_preview(gate13, name):
    """The page showed the first 200,000 bytes and, below them in small grey type, that there was
    more; the rest left unseen. Now the checks fail such a file (``preview``: the approving checker
    must say they read it whole from the raw file), and the page says so above the preview."""
    filler = ("# the same harmless line of text, again and again\n" if name.endswith(".py")
              else "the same harmless line of text, again and again\n")
    head = filler * (MAX_TEXT // len(filler) + 10)
    view = gate13.submit(content=(head + f"{SECRET} 3\n").encode(), name=name)
    assert "preview" in rules(view, "fail"), rules(view)
    text = page_of(gate13, view)
    assert SECRET not in text
    warning = text.index("id=\"truncated-0\"")
    assert warning < text.index("<pre") if "<pre" in text else True
    small = gate13.submit(content=filler.encode() * 10, name=name)  # control: a whole preview
    assert "preview" not in rules(small)


def test_a_text_file_that_rewrites_the_checkers_terminal(gate13, tmp_path):
    """``pds airlock show ID --file N`` printed a text file's bytes as they are: an escape sequence
    concealing the data (``ESC[8m``), another moving the cursor back over it, a carriage return
    overwriting its line, and an OSC 52 sequence writing the checker's clipboard: the checker read
    "All fine." Now each is shown (``<U+001B>``, ``<U+000D>``), and the checks fail the file."""
    import getpass

    import yaml
    from typer.testing import CliRunner

    from pds_kernel.cli.app import app

    text = (f"\x1b[8m{SECRET} 3\x1b[0m\n{SECRET} 4\x1b[2K\x1b[1A\n{SECRET} 5\rAll fine.          \n"
            "\x1b]52;c;cm0gLXJmIH4=\x07done\n")
    view = gate13.submit(content=text.encode(), name="notes.txt")
    assert "hidden-text" in rules(view, "fail")
    paths = gate13.service.runtime.settings.paths
    config = tmp_path / "pds.yaml"
    config.write_text(yaml.safe_dump({"paths": {name: str(value) for name, value in vars(paths).items()},
                                      "cli": {"identities": {getpass.getuser(): "olga"}}}))
    out = CliRunner().invoke(app, ["-c", str(config), "airlock", "show", view.id, "--file", "0"])
    assert out.exit_code == 0, out.output
    assert "\x1b" not in out.output and "\r" not in out.output and "\x07" not in out.output
    assert out.output.count(SECRET) == 3 and "<U+001B>]52;c;" in out.output


def test_rows_past_the_end_of_the_table_preview_are_announced_above_it(gate13):
    """A table of 600 rows: the page shows 500. Its note was in small grey type under the table;
    it now stands above the table, as for text."""
    rows = "".join(f"g{i},{100 + i}\n" for i in range(600))
    view = gate13.submit(content=f"group,n\n{rows}".encode(), name="t.csv")
    text = page_of(gate13, view)
    assert text.index('id="truncated-0"') < text.index('<table class="data">')
    assert "showing 500 of 600 rows" in text
