"""Red team, eighteenth round (18C): bits in how text cells, texts and programs write what a page draws alike.

Red team 17 made a CSV column spell its numbers one way and quote its fields alike; it left the
text of the cells, and the characters a page draws alike, free (docs/output-checking.md,
"Residual risks"). A checker reads ``dose 1.5 mg`` and ``dose 1.50 mg``, ``l'effet`` and
``l’effet``, ``120`` and ``１２０``, ``é`` and ``e`` + U+0301 as one thing: each choice the writer
does not make is a bit per cell, word or sign. Every attack here goes through the gate's real
service (staging, the checks) and, where the page matters, the real review page; each asserts the
file fails ``hidden-text`` with a reason the checker reads.

33 attempts and 3 controls (18 files); 32 attempts got through before their fix, and red team 19
added 17 attempts on the prose of programs and 1 control (section 4), all 17 through before
(one channel is left open, a strict xfail: a column's one way, chosen by the author, a bit a
column; red team 18 left a second one, apostrophes and dashes in a program's comments, closed
by red team 19):

- numbers inside a table's text cells (5: ``dose 1.5 mg`` beside ``dose 1.50 mg``, ``n=010``,
  ``12 (3.40%)``, a date ``2023-1-5`` beside ``2023-01-05``, the same in an XLSX): now the numbers
  of a column's text cells follow one spelling for each place in the cell
  (:mod:`pds_kernel.airlock.checks.cell_spelling`).
- codes and markers (3: ``E11`` beside ``e11``, ``R01`` beside ``R2``, ``<10`` beside ``< 10``):
  now a column writes its codes in one case and pads their digits to one width, and no two of its
  cells differ only by case or blanks.
- missing values (2: ``NA`` beside ``N/A``, or beside an empty field): a reader takes all for a
  missing value; now a CSV column writes them one way (:mod:`pds_kernel.airlock.checks.csv_numbers`).
- look-alike signs (11: a minus sign U+2212 and an en dash beside ``-``, a no-break space, ``’``
  and ``“”`` beside a space, ``'`` and ``""`` in cells and headers, a no-break space for each space of a text,
  apostrophes in Markdown, dashes in a text, no-break spaces in a program and a notebook's outputs):
  now each class of signs is written one way in each context of a column or a text, and a
  program's or notebook's spaces one way (:mod:`pds_kernel.airlock.checks.typography`);
  a no-break space grouping digits in a number column already failed (red team 17, 1).
- compatibility forms (6: full-width digits in a number column, a full-width word, a mathematical
  sans-serif word and digit in cells, a full-width letter in Markdown, a mathematical letter in a
  program) and accents written as combining marks (2: a CSV column, a text; ``é`` NFC or NFD,
  a bit per accent): now ``hidden-text`` fails (a text or column wholly in NFD passes) and the page
  writes them ``<U+XXXX>`` (:mod:`pds_kernel.airlock.checks.content`).
- a one-letter word in the other script (3: a Cyrillic ``а`` among Latin words beside a genuine
  Cyrillic word, a Latin ``a`` in a Russian cell and in a Russian text): now a one-letter
  look-alike takes the script of most words around it (a cell alone: of the whole table).
- red team 19, the prose of programs (16: dashes, apostrophes and a minus sign U+2212 in Python
  comments, ``’`` in docstrings, in an f-string's text, beside an escaped ``\\'`` in strings, and
  outside any string; R comments and strings, SQL comments and a doubled ``''`` in strings; a
  notebook's code-cell comments, markdown cells, outputs, an R notebook's comments; R Markdown's
  text): a program's quotes and minus signs are syntax, so only its spaces were judged. Now its
  comments (with markdown) and its strings each write a class of signs one way per context, found
  by :mod:`tokenize` for Python and a small scanner for R and SQL, a typographic sign in code
  fails (:mod:`pds_kernel.airlock.checks.program_text`), and so do a notebook's outputs, judged
  as one text.

Controls: French text and tables with accents, ``’``, no-break spaces and en dashes used one way,
an R notebook whose source quotes with ``'`` and whose output with ``‘’``,
tables as pandas and R write ``n (%)`` and confidence intervals, ages, ICD-10 codes with and
without a fourth character, tables wholly in Greek or Russian (with one-letter cells), statistics'
``α``, ``10⁴``, ``CO₂``, Markdown with lists and an em dash: no ``hidden-text`` finding. Two of
them failed before: a one-letter cell of a Greek or Russian table was taken for a look-alike among
Latin text, and a subscript (``CO₂``) for a look-alike letter in a Latin word. Red team 19's
control: French comments and docstrings with ``’`` and ``–`` throughout beside code whose syntax
uses ``'`` and ``-``, R, SQL (a string ``'c''est'`` beside comments with ``’``), a notebook with
markdown, R Markdown.
"""

