"""Red team, seventeenth round: bits in how a CSV writes its cells, and in one-letter words.

A CSV leaves as submitted (it is not rebuilt: docs/adr/0010-release-rebuilt-copies.md) and the
review page shows each cell as written, but a checker reads ``"N"`` and ``N``, ``1.5`` and
``1.50`` alike: each choice a writer does not make is a bit per cell the checker approves unseen.
Red team 15 left three such channels open (docs/output-checking.md, "Residual risks"). Every
attack here goes through the gate's real service (staging, the checks) and, where the page
matters, the real review page; each asserts the file fails ``hidden-text`` with a reason the
checker reads (and the page marks the look-alike letter).

20 attempts and 3 controls; all 20 got through before their fix:

- a field in quotes or not (2: a data column's and the header's): now the fields of one kind
  (texts, numbers, missing values) needing no quotes are quoted alike in a column and in the
  header (:mod:`pds_kernel.airlock.checks.csv_form`).
- the spelling of a number (10: ``1.50`` beside ``1.5``, ``3.0`` beside ``3``, ``010`` beside
  ``10``, zeros padding to two widths, ``1e1`` for 10, ``+3`` beside ``4``, ``.5`` beside ``0.5``,
  ``1 234`` beside ``1234``, two decimal marks, ``E`` beside ``e``): now a column's numbers follow
  one writer's way (a fixed count of decimals, or the shortest form with an exponent where Python
  or R writes one; zeros padding to one width: :mod:`pds_kernel.airlock.checks.csv_numbers`).
- a one-letter word in a look-alike letter (8: Cyrillic ``а`` in a text, Markdown, a program, a
  notebook cell, a CSV cell among Latin words, a CSV cell alone; Cyrillic ``О`` as a capital;
  Greek ``ο``): a word wholly of look-alikes failed from two letters only, and a cell without a
  Latin letter was never judged; now a one-letter word of a Cyrillic look-alike, a Greek capital
  or omicron fails where no other word of the line or cell is in that script, and a table's cell
  is judged as standing among Latin text.

The controls (French and English text with ``à``, ``a``, ``y``, ``ô``, statistics' ``α``, ``κ``,
``ρ`` alone, a Russian sentence; CSVs written by pandas with each quoting rule and a fixed float
format, R's ``write.csv``, a French ``;`` file with decimal commas, padded codes) carry no
``hidden-text`` finding.
"""

from __future__ import annotations

import csv
import html
import json

import pandas as pd
import pytest
from gate_support import PROJECT, files
from redteam13_support import gate13_fixture  # noqa: F401  (fixture)

#: pseudonyms' bits, one per row (the payload of every channel below)
BITS = format(1841275123456, "b")


def rules(view, status: str | None = None) -> set[str]:
    return {f["rule"] for f in view.files[0].check.get("findings", []) if status in (None, f["status"])}


def messages(gate, view) -> str:
    """The ``hidden-text`` findings as the checker's review page gives them (the author's view
    says only which rule failed)."""
    return page_of(gate, view)


def submit(gate, name: str, data: bytes):
    return gate.service.create("alice", PROJECT, files((name, data)), "Table 2 of the paper", {"notebook": "t.ipynb"})


def page_of(gate, view) -> str:
    r = gate.browser("olga").get(gate.base + f"requests/{view.id}", timeout=60)
    assert r.status_code == 200
    return html.unescape(r.text)


def rows(cell) -> bytes:
    """A CSV of one row per bit, ``cell(i, bit)`` writing the row's fields."""
    return ("region,persons\n" + "".join(cell(i, bit) + "\n" for i, bit in enumerate(BITS))).encode()


# ---- 1. a field in quotes or not -------------------------------------------------------------
def test_quotes_around_a_category_carry_a_bit_per_row(gate13):
    data = rows(lambda i, bit: f'"R{i}",{120 + i}' if bit == "1" else f"R{i},{120 + i}")
    view = submit(gate13, "t.csv", data)
    assert "hidden-text" in rules(view, "fail"), rules(view)
    shown = messages(gate13, view)
    assert "'region'" in shown and 'shows "N" and N alike' in shown


def test_quotes_around_header_names_carry_bits(gate13):
    view = submit(gate13, "t.csv", b'"region",persons,"rate"\nN,120,1.5\nS,230,2.5\n')
    assert "hidden-text" in rules(view, "fail"), rules(view)
    assert "(the header)" in messages(gate13, view)


