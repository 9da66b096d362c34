"""Red team 20C: a program's prose the gate read in the wrong language, and text in a broken encoding.

Red team 19 split a program into its comments, strings and code, each judged for look-alike
signs (:mod:`pds_kernel.airlock.checks.program_text`); what it read with the wrong grammar stayed
free. An ASCII apostrophe in prose the scanner takes for code opens or closes a string there, so
the text between two of them is a "string" and the apostrophe itself is never judged: prose
opened by one ``'`` (``Résumé de l'étude``) and closed by another carries ``l'effet`` or
``l’effet`` on each line, a bit per line. Every attack goes through the gate's real service and
asserts the file fails ``hidden-text``.

18 attempts and 6 controls; 15 attempts got through before their fix (the channel it left open,
double quotes in a shell script's prose, is closed by red team 21: ``test_redteam21_prose.py``):

- shell here-documents (4: ``<<EOF``, ``<<'EOF'``, ``<<-EOF`` with tabs, in a ``%%bash`` cell):
  their body was read as shell code. The three in ``.sh`` files got through; the notebook's failed
  already, for a typographic apostrophe the scanner placed in code (a false alarm for an honest
  here-document, see the controls). Now a here-document's body is a string.
- PostgreSQL dollar quotes (2: ``$$...$$``, ``$note$...$note$``): read as SQL code; both got
  through. Now their text is a string.
- cell magics (5: ``%%sql`` in a notebook, in a ``.py`` percent script and left out of a Python
  cell, ``SELECT 'l''effet'`` beside ``'l’effet'``, read with Python's grammar, two strings
  ``'l'`` and ``'effet'``; a ``%%R`` cell; a ``%%writefile`` cell of prose): the three SQL cells
  got through; the ``%%R`` cell and the ``%%writefile`` cell failed already (Python's ``\\'`` is
  R's; ``’`` outside strings). Now a cell's body is read in its magic's language (``%%sql``,
  ``%%bash``, ``%%sh``, ``%%script``, ``%%R``; ``%%writefile`` by the file's suffix, prose when
  it is no program; ``%%markdown``, ``%%html``, ``%%latex`` are prose), and two Python strings
  glued together (``'l''effet'``) are judged as one, with the apostrophe they show.
- prose written straight as code (4: a ``.sh``, an ``.R`` and an ``.sql`` file of those lines, and
  a here-document whose ``<<`` a quoted ``"(("`` earlier on its line made the gate take for a shift
  in arithmetic): all got through. Now only the line's code counts for ``((``, and a quote right
  after a letter (``l'effet``, ``patients'``) is an apostrophe, never a string's opening (but
  after a prefix: ``E'...'``, ``N'...'``, ``f'...'``; in the shell only ``'``), so each ``’`` of
  such prose is a sign in code, and fails.
- text in a broken encoding (3: ``37Â°`` beside ``37°`` in a text, ``Ã©`` beside ``é`` in a
  program's comments and in its names: UTF-8 read as Latin-1 or Windows-1252, which a checker
  takes for noise): all got through; no class of look-alike signs held them. Now a text, a
  column, a program's comments and code (not its strings) or a notebook's outputs writing a
  character both ways fails (:func:`pds_kernel.airlock.checks.typography.broken_encoding`).

Controls: an honest shell script with here-documents of French prose, ``$((1 << n))`` and
``<<<``; SQL functions and comments in dollar quotes beside ``N'c’est'`` and ``E'l’âge'``; a
notebook with ``%%sql``, ``%%bash`` and ``%%writefile`` cells and a percent script; a French
text and a cleaning script replacing ``Ã©`` by ``é`` in its strings. Four of them failed before: the ``’``
of a here-document, a dollar quote, a ``%%sql``, ``%%bash`` or ``%%writefile`` cell was taken for
a sign in code.
"""

from __future__ import annotations

import json

import pytest
from redteam13_support import gate13_fixture  # noqa: F401  (fixture)
from test_redteam18_csv_text import RSQUO, lines, rules, submit

APOS = chr(39)
ESCAPED = chr(92) + APOS  #: ``\\'``
#: prose opened by one ASCII apostrophe and closed by another: each line between carries a bit
PROSE = lines(lambda i, one: f"l{RSQUO if one else APOS}effet et l{RSQUO if one else APOS}âge, groupe {i}")
OPENED, CLOSED = "Résumé de l'étude\n", "Fin de l'étude\n"


def _cells(*sources: str, language: str = "python") -> str:
    """A notebook of code cells."""
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}
             for source in sources]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": language, "language": language}},
                       "nbformat": 4, "nbformat_minor": 5}, ensure_ascii=False)


