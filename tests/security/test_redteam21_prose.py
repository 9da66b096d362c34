"""Red team 21, the program prose red team 20C left open (a shell script's double quotes and `$'...'` quotes, a broken encoding in strings).

Red team 20C read here-documents, dollar quotes and cell magics in their own language and left
three holes in :mod:`pds_kernel.airlock.checks.program_scan` and
:mod:`pds_kernel.airlock.checks.program_text`. Every attack goes through the gate's real service
and asserts the file fails ``hidden-text``; each carries a bit a line.

24 attempts, all got through before their fix, and 9 controls (the shell script's failed before):

- double quotes in a shell script's prose (4: a quotation ``"oui"`` beside ``“oui”`` in a string
  over many lines, the 20C strict expected failure; one ``echo`` a line; a quotation with a blank
  inside, ``" oui"``; a ``%%bash`` cell of a percent script): the shell's ``"`` closing the string
  before ``oui`` and opening the next was syntax, never judged beside the ``“`` of the next line.
  Now the quoted parts of one shell word and the text glued to them are one string with the
  quotes it shows (``"il a dit "oui" 1"``, ``oui" 1``, ``"$d"/x``).
- a quote set off by blanks (4: ``echo "il a dit " oui 1`` beside ``echo "il a dit “ oui 1"``,
  the closing side ``echo oui " a-t-il dit 1"``, the same with apostrophes, and a blank escaped
  outside the quotes, ``"il a dit "\\ oui``): a quoted part ending or starting with a blank, a
  blank outside, was a word's edge, its quote syntax. Now that quote is shown in the string with
  the blank beside it (``il a dit " ``), as prose writes it, and a word's escaped characters are
  the characters the shell makes of them.
- the shell's ANSI-C quotes (3: ``$'l\\x27effet'``, ``$'l\\'effet'`` beside ``$'l\\u2019effet'``,
  octal bytes ``\\047`` and ``\\342\\200\\231``): each escape was text the gate did not decode, a
  way to write an apostrophe a checker does not read as one. Now ``$'...'`` is judged as the text
  the shell makes of it; a backslash inside ``'...'`` is itself (``'C:\\'`` is closed: it opened a
  "string" to the next apostrophe, a false alarm, see the controls), and a quote after an
  option's letter opens a string (``awk -F';'``, ``cut -d','``: read as apostrophes before).
- a broken encoding in a program's strings (4: ``print('rÃ©sultat')`` beside
  ``print('résultat')``, the same in R, ``37Â°C`` in SQL, a here-document): red team 20C judged
  the comments and code only, as a cleaning step's strings must match the data. Now the strings
  are judged too, but for a string in a broken encoding whose repair is the string right before
  or after it (``replace('Ã©', 'é')``, ``{'rÃ©gion': 'région'}``).

- a Python, R or SQL string's character escapes (9: ``"l\\u2019effet"`` beside ``"l'effet"``,
  Python's ``\\N{RIGHT SINGLE QUOTATION MARK}`` beside ``\\x27``, octal bytes in a bytes string,
  R's ``\\u{2019}`` and ``\\xe2\\x80\\x99``, PostgreSQL's ``E'l\\u2019effet'`` and
  ``U&'l\\2019effet'`` beside ``'l''effet'``, MySQL's ``'l\\'effet'`` beside ``'l’effet'``, a
  letter or a blank after it): judged as the letters written, never as the apostrophe a reader of
  the output sees. Now each is the character it stands for (raw strings are left as written), and
  a SQL text holding a backslash is read twice, as standard SQL and as MySQL, both readings'
  strings judged.

Controls: an honest shell script (words glued to quotes, ``"$(cat "$d/x")"``, ``grep "motif"``
beside ``“oui”``, ``'C:\\'`` before ``'l’effet'``, ``IFS=$'\\n\\t'``, ``$'l\\u2019effet'``, ``awk -F';'``, prompts
``read -p "Nom : " f``), PostgreSQL's ``'C:\\'`` before ``'l’effet'`` and an honest MySQL query, and
cleaning steps in Python, R and SQL printing accented messages, and Python, R and SQL programs
writing ``’`` as an escape and as itself, with other escapes and raw strings. One strict expected failure: a
broken string printed beside its repair, a pair like a cleaning step's.
"""

from __future__ import annotations

import pytest
from redteam13_support import gate13_fixture  # noqa: F401  (fixture)
from test_redteam18_csv_text import RSQUO, assert_channel_closed, lines, rules, submit

APOS, BACKSLASH = chr(39), chr(92)
LDQUO, RDQUO = "\u201c", "\u201d"


def _said(one: bool, i: int, spaced: bool = False) -> str:
    """A quotation in prose, with ASCII or typographic quotes (a blank after the opening one)."""
    blank = " " if spaced else ""
    return f"il a dit {LDQUO}{blank}oui{RDQUO} {i}" if one else f'il a dit "{blank}oui" {i}'