# ---- 2. the spelling of a number -------------------------------------------------------------
SPELLINGS = {
    "trailing zeros": (lambda i, bit: f"R{i},{i}.5{'0' if bit == '1' else ''}", "zeros end some fractions"),
    "a whole number with or without .0": (lambda i, bit: f"R{i},{i}{'.0' if bit == '1' else ''}", "3 beside 3.0"),
    "leading zeros": (lambda i, bit: f"R{i},{'0' if bit == '1' else ''}{10 + i}", "zeros pad"),
    "zeros padding to two widths": (lambda i, bit: f"R{i},{'00' if bit == '1' else '0'}{i % 9 + 1}", "zeros pad"),
    "an exponent": (lambda i, bit: f"R{i},{'1e1' if bit == '1' else '10'}", "1e1 for 10"),
    "a plus sign": (lambda i, bit: f"R{i},{'+' if bit == '1' else ''}{120 + i}", "a + sign"),
    "a zero before the decimal mark": (lambda i, bit: f"R{i},{'' if bit == '1' else '0'}.{i + 1}", ".5 beside 0.5"),
    "digits grouped or not": (lambda i, bit: f"R{i},\"{'1 234' if bit == '1' else '1234'}\"", "digits grouped"),
    "two decimal marks": (lambda i, bit: f"R{i},\"1{',' if bit == '1' else '.'}{i + 1}\"", "two decimal marks"),
    "the exponent's letter": (lambda i, bit: f"R{i},1.{i + 1}{'E' if bit == '1' else 'e'}-05", "exponents written"),
}


@pytest.mark.parametrize("attack", sorted(SPELLINGS))
def test_a_numbers_spelling_carries_a_bit_per_cell(gate13, attack):
    """Before: the page showed each cell as written (red team 15) and no rule judged it, so a
    checker approved ``1.50`` beside ``1.5`` as two numbers."""
    cell, why = SPELLINGS[attack]
    view = submit(gate13, "t.csv", rows(cell))
    assert "hidden-text" in rules(view, "fail"), (attack, rules(view))
    shown = messages(gate13, view)
    assert "'persons'" in shown and why in shown, attack


# ---- 3. a one-letter word in a look-alike letter ---------------------------------------------
A = "\u0430"  #: Cyrillic small a
LINE = f"we found {A} rise in {A} group of patients"


def _notebook(source: str) -> bytes:
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "source": [source], "outputs": []}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


ONE_LETTER = {
    "text": ("notes.txt", f"{LINE}\n".encode(), A),
    "markdown": ("notes.md", f"# Results\n{LINE}\n".encode(), A),
    "program": ("fit.py", f"# {LINE}\nx = 1\n".encode(), A),
    "notebook": ("fit.ipynb", _notebook(f"# {LINE}\nx = 1\n"), A),
    "CSV cell among words": ("t.csv", f'group,n\n"{LINE}",120\nB,130\n'.encode(), A),
    "CSV cell alone": ("t.csv", f"group,n\na,120\n{A},130\nb,140\n".encode(), A),
    "Cyrillic capital": ("notes.txt", "group \u041e had the most stays\n".encode(), "\u041e"),
    "Greek omicron": ("notes.txt", "results \u03bf the north\n".encode(), "\u03bf"),
}


@pytest.mark.parametrize("where", sorted(ONE_LETTER))
def test_a_one_letter_word_in_a_look_alike_letter(gate13, where):
    """Before: a word wholly of look-alikes failed from two letters (``α = 0.05`` is fine), so
    each ``a`` of a text could be Latin or Cyrillic, a bit the page drew alike."""
    name, data, letter = ONE_LETTER[where]
    view = submit(gate13, name, data)
    assert "hidden-text" in rules(view, "fail"), (where, rules(view))
    if not name.endswith(".ipynb"):
        text = page_of(gate13, view)
        assert f"<U+{ord(letter):04X}>" in text


# ---- controls --------------------------------------------------------------------------------
def test_french_and_english_one_letter_words_pass(gate13):
    text = ("Il y a 120 patients à Paris, ô combien ; a rise in a group, y compris l'Île-de-France.\n"
            "Cronbach's α = 0,81, Cohen's κ = 0.7, Spearman's ρ = 0.3, μ = 4\n"
            "Данные SNDS с 2020 года: я и R\n")
    for name, data in (("notes.txt", text.encode()), ("fit.py", "".join(f"# {line}\n" for line in text.splitlines()).encode()),
                       ("t.csv", "groupe,n\na,120\ny,130\nà,140\nô,150\nα,160\n".encode())):
        view = submit(gate13, name, data)
        assert "hidden-text" not in rules(view), (name, view.files[0].check)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"region": ["Nord", "Sud, ouest", 'le "Centre"', None],
                         "persons": [120.0, 230.0, None, 40.0], "rate": [1.5, 2.25, 3.0, 1e-05],
                         "p": [0.0001, 0.03, 0.5, 1e-7], "dept": ["01", "75", "971", "02"]})


def test_csvs_as_pandas_writes_them_pass(gate13):
    frame = _frame()
    written = [frame.to_csv(index=False, quoting=q) for q in (csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC)]
    written += [frame.to_csv(index=False, float_format="%.2f"), frame.to_csv(index=False, sep=";", decimal=",")]
    for data in written:
        view = submit(gate13, "t.csv", data.encode())
        assert "hidden-text" not in rules(view), (data, view.files[0].check)


def test_a_csv_as_r_writes_it_passes(gate13):
    """``write.csv``: quoted texts and row names, bare numbers and ``NA``, ``1e+05`` and
    ``1e-04`` where R's plain form is longer."""
    data = (b'"","region","persons","rate","p"\n"1","Nord",120,1.5,1e-04\n"2",NA,NA,3,0.0312\n'
            b'"3","Sud",1e+05,2.25,0.5\n')
    view = submit(gate13, "t.csv", data)
    assert "hidden-text" not in rules(view), view.files[0].check