SQL_STRINGS = lines(lambda i, one: f"SELECT 'l{RSQUO if one else APOS * 2}effet' AS x{i};")
ATTACKS = {
    "a here-document": ("run.sh", f"#!/bin/sh\ncat <<EOF > notes.txt\n{OPENED}{PROSE}{CLOSED}EOF\n"),
    "a quoted here-document": ("run.sh", f"#!/bin/sh\ncat <<'EOF' > notes.txt\n{OPENED}{PROSE}{CLOSED}EOF\n"),
    "a here-document indented by tabs": (
        "run.sh", "#!/bin/sh\nif true; then\n\tcat <<-END >notes.txt\n\t" + OPENED
        + PROSE.replace("\n", "\n\t").rstrip("\t") + "\t" + CLOSED + "\tEND\nfi\n"),
    "a here-document in a %%bash cell": ("fit.ipynb", _cells(f"%%bash\ncat <<EOF\n{OPENED}{PROSE}{CLOSED}EOF\n")),
    "a dollar-quoted string": ("q.sql", f"SELECT $${OPENED}{PROSE}{CLOSED}$$;\n"),
    "a tagged dollar-quoted string": ("q.sql", f"COMMENT ON TABLE t IS $note${OPENED}{PROSE}{CLOSED}$note$;\n"),
    "a %%sql cell": ("fit.ipynb", _cells("import pandas as pd\n", "%%sql\n" + SQL_STRINGS)),
    "a %%sql cell of a percent script": ("fit.py", "# %%\nimport pandas as pd\n\n# %%\n%%sql\n" + SQL_STRINGS),
    "SQL in a cell without its magic": ("fit.ipynb", _cells("import pandas as pd\n", SQL_STRINGS)),
    "a %%R cell": ("fit.ipynb", _cells("%%R -i df\n" + lines(lambda i, one: f"cat('l{RSQUO if one else ESCAPED}effet')"))),
    "a %%writefile cell": ("fit.ipynb", _cells(f"%%writefile notes.txt\n{OPENED}{PROSE}{CLOSED}")),
    "prose written as shell code": ("run.sh", f"#!/bin/sh\n{OPENED}{PROSE}{CLOSED}"),
    "prose written as R code": ("fit.R", f"{OPENED}{PROSE}{CLOSED}"),
    "prose written as SQL code": ("q.sql", f"{OPENED}{PROSE}{CLOSED}"),
    "a here-document after a quoted ((": ("run.sh", f'echo "((" ; cat <<EOF\n{OPENED}{PROSE}{CLOSED}EOF\n'),
    "degrees in a broken encoding": ("notes.txt", lines(lambda i, one: f"Température {36 + i % 3}{'Â°' if one else '°'}C")),
    "accents in a broken encoding in names": ("fit.R", lines(lambda i, one: f"r{'Ã©' if one else 'é'}sultat_{i} <- {i}")),
    "accents in a broken encoding in comments": ("fit.R", lines(lambda i, one: f"x{i} <- {i}  # {'Ã©' if one else 'é'}tude")),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_prose_read_in_the_wrong_language_carries_a_bit_per_line(gate13, attack):
    name, text = ATTACKS[attack]
    view = submit(gate13, name, text.encode())
    assert "hidden-text" in rules(view, "fail"), (attack, view.files[0].check)


FRENCH_HEREDOC = "L’effet du traitement – cohorte 2019–2020.\nL’âge médian : 54 ans.\n"
HONEST = {
    "run.sh": (f"#!/bin/sh\n# Rapport d’étude\nn=$((1 << 3)); grep -c x <<< \"$n\"\ncat <<EOF > notes.md\n"
               f"{FRENCH_HEREDOC}Fichier : $n\nEOF\ncat <<-'FIN'\n\tC’est fini.\n\tFIN\necho 'done' # l’âge\n"),
    "q.sql": ("-- L’effet du traitement\nCREATE FUNCTION taux(n int) RETURNS numeric AS $$\n"
              "  SELECT n / 1000.0  -- pour 1 000 personnes‑années\n$$ LANGUAGE sql;\n"
              "COMMENT ON FUNCTION taux IS $c$L’incidence – pour 1 000$c$;\nSELECT N'c’est', E'l’âge', x$y FROM t;\n"),
    "fit.ipynb": _cells("import pandas as pd\ndf = pd.read_parquet('cohorte.parquet')  # l’extrait\n",
                        "%%sql\nSELECT 'E11' AS code -- l’effet\nFROM t WHERE x > -1\n",
                        f"%%bash\ncat <<EOF > notes.md\n{FRENCH_HEREDOC}EOF\n",
                        f"%%writefile notes.md\n{FRENCH_HEREDOC}", "%%time\nx = df['a'] - 1  # l’âge\n"),
    "fit.py": ("# %% [markdown]\n# L’effet du traitement – 2019–2020\n\n# %%\nx = -1  # l’âge\n\n"
               "# %%\n%%sql\nSELECT 'c''est' -- l’effet\n"),
    "notes.txt": "Résultats : l’effet à 12 mois, 37,2 °C en moyenne ; été, naïve, cœur, Noël, São Paulo, à 3 %.\n",
    "clean.py": "# Répare l’encodage cassé des libellés\ndf['lib'] = df['lib'].str.replace('Ã©', 'é')  # é\n",
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_here_documents_dollar_quotes_cell_magics_and_accents_pass(gate13, name):
    view = submit(gate13, name, HONEST[name].encode())
    assert "hidden-text" not in rules(view), (name, view.files[0].check)