from __future__ import annotations

import html
import io
import json

import pandas as pd
import pytest
from gate_support import PROJECT, files
from redteam13_support import gate13_fixture  # noqa: F401  (fixture)

#: pseudonyms' bits, one per row or line (the payload of every channel below)
BITS = format(1841275123456, "b")
NBSP, MINUS, NDASH, RSQUO, CYR_A = "\u00a0", "\u2212", "\u2013", "\u2019", "\u0430"
LDQUO, RDQUO, QQ = "\u201c", "\u201d", '""'  #: typographic quotes; a quote inside a CSV field


def rules(view, status: str | None = None) -> set[str]:
    return {f["rule"] for f in view.files[0].check.get("findings", []) if status in (None, f["status"])}


def submit(gate, name: str, data: bytes):
    return gate.service.create("alice", PROJECT, files((name, data)), "Table 2 of the paper", {"notebook": "t.ipynb"})


def page_of(gate, view) -> str:
    """The review page, where a checker reads the findings' reasons and the file."""
    r = gate.browser("olga").get(gate.base + f"requests/{view.id}", timeout=60)
    assert r.status_code == 200
    return html.unescape(r.text)


def rows(cell, header: str = "label,persons") -> bytes:
    """A CSV of one row per bit, ``cell(i, one)`` writing the row's fields."""
    return (header + "\n" + "".join(cell(i, bit == "1") + "\n" for i, bit in enumerate(BITS))).encode()


def lines(line) -> str:
    return "".join(line(i, bit == "1") + "\n" for i, bit in enumerate(BITS))


def _xlsx(cells: list[str]) -> bytes:
    out = io.BytesIO()
    pd.DataFrame({"label": cells, "persons": [120 + i for i in range(len(cells))]}).to_excel(out, index=False)
    return out.getvalue()


def _notebook(outputs: list[str]) -> bytes:
    cell = {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["print(notes)\n"],
            "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]} for text in outputs]}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
                      ensure_ascii=False).encode()


# ---- 1. tables: numbers inside text cells, codes' case, twins --------------------------------
CELLS = {
    "dose with a trailing zero": (lambda i, one: f"dose {i}.5{'0' if one else ''} mg,{120 + i}", "zeros end some"),
    "n=010": (lambda i, one: f"n={'0' if one else ''}{10 + i},{120 + i}", "zeros pad"),
    "n (%) with a trailing zero": (lambda i, one: f"\"{20 + i} ({i}.5{'0' if one else ''}%)\",{120 + i}", "zeros end"),
    "a date padded or not": (lambda i, one: f"2023-{'0' if one else ''}{i % 9 + 1}-15,{120 + i}", "zeros pad"),
    "a code's case": (lambda i, one: f"{'E' if one else 'e'}{11 + i},{120 + i}", "codes in capitals"),
    "a code padded or not": (lambda i, one: f"R{'0' if one else ''}{i % 9 + 1},{120 + i}", "codes inside the cells: zeros pad"),
    "a marker with a blank": (lambda i, one: f"R{i},{'< 10' if one else '<10'}" if i % 2 else f"R{i},{120 + i}",
                              "the same but for case or blanks"),
}
SIGNS = {
    "a minus sign": (lambda i, one: f"R{i},{MINUS if one else '-'}{i + 1}.5", "dashes written in 2 ways"),
    "an en dash in a range": (lambda i, one: f"{i}{NDASH if one else '-'}{i + 5},{120 + i}", "dashes written in 2 ways"),
    "a no-break space": (lambda i, one: f"Paris{NBSP if one else ' '}{i},{120 + i}", "spaces written in 2 ways"),
    "a typographic apostrophe": (lambda i, one: f"l{RSQUO if one else chr(39)}hôpital {i},{120 + i}",
                                 "apostrophes written in 2 ways"),
    "typographic quotes": (lambda i, one: f"\"le {LDQUO if one else QQ}Centre{RDQUO if one else QQ} {i}\",{120 + i}",
                           "double quotes written in 2 ways"),
}
MISSING = {
    "NA or N/A": (lambda i, one: f"R{i},{'NA' if one else 'N/A'}" if i % 2 else f"R{i},{120 + i}", "'N/A' and 'NA'"),
    "NA or empty": (lambda i, one: f"R{i},{'NA' if one else ''}" if i % 2 else f"R{i},{120 + i}", "'' and 'NA'"),
}


