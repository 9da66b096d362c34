"""The split of programs into comments, strings and code (:mod:`pds_kernel.airlock.checks.program_text`),
on which the look-alike signs of their prose are judged (red team 19)."""

from __future__ import annotations

import pytest

from pds_kernel.airlock.checks import program_scan, typography
from pds_kernel.airlock.checks import program_text as pt


def test_python_comments_strings_docstrings_and_fstrings():
    source = ('def f(df):\n    """L’effet."""\n    return df[df.lib == "l\\\'hôpital"]  # l’âge\n'
              "x = f'{d[\"k\"]:>3} – {y}' + r'\\d' + b'z'\n")
    parts = pt.python(source)
    assert parts.comments == ["L’effet.", " l’âge"]  # a docstring is the author's prose
    assert parts.strings == ["l'hôpital", "{} – {}", "\\d", "z"]  # escapes undone but in raw strings
    assert "’" not in "".join(parts.code) and "df" in parts.code


def test_python_strings_glued_together_are_judged_as_one():
    assert pt.python("q = 'l''effet' 'x' + 'a'\"b\"").strings == ["l'effet", "x", "a\"b"]


def test_python_that_tokenize_cannot_read_is_scanned():
    parts = pt.python("def f():\n  x = 1\n y = '''l’effet\n")  # a bad indent, an unclosed string
    assert parts.strings[-1] == "l’effet\n"
    parts = pt.python("!ls 'l’effet'\n%time x  # c\n")  # a notebook's shell and magic lines
    assert parts.strings == ["l’effet"] and parts.comments == [" c"]


@pytest.mark.parametrize(("text", "comments", "strings", "code"), [
    ("x <- 'it\\'s'  # l’x\n", [" l’x"], ["it's"], ["x <- ", "  ", "\n"]),
    ('y <- "a # b" # c', [" c"], ["a # b"], ["y <- ", " ", ""]),
    ("`nom d’une colonne` <- 1", [], ["nom d’une colonne"], ["", " <- 1"]),  # a name, judged as a string
    ("z <- 'unclosed\n# not a comment", [], ["unclosed\n# not a comment"], ["z <- ", ""]),
])
def test_the_r_scanner(text, comments, strings, code):
    parts = pt.scan(text, pt.R)
    assert (parts.comments, parts.strings, parts.code) == (comments, strings, code)


def test_the_sql_scanner():
    parts = pt.scan("SELECT 'l''effet', \"col\" -- c\n/* block\n */ x - 1 /* open", pt.SQL)
    assert parts.comments == [" c", " block\n ", " open"]
    assert parts.strings == ["l'effet", "col"]
    assert parts.code == ["SELECT ", ", ", " ", "\n", " x - 1 ", ""]


def test_literate_documents_and_notebook_cells():
    parts = pt.program_parts("L’effet.\n```{r echo=FALSE}\nx <- 'a'  # c\n```\nFin.\n```{python}\ny = \"b\"\n```\n",
                             "report.Rmd")
    assert parts.comments == ["L’effet.\n", " c", "\nFin.\n", "\n"] and parts.strings == ["a", "b"]
    assert pt.cell_parts("markdown", "l’effet", "python").comments == ["l’effet"]
    assert pt.cell_parts("code", "x <- 'a'  # c", "r").strings == ["a"]
    assert pt.program_parts("a.txt", "notes.txt") is None  # not a program: a text, judged whole


def test_a_shell_comment_opens_at_the_start_of_a_word_only():
    parts = pt.program_parts("#!/bin/sh\n# l’effet\necho \"${#x} l'a\" 'b' # fin\nn=${#arr[@]}; ls # c’est\n", "run.sh")
    assert parts.comments == ["!/bin/sh", " l’effet", " fin", " c’est"] and parts.strings == ["${#x} l'a", "b"]
    assert "n=${#arr[@]}; ls " in "".join(parts.code)


def test_the_rules():
    assert pt.prose_rules(pt.python("x = 'a'  # l’effet, l’âge\ny = x - 1  # 2019–2020\n")) == []
    assert "the program's comments: apostrophes" in pt.prose_rules(pt.python("# l’effet\n# l'âge\n"))[0][2]
    assert "the program's strings: dashes" in pt.prose_rules(pt.python("a = '18–24'\nb = '18-24'\n"))[0][2]
    assert "U+2212 MINUS SIGN outside" in pt.prose_rules(pt.scan("x <- 1 \u2212 2", pt.R))[0][2]
    # comments and strings are judged apart: a string may match the data's own spelling
    assert pt.prose_rules(pt.scan("-- l’effet\nSELECT * FROM t WHERE lib = 'l''hôpital'", pt.SQL)) == []


def test_shell_here_documents_are_strings():
    text = ("cat <<EOF >a; cat <<-'FIN' # c\nl'effet $x\nEOF\n\tl’âge\n\tFIN\n"
            "n=$((1 << 3)); grep x <<< 'y'\ncat <<\\END\nopen\n")
    parts = pt.program_parts(text, "run.sh")
    assert parts.strings == ["l'effet $x\n", "\tl’âge\n", "y", "open\n"]  # not closed: it runs to the end
    assert parts.comments == [" c"] and "n=$((1 << 3)); grep x <<< " in "".join(parts.code)
    assert pt.program_parts('echo "((" ; cat <<EOF\nl’a\nEOF\n', "run.sh").strings == ["((", "l’a\n"]


def test_sql_dollar_quotes_are_strings():
    parts = pt.scan("SELECT $$l'a$$, $q$it's $$ ok$q$, $1, x$y$ -- c\n$t$open", pt.SQL)
    assert parts.strings == ["l'a", "it's $$ ok", "open"] and parts.comments == [" c"]