QUOTED_PROSE = 'echo "Résumé\n' + lines(lambda i, one: _said(one, i)) + 'fin"\n'


def _ansi_c(escape: str, other: str) -> str:
    """A line of prose a line, each apostrophe written ``escape`` or ``other`` in ``$'...'``."""
    return lines(lambda i, one: f"echo $'l{other if one else escape}effet, groupe {i}'")


ATTACKS = {
    "double quotes over many lines": ("run.sh", QUOTED_PROSE),
    "double quotes, one echo a line": ("run.sh", lines(lambda i, one: f'echo "{_said(one, i)}"')),
    "double quotes with a blank inside": ("run.sh", lines(lambda i, one: f'echo "{_said(one, i, spaced=True)}"')),
    "an opening double quote set off by blanks": ("run.sh", lines(lambda i, one: (
        f'echo "il a dit {LDQUO} oui {i}"' if one else f'echo "il a dit " oui {i}'))),
    "a closing double quote set off by blanks": ("run.sh", lines(lambda i, one: (
        f'echo "oui {RDQUO} a-t-il dit {i}"' if one else f'echo oui " a-t-il dit {i}"'))),
    "a quote set off by an escaped blank": ("run.sh", lines(lambda i, one: (
        f'echo "il a dit {LDQUO} oui {i}"' if one else f'echo "il a dit "{BACKSLASH} oui {i}'))),
    "an opening apostrophe set off by blanks": ("run.sh", lines(lambda i, one: (
        f"echo 'il a dit \u2018 oui {i}'" if one else f"echo 'il a dit ' oui {i}"))),
    "double quotes in a %%bash cell": ("fit.py", "# %%\nimport pandas as pd\n\n# %%\n%%bash\n" + QUOTED_PROSE),
    "ANSI-C hexadecimal apostrophes": ("run.sh", _ansi_c(BACKSLASH + "x27", RSQUO)),
    "ANSI-C Unicode apostrophes": ("run.sh", _ansi_c(BACKSLASH + APOS, BACKSLASH + "u2019")),
    "ANSI-C octal apostrophes": ("run.sh", _ansi_c(BACKSLASH + "047", BACKSLASH + f"342{BACKSLASH}200{BACKSLASH}231")),
    "a broken encoding in Python strings": ("fit.py", lines(lambda i, one: f"print('r{'Ã©' if one else 'é'}sultat {i}')")),
    "a broken encoding in R strings": ("fit.R", lines(lambda i, one: f"cat('r{'Ã©' if one else 'é'}sultat {i}')")),
    "a broken encoding in SQL strings": (
        "q.sql", lines(lambda i, one: f"SELECT '{36 + i % 3}{'Â°' if one else '°'}C' AS t{i};")),
    "a broken encoding in a here-document": (
        "run.sh", "cat <<EOF > notes.txt\n" + lines(lambda i, one: f"r{'Ã©' if one else 'é'}sultat {i}") + "EOF\n"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_shell_quotes_and_broken_strings_carry_a_bit_per_line(gate13, attack):
    """Got through before: each ``"`` or escape was shell syntax, each broken string unjudged."""
    name, text = ATTACKS[attack]
    view = submit(gate13, name, text.encode())
    assert "hidden-text" in rules(view, "fail"), (attack, view.files[0].check)


def _escaped(line: str, escape: str, other: str) -> str:
    """One statement a line, ``line`` with ``{}`` for the apostrophe and the line's number: the
    apostrophe written ``escape`` or ``other`` inside its string, a bit a line."""
    return lines(lambda i, one: line.format(other if one else escape, i))


#: a Python or R string's character escapes (red team 21's residual): each a way to write an
#: apostrophe the gate did not decode, so ``\u2019`` beside ``'`` was one sign only
ESCAPES = {
    "Python Unicode escapes": ("fit.py", _escaped('print("l{}effet, groupe {}")', APOS, BACKSLASH + "u2019")),
    "Python named escapes": (
        "fit.py", _escaped('print("l{}effet, groupe {}")', BACKSLASH + "x27", BACKSLASH + "N{RIGHT SINGLE QUOTATION MARK}")),
    "Python octal escapes in a bytes string": (
        "fit.py", _escaped('out.write(b"l{}effet, groupe {}")', BACKSLASH + "047",
                           BACKSLASH + "342" + BACKSLASH + "200" + BACKSLASH + "231")),
    "R Unicode escapes in braces": ("fit.R", _escaped('cat("l{}effet, groupe {}")', APOS, BACKSLASH + "u{2019}")),
    "R byte escapes": ("fit.R", _escaped('cat("l{}effet, groupe {}")', BACKSLASH + "x27",
                                         BACKSLASH + "xe2" + BACKSLASH + "x80" + BACKSLASH + "x99")),
    "PostgreSQL escape strings": ("q.sql", _escaped("SELECT E'l{}effet, groupe {}' AS t;", APOS * 2,
                                                    BACKSLASH + "u2019")),
    "PostgreSQL Unicode strings": ("q.sql", _escaped("SELECT U&'l{}effet, groupe {}' AS t;", APOS * 2,
                                                     BACKSLASH + "2019")),
    "MySQL backslash escapes": ("q.sql", _escaped("SELECT 'l{}effet, groupe {}' AS t;", BACKSLASH + APOS, RSQUO)),
    "MySQL backslash escapes set off by blanks": (
        "q.sql", _escaped("SELECT 'il a dit {0} oui {0} {1}' AS t;", BACKSLASH + APOS, "\u2018")),
}


@pytest.mark.parametrize("attack", sorted(ESCAPES))
def test_escaped_apostrophes_in_python_and_r_strings_carry_a_bit_per_line(gate13, attack):
    """Got through before: a string's ``\\u2019`` (``\\x27``, octal, ``\\N{...}``) was judged as
    the letters written, not the apostrophe a reader of the output sees."""
    name, text = ESCAPES[attack]
    view = submit(gate13, name, text.encode())
    assert "hidden-text" in rules(view, "fail"), (attack, view.files[0].check)


HONEST = {
    "run.sh": ('#!/bin/bash\n# Rapport d’étude\nd="$HOME/sortie"\nn="$(wc -l < "$d/x.csv")"\n'
               'echo "Total : "$n" patients" > "$d"/total"$ext"\ngrep -c "motif" "f.txt"\n'
               'echo "Il a dit “oui”, puis : “non”."\nprintf \'%s\\n\' \'C:\\\'\necho \'l’effet\'\n'
               "IFS=$'\\n\\t'\necho $'Résumé\\n' $'l\\u2019effet' \"l’âge\"\n"
               "awk -F';' '{ print $1 }' \"$d/x.csv\" | cut -d',' -f2\n"
               'read -p "Nom du fichier : " f\nprintf "%s " "$@"\necho -n "Patients : " ; echo \' fin\'\n'),
    "clean.py": ("FIX = {'Ã©': 'é', 'Ã¨': 'è', 'Â°': '°', 'â€™': '’'}\nprint('Libellés réparés, 37,2 °C')\n"
                 "for broken, right in FIX.items():\n    lib = lib.replace(broken, right)\n"
                 "df['region'] = df['region'].replace({'rÃ©gion': 'région'})\n"),
    "clean.R": 'x <- gsub("rÃ©gion", "région", x)\ncat("Régions réparées : ", length(x), "\\n")\n',
    "clean.sql": "UPDATE t SET lib = REPLACE(lib, 'Ã©', 'é');\nSELECT 'Libellés réparés' AS état;\n",
    "escapes.py": ('print("l\\u2019effet", "l’âge", "d\\N{RIGHT SINGLE QUOTATION MARK}après")\n'
                   'path = "C:\\\\temp\\n"\npattern = r"\\d+\\u2019?"\nsep = "\\t"\n'),
    "escapes.R": 'cat("l\\u2019effet", "l’âge", "\\u00e9t\\u00e9\\n")\nx <- gsub(r"(\\d+)", "", x)\n',
    "escapes.sql": ("SELECT E'l\\u2019effet\\n' AS a, U&'l\\2019\\00e2ge' AS b, 'l’ann\u00e9e' AS c,\n"
                    "       E'Total :\\t' AS d, N'caf\u00e9' AS e;\n"),
    "paths.sql": "SELECT 'C:\\' AS disque, 'a\\\\' AS b, 'l’effet' AS c, \"Libellé\" FROM t; -- d’après\n",
    "mysql.sql": "SELECT 'l\\'effet' AS a, \"Total : \" AS b, 'C:\\\\temp' AS c; -- l'an\n",
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_shell_quotes_and_cleaning_steps_pass(gate13, name):
    view = submit(gate13, name, HONEST[name].encode())
    assert "hidden-text" not in rules(view), (name, view.files[0].check)


#: channels left open (strict xfails: closing one makes its test pass, and fail here)
OPEN = {
    "a broken string printed beside its repair": (
        "fit.py", lines(lambda i, one: f"print('rÃ©sultat {i}', 'résultat {i}')" if one else f"print('résultat {i}')"),
        "a string in a broken encoding beside its repair is a cleaning step's pair (replace('Ã©', 'é')); "
        "a checker reads the pair, both forms side by side"),
}


@pytest.mark.parametrize("attack", sorted(OPEN))
def test_channels_left_open(gate13, request, attack):
    assert_channel_closed(gate13, request, *OPEN[attack])