@pytest.mark.parametrize("attack", sorted(CELLS) + sorted(SIGNS) + sorted(MISSING))
def test_a_text_cells_spelling_carries_a_bit_per_cell(gate13, attack):
    """Before: only a column of numbers was judged on its spelling (red team 17); a text cell's
    numbers, case and signs, and how a missing value is written, were free, and the page showed
    each as written."""
    cell, why = {**CELLS, **SIGNS, **MISSING}[attack]
    view = submit(gate13, "t.csv", rows(cell))
    assert "hidden-text" in rules(view, "fail"), (attack, rules(view))
    assert why in page_of(gate13, view), attack


def test_header_names_with_two_apostrophes(gate13):
    view = submit(gate13, "t.csv", f"taux d'incidence,taux d{RSQUO}hospitalisation\n1.5,2.5\n".encode())
    assert "hidden-text" in rules(view, "fail"), rules(view)
    assert "the header: apostrophes written in 2 ways" in page_of(gate13, view)


def test_a_workbooks_text_cells_are_judged_too(gate13):
    view = submit(gate13, "t.xlsx", _xlsx([f"dose {i}.5{'0' if bit == '1' else ''} mg" for i, bit in enumerate(BITS)]))
    assert "hidden-text" in rules(view, "fail"), rules(view)


def test_no_break_spaces_grouping_digits_already_failed(gate13):
    """Red team 17's rule (digits grouped in several ways) held: a control of the attempt above."""
    view = submit(gate13, "t.csv", rows(lambda i, one: f"R{i},\"1{NBSP if one else ' '}{234 + i}\"", "region,persons"))
    assert "hidden-text" in rules(view, "fail"), rules(view)


# ---- 2. compatibility forms, combining accents, the other script -----------------------------
LOOKS = {
    "full-width digits in a number": ("t.csv", rows(lambda i, one: f"R{i},{'１２' if one else '12'}{i + 100}",
                                                    "region,persons"), "\uff11"),
    "a full-width word": ("t.csv", rows(lambda i, one: f"{'ｎｏｒｄ' if one else 'nord'}{i},{120 + i}"), "\uff4e"),
    "a mathematical word": ("t.csv", rows(lambda i, one: f"{'𝗇𝗈𝗋𝖽' if one else 'nord'}{i},{120 + i}"), "\U0001d5c7"),
    "a mathematical digit": ("t.csv", rows(lambda i, one: f"R{'𝟣' if one else '1'}{i},{120 + i}"), "\U0001d7e3"),
    "a combining accent in a cell": ("t.csv", rows(lambda i, one: f"{'e' + chr(0x301) if one else 'é'}cole {i},{120 + i}"),
                                     "\u0301"),
    "a combining accent in a text": ("notes.txt", lines(lambda i, one: f"r{'e' + chr(0x301) if one else 'é'}sultat {i}")
                                     .encode(), "\u0301"),
    "a full-width letter in Markdown": ("notes.md", lines(lambda i, one: f"group {'Ａ' if one else 'A'}").encode(), "\uff21"),
    "a mathematical letter in a program": ("fit.py", lines(lambda i, one: f"# {'𝖺' if one else 'a'} rise").encode(),
                                           "\U0001d5ba"),
    "a Cyrillic a beside a Cyrillic word": ("t.csv", rows(lambda i, one: f"\"{CYR_A if one else 'a'} rise in Москва {i}\","
                                                          f"{120 + i}"), CYR_A),
    "a Latin a in a Russian cell": ("t.csv", rows(lambda i, one: f"\"Москва {'a' if one else CYR_A} Париж {i}\",{120 + i}"),
                                    "a"),
    "a Latin a in a Russian text": ("notes.txt", lines(lambda i, one: f"Москва {'a' if one else CYR_A} Париж").encode(), "a"),
}