@pytest.mark.parametrize(("source", "comments", "strings"), [
    ("%%sql\nSELECT 'l''effet' -- c\n", [" c"], ["l'effet"]),
    ("%%bash\necho 'a' # c\n", [" c"], ["a"]),
    ("%%script bash\necho \"a\"\n", [], ["a"]),
    ("%%R -i df\nx <- 'it\\'s'  # c\n", [" c"], ["it's"]),
    ("%%writefile notes.md\nl'effet\n", ["l'effet\n"], []),
    ("%%writefile -a fit.R\nx <- 'a'  # c\n", [" c"], ["a"]),
    ("%%markdown\nl'effet\n", ["l'effet\n"], []),
    ("%%time\nx = 'a'  # c\n", [" c"], ["a"]),  # a magic of Python's
])
def test_cell_magics_are_read_in_their_language(source, comments, strings):
    parts = pt.cell_parts("code", source, "python")
    assert (parts.comments, parts.strings) == (comments, strings)


def test_percent_scripts_read_a_magic_cell_in_its_language():
    parts = pt.program_parts("x = 'a'  # c\n# %%\n# %%sql\nSELECT 'l''a'\n#%% [markdown]\n# fin\n", "fit.py")
    assert parts.strings == ["l'a", "a"] and parts.comments == [" c", " %%", "%% [markdown]", " fin"]


def test_a_broken_encoding_beside_the_right_one():
    assert "U+00E9" in typography.mixed_signs("l'été, l'Ã©tÃ©")
    assert "U+2019" in typography.mixed_signs("l’effet, lâ€™effet")
    assert typography.mixed_signs("lâ€™effet, Ã©tÃ©") == ""  # wholly broken: one way
    assert typography.mixed_signs("São Paulo, à 3 %, 37,2 °C, Â, Ã") == ""
    assert pt.prose_rules(pt.python("s = lib.replace('Ã©', 'é')  # fix\n")) == []  # a cleaning step's strings
    assert pt.prose_rules(pt.python("# é\n# Ã©\n"))


def test_a_quote_right_after_a_letter_is_an_apostrophe():
    assert pt.scan("Résumé de l'étude\nl’effet\n", pt.SHELL).strings == []  # prose, not a string
    assert "’" in "".join(pt.scan("Résumé de l'étude\nl’effet\n", pt.R).code)
    assert pt.scan("SELECT N'l’a', E'b', x'ff', abc'd'", pt.SQL).strings == ["l’a", "b", "ff"]
    assert pt.scan("x <- r\"(l'a)\"", pt.R).strings == ["(l'a)"] and pt.scan("f'a' + rb'b'", pt.PYTHON).strings == ["a", "b"]


def test_the_shell_reads_ansi_c_quotes_and_raw_single_quotes():
    bs = chr(92)
    parts = pt.program_parts(f"echo $'l{bs}x27a' $'l{bs}u2019b{bs}n' $'{bs}047{bs}342{bs}200{bs}231{bs}q' 'C:{bs}' 'd'\n",
                             "run.sh")
    assert parts.strings == ["l'a", "l’b\n", f"'’{bs}q", f"C:{bs}", "d"]
    assert program_scan.ansi_c(f"{bs}U0001F600{bs}cA{bs}xff{bs}uD800") == "\U0001f600\x01\ufffd\ufffd"
    assert pt.program_parts("awk -F';' '{print}' | cut -d',' -f2\n", "run.sh").strings == ["-F';", "{print}", "-d',"]


def test_a_shell_word_is_one_string_with_the_quotes_prose_shows():
    parts = pt.program_parts('echo "il a dit "oui" 1" "$d"/x"$e" a" b" --n="$m" "c "d\n', "run.sh")
    assert parts.strings == ['il a dit "oui" 1', "$d/x$e", 'a" b', "--n=$m", 'c "d']


def test_a_quote_set_off_by_blanks_is_shown_as_prose_shows_it():
    parts = pt.program_parts('echo "il a dit " oui " 1"\nread -p "Nom : " f\necho "a\t" x "b"\necho "c "\n', "run.sh")
    assert parts.strings == ['il a dit " ', ' " 1', 'Nom : " ', 'a\t" ', "b", "c "]
    escaped = pt.program_parts('echo "il a dit "\\ oui\\;1 "a"\\ "b"\n', "run.sh").strings
    assert escaped == ['il a dit " oui;1', "a b"]  # a word's escaped characters, as the shell makes them


def test_sql_strings_are_also_read_as_mysql_reads_a_backslash():
    bs = chr(92)
    parts = pt.program_parts(f"SELECT 'l{bs}'effet' AS a, 'C:{bs}' AS b;\n", "q.sql")
    assert parts.strings == [f"l{bs}", f"C:{bs}", "l'effet", "C:' AS b;\n"]  # standard SQL's, then MySQL's
    assert pt.program_parts("SELECT 'l''effet' AS a;\n", "q.sql").strings == ["l'effet"]  # no backslash: one reading


def test_a_broken_encoding_in_strings_but_a_cleaning_steps_pairs():
    assert typography.repaired("rÃ©gion, lâ€™effet, 37Â°, Ã, Â") == "région, l’effet, 37°, Ã, Â"
    assert "the program's strings: U+00E9" in pt.prose_rules(pt.python("print('rÃ©sultat')\nprint('été')\n"))[0][2]
    assert pt.prose_rules(pt.python("x.replace('rÃ©gion', 'région'); y.replace('é', 'Ã©'); print('été')\n")) == []
    assert pt.prose_rules(pt.python("x.replace('Ã©', 'é'); print('rÃ©sultat')\n"))  # printed: no pair