@pytest.mark.parametrize("attack", sorted(LOOKS))
def test_a_look_alike_character_carries_a_bit(gate13, attack):
    """Before: a full-width or mathematical word, digits, and accents written as combining marks
    were no look-alike word, and a one-letter word was judged by whether any word of its script
    stood in the line."""
    name, data, char = LOOKS[attack]
    view = submit(gate13, name, data)
    assert "hidden-text" in rules(view, "fail"), (attack, rules(view))
    assert f"<U+{ord(char):04X}>" in page_of(gate13, view), attack


# ---- 3. texts, programs and notebooks: look-alike signs --------------------------------------
TEXTS = {
    "a no-break space for each space": ("notes.txt", lines(lambda i, one: f"we found{NBSP if one else ' '}a rise")),
    "apostrophes in Markdown": ("notes.md", lines(lambda i, one: f"l{RSQUO if one else chr(39)}effet {i}")),
    "no-break spaces in a program": ("fit.py", lines(lambda i, one: f"x = 1{NBSP if one else ' '}+ {i}")),
    "dashes in a text": ("notes.txt", lines(lambda i, one: f"18{NDASH if one else '-'}24 ans")),
    "a no-break space in a notebook's outputs": ("fit.ipynb", None),
}


@pytest.mark.parametrize("attack", sorted(TEXTS))
def test_look_alike_signs_in_texts_carry_a_bit_per_sign(gate13, attack):
    """Before: a no-break space is no hidden character (French numbers use it), and ``’`` is a
    letter's neighbour like ``'``: a text could write each space or apostrophe one way or the other."""
    name, text = TEXTS[attack]
    data = (text.encode() if text is not None else
            _notebook([f"n{NBSP if bit == '1' else ' '}= {i}\n" for i, bit in enumerate(BITS)]))
    view = submit(gate13, name, data)
    assert "hidden-text" in rules(view, "fail"), (attack, rules(view))
    assert "written in 2 ways" in page_of(gate13, view), attack


# ---- 4. the prose of programs: comments, strings, markdown -----------------------------------
def _cells(cells: list[tuple[str, str]], language: str = "python") -> str:
    """A notebook of (cell type, source) cells in ``language``."""
    made = [{"cell_type": kind, "metadata": {}, "source": source,
             **({"execution_count": None, "outputs": []} if kind == "code" else {})} for kind, source in cells]
    return json.dumps({"cells": made, "metadata": {"kernelspec": {"name": language, "language": language}},
                       "nbformat": 4, "nbformat_minor": 5}, ensure_ascii=False)


APOS = chr(39)
PROSE = {
    "dashes in a program's comments": (
        "fit.py", "x = f('a', 'b')  # the \u2018b\u2019 column\n" + lines(lambda i, one: f"# 18{NDASH if one else '-'}24 ans")),
    "apostrophes in comments": ("fit.py", lines(lambda i, one: f"x{i} = {i}  # l{RSQUO if one else APOS}effet")),
    "a minus sign in a comment": ("fit.py", lines(lambda i, one: f"y{i} = {i} - 1  # {MINUS if one else '-'}1 an")),
    "apostrophes in docstrings": ("fit.py", "".join(f'def f{i}():\n    """l{RSQUO if one else APOS}effet {i}"""\n'
                                                    for i, one in enumerate(b == "1" for b in BITS))),
    "apostrophes in an f-string's text": ("fit.py", lines(lambda i, one: f"print(f\"{{x}} l{RSQUO if one else APOS}effet\")")),
    "an escaped apostrophe in a string": ("fit.py", lines(lambda i, one: f"s = 'l{RSQUO if one else chr(92) + APOS}effet'")),
    "a typographic apostrophe outside strings": ("fit.py", lines(lambda i, one: f"'l{RSQUO if one else APOS}effet")),
    "apostrophes in R comments": ("fit.R", lines(lambda i, one: f"x <- c('a', 'b') - {i}  # l{RSQUO if one else APOS}effet")),
    "apostrophes in R strings": ("fit.R", lines(lambda i, one: f'cat("l{RSQUO if one else APOS}effet", {i})')),
    "apostrophes in SQL comments": ("q.sql", lines(lambda i, one: f"SELECT {i} -- l{RSQUO if one else APOS}effet")),
    "apostrophes in a shell script's comments": ("run.sh", lines(lambda i, one: f"echo {i}  # l{RSQUO if one else APOS}effet")),
    "a doubled quote in SQL strings": ("q.sql", lines(lambda i, one: f"SELECT 'l{RSQUO if one else APOS * 2}effet'")),
    "a notebook's code-cell comments": ("fit.ipynb", _cells([("code", lines(lambda i, one: f"x = {i}  # l"
                                                                               f"{RSQUO if one else APOS}effet"))])),
    "a notebook's markdown cells": ("fit.ipynb", _cells([("markdown", lines(lambda i, one: f"l{RSQUO if one else APOS}"
                                                                                f"effet {i}"))])),
    "an R notebook's comments": ("fit.ipynb", _cells([("code", lines(lambda i, one: f"x <- {i}  # 18"
                                                                            f"{NDASH if one else '-'}24 ans"))], "R")),
    "apostrophes in a notebook's outputs": ("fit.ipynb", _notebook([f"l{RSQUO if bit == '1' else APOS}effet {i}\n"
                                                                   for i, bit in enumerate(BITS)]).decode()),
    "the text of R Markdown": ("report.Rmd", lines(lambda i, one: f"l{RSQUO if one else APOS}effet {i}")
                               + "```{r}\nx <- c('a', 'b')\n```\n"),
}


@pytest.mark.parametrize("attack", sorted(PROSE))
def test_look_alike_signs_in_a_programs_prose_carry_a_bit_per_sign(gate13, attack):
    """Before (red team 18C's strict xfail): a program's quotes and minus signs are syntax, so only
    its spaces were judged, and its comments, strings and a notebook's markdown wrote each
    apostrophe or dash one way or the other."""
    name, text = PROSE[attack]
    view = submit(gate13, name, text.encode())
    assert "hidden-text" in rules(view, "fail"), (attack, rules(view))
    shown = page_of(gate13, view)
    assert any(why in shown for why in ("the program's comments: ", "the program's strings: ", "outputs: apostrophes",
                                        "outside the program's comments and strings")), attack


def test_programs_writing_their_prose_one_way_pass(gate13):
    """French comments with ``’`` and ``–`` throughout beside code whose syntax uses ``'`` and
    ``-``; R, SQL, a notebook with markdown, R Markdown."""
    programs = {
        "fit.py": ("# Calcul de l’effet du traitement – cohorte 2019–2020\nimport pandas as pd\n\n\n"
                   "def taux(df):\n    \"\"\"Le taux d’incidence – pour 1 000 personnes‑années.\"\"\"\n"
                   "    return df['n'] / (df['py'] - 1) * 1000  # l’âge – 1\n\n\n"
                   "x = -3\nprint(f\"{x:>3} – l’effet\", 'l’âge', x - 1)  # d’après l’article\n"),
        "fit.R": ("# L’effet du traitement – 2019–2020\nlibrary('dplyr')\nx <- c('a', \"b\") - 1\n"
                  "y <- x[x > -1]  # l’âge\ncat(\"l’effet\", `nom de colonne`, '\\n')\n"),
        "q.sql": "-- l’effet – 2019–2020\nSELECT \"a\", 'c''est' FROM t WHERE x > -1; /* l’âge */\n",
        "run.sh": ("#!/bin/sh\n# L’effet – 2019–2020\nn=${#ARGS[@]}\necho \"l’âge\" 'x' $((n - 1))  # d’après\n"),
        "fit.ipynb": _cells([("markdown", "# L’effet – 2019–2020\n"), ("code", "x = df['a'] - 1  # l’âge\n")]),
        "report.Rmd": ("---\ntitle: \"L’effet\"\n---\n\nL’effet du traitement – 2019–2020.\n\n"
                       "```{r}\nx <- c('a', 'b') - 1  # l’âge\n```\n"),
    }
    for name, text in programs.items():
        view = submit(gate13, name, text.encode())
        assert "hidden-text" not in rules(view), (name, view.files[0].check)


# ---- controls --------------------------------------------------------------------------------
FRENCH = ("Résultats : l’effet du traitement à 12 mois est de 3,4 % (IC 95 % : 2,1–4,8).\n"
          "L’Île-de-France compte 1 234 patients ; été, naïve, cœur, Noël, où, çà.\n")


def test_french_and_statistics_texts_pass(gate13):
    texts = {"notes.txt": FRENCH, "notes.md": "# Results\n\n- item one\n- item two\n\nWe don't report cells < 10 — "
                                              "see the paper's Table 2 (2019–2020).\n",
             "fit.py": "x = -3\nprint(f\"{x} - done\")  # l’effet, α = 0.05, 10⁴ cells, CO₂, m²\n",
             "ru.txt": "Данные SNDS с 2020 года: я и R\nМосква, а не Париж, о чём и речь.\n",
             "el.txt": "Η ομάδα Α είχε 120 ασθενείς και ο μέσος όρος ήταν 3,4.\n"}
    r_notebook = json.loads(_notebook(["Error in library(foo): there is no package called \u2018foo\u2019\n"]))
    r_notebook["cells"][0]["source"] = ["x <- c('a', 'b')  # 2019\u20132020\n", "library('foo')\n"]
    for name, data in [*((name, text.encode()) for name, text in texts.items()),
                       ("r.ipynb", json.dumps(r_notebook, ensure_ascii=False).encode())]:
        view = submit(gate13, name, data)
        assert "hidden-text" not in rules(view), (name, view.files[0].check)


def test_tables_written_one_way_pass(gate13):
    frame = pd.DataFrame({"région": ["Île-de-France", "Provence-Alpes-Côte d’Azur", "Hauts-de-France"],
                          "n": [1234, 567, 890], "taux": [3.4, 2.1, 5.0],
                          "n (%)": ["12 (3.4%)", "150 (10.0%)", "3 (0.3%)"]})
    tables = [frame.to_csv(index=False), frame.to_csv(index=False, sep=";", decimal=","),
              "groupe,n_pct\nHommes,12 (3.4%)\nFemmes,150 (10%)\nTotal,162 (13.4%)\n",
              "term,OR (95% CI)\nage,1.23 (1.01-1.50)\nsexe,0.98 (0.80-1.20)\n",
              "age,n\n00-04,120\n05-09,130\n10-14,150\n85+,400\n", "age,n\n0–4 ans,120\n5–9 ans,130\n85 ans et plus,400\n",
              "code,n\nE10,120\nE10.0,130\nE11,150\nI10,400\n", "dept,n\n01,120\n2A,130\n2B,140\n971,150\n",
              "region,n\nA,120\nB,<10\nC,<10\nD,*\n", "mois,n\n2020-01,120\n2020-02,130\n2020-11,150\n"]
    for data in tables:
        view = submit(gate13, "t.csv", data.encode())
        assert "hidden-text" not in rules(view), (data, view.files[0].check)


def test_tables_wholly_in_greek_or_russian_pass(gate13):
    """A one-letter cell of a Greek or Russian table is in the table's script (before: it failed
    as a look-alike among the Latin text a cell was taken to stand in)."""
    for data in ("περιοχή,άτομα\nΑθήνα,120\nΘεσσαλονίκη,230\nΟμάδα Α,300\nΑ,400\n",
                 "регион,человек\nМосква,120\nСанкт-Петербург,230\nМосква и область,300\nс,400\n"):
        view = submit(gate13, "t.csv", data.encode())
        assert "hidden-text" not in rules(view), (data, view.files[0].check)
        assert "<U+" not in page_of(gate13, view), data


# ---- channels left open (strict xfails: closing one makes its test pass, and fail here) -------
OPEN = {
    "one way per column, chosen by the author": (
        "a.csv", "".join(f"c{i}," for i in range(len(BITS))).rstrip(",") + "\n" + ",".join(
            f"{1 + i}.5{'0' if bit == '1' else ''}" for i, bit in enumerate(BITS)) + "\n",
        "a bit per column (its decimals, case, dash...): closing it means rewriting every table released"),
}


def assert_channel_closed(gate, request, name: str, text: str, reason: str) -> None:
    """A channel left open, as a strict expected failure: the gate should fail ``text`` sent as
    ``name`` for hidden text; ``reason`` says why it does not yet (closing it makes the test pass,
    and fail here). Shared by the prose red teams."""
    request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    view = submit(gate, name, text.encode())
    assert "hidden-text" in rules(view, "fail"), rules(view)


@pytest.mark.parametrize("attack", sorted(OPEN))
def test_channels_left_open(gate13, request, attack):
    assert_channel_closed(gate13, request, *OPEN[attack])
