"""The prose of a program: its comments and the text of its strings (red teams 19, 20C and 21).

A program's quotes and minus signs are syntax, so :mod:`.typography` judged only its spaces; its
comments and the text inside its strings are prose a checker reads like a text file's, and each
apostrophe or dash there written ``'`` or ``’``, ``-`` or ``−`` was a bit past the checker. This
module splits a program into its prose and its code, with a real tokenizer where one exists:

- Python (``.py``, a notebook's code cells): :mod:`tokenize`; the prose is each comment and
  each string literal's text (a docstring, an f-string's text without its ``{fields}``; two
  literals glued together, SQL's ``'l''effet'``, are one text with the apostrophe it shows). Source
  ``tokenize`` cannot read to its end (an unclosed triple quote, a bad indent) is read by the
  scanner with Python's signs;
- R, SQL, shell scripts (and a notebook or a chunk of R Markdown or Quarto in another language,
  with R's signs): the small scanner of :mod:`.program_scan` (comments, quoted strings, the shell's
  here-documents, ``$'...'`` and words, PostgreSQL's dollar quotes);
- an IPython cell opening with a cell magic (in a notebook, or in a ``.py`` percent script after
  a ``# %%`` line, where it may be written ``# %%sql``) is read in the magic's language:
  ``%%sql``, ``%%bash``, ``%%sh``, ``%%script bash``, ``%%R``; ``%%writefile`` by the file's
  suffix (prose when it is no program); ``%%markdown``, ``%%html``, ``%%latex`` are prose; other
  magics (``%%time``) hold Python;
- Markdown (a notebook's markdown and raw cells, the text of ``.qmd`` and ``.Rmd`` outside their
  code chunks) is prose whole.

The comments (with the markdown: the author's prose) must write each class of look-alike signs one
way in each context, as a text file must (:func:`.typography.mixed_signs`), and so must the
strings: judged apart, since a string may have to match the data's own spelling
(``label == 'l''hôpital'``) beside comments written with ``’``. Code never holds a typographic
apostrophe, quote or dash (no language reads them): one there (outside comments and strings) is
prose the tokenizer could not place, and fails too. The comments and code must not write a
character both as itself and in a broken encoding (``é`` and ``Ã©``,
:func:`.typography.broken_encoding`), nor must the strings (red team 21: ``print('rÃ©sultat')``
beside ``print('résultat')`` was a bit a line), but for a cleaning step's pairs: a string in a
broken encoding whose repair is the string right before or after it (``replace('Ã©', 'é')``,
``{'rÃ©gion': 'région'}``, ``gsub("Ã©", "é", x)``) is left out. What stays: a program's one way
for its comments and one for its strings, a few bits a file, and the pairs of a cleaning step.
A false alarm: a string matching the data in its broken spelling (``lib == 'rÃ©gion'``) beside
a string writing ``é`` (repair the column first), or a program explaining a broken encoding.
Cost: ``tokenize`` reads about 1 MB a second (0.2 s for a program the review page shows whole,
200,000 bytes; 0.9 s at :data:`.code.MAX_CODE_BYTES`).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import PurePosixPath

from . import typography
from .program_scan import PYTHON, SHELL, SQL, Grammar, Parts, R, code_escapes, scan
from .result import Status

__all__ = ["PYTHON", "R", "SHELL", "SQL", "Grammar", "Parts", "cell_parts", "program_parts", "prose_rules", "python",
           "scan"]
_GRAMMARS = {".r": R, ".sql": SQL, ".sh": SHELL}

_PREFIX = re.compile(r"^[A-Za-z]*")
_FSTRING_MIDDLE = getattr(tokenize, "FSTRING_MIDDLE", None)  # Python 3.12's f-strings, token by token


def _literal_text(token: str) -> str:
    """The text inside a Python string literal (an f-string's fields written ``{}``)."""
    prefix = _PREFIX.match(token).group()
    body = token[len(prefix):]
    quote = body[:3] if body[:3] in {'"""', "'''"} else body[:1]
    inner = body[len(quote):len(body) - len(quote)] if len(body) >= 2 * len(quote) else body[len(quote):]
    inner = inner if "r" in prefix.lower() else code_escapes(inner, "b" in prefix.lower())
    return _without_fields(inner) if "f" in prefix.lower() else inner


def _without_fields(text: str) -> str:
    """An f-string's text with each replacement field's expression left out (``{x:>3}`` -> ``{}``)."""
    out, depth = [], 0
    i = 0
    while i < len(text):
        char = text[i]
        if depth == 0 and char in "{}" and text.startswith(char * 2, i):
            out.append(char * 2)
            i += 2
            continue
        if char == "{":
            if depth == 0:
                out.append("{")
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                out.append("}")
        elif depth == 0:
            out.append(char)
        i += 1
    return "".join(out)


def python(source: str) -> Parts:
    """The comments, strings and code of Python source, by :mod:`tokenize` (see the module)."""
    parts = Parts()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
        return scan(source, PYTHON)
    for index, token in enumerate(tokens):
        if token.type == tokenize.COMMENT:
            parts.comments.append(token.string[1:])
        elif token.type == tokenize.STRING and index and _glued(tokens[index - 1], token):
            # ``'l''effet'``: SQL's doubled quote, Python's two strings; judged as the apostrophe it shows
            parts.strings[-1] += _PREFIX.sub("", token.string)[0] + _literal_text(token.string)
        elif token.type == tokenize.STRING:
            (parts.comments if _alone(tokens, index) else parts.strings).append(_literal_text(token.string))
        elif _FSTRING_MIDDLE is not None and token.type == _FSTRING_MIDDLE:
            parts.strings.append(code_escapes(token.string, False))
        else:
            parts.code.append(token.string)
    return parts


def _glued(before: tokenize.TokenInfo, token: tokenize.TokenInfo) -> bool:
    """Two string literals with nothing between them (red team 20C: SQL's ``'l''effet'`` in a
    cell without its ``%%sql``)."""
    return before.type == tokenize.STRING and before.end == token.start  # the first was not alone: a string


_LINE_START = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
_LINE_END = {tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER}


def _alone(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    """A string that is a statement alone (a docstring, a string written as a comment): prose of
    the author, judged with the comments (a string used by the code may have to match the data)."""
    before = tokens[index - 1].type if index else tokenize.NEWLINE
    after = [t.type for t in tokens[index + 1:index + 3]]
    return before in _LINE_START and bool(after) and (
        after[0] in _LINE_END or (after[0] == tokenize.COMMENT and len(after) > 1 and after[1] in _LINE_END))


_CHUNK = re.compile(r"^[ \t]*```+[ \t]*\{?[ \t]*([A-Za-z0-9_]*)[^\n]*\n(.*?)^[ \t]*```+[ \t]*$", re.M | re.S)


def _literate(text: str) -> Parts:
    """The parts of R Markdown or Quarto: the text outside its chunks is prose (with the
    comments), a chunk is read in its language (Python's, SQL's, else R's signs)."""
    parts, mark = Parts(), 0
    for chunk in _CHUNK.finditer(text):
        parts.comments.append(text[mark:chunk.start()])
        parts += _in_language(chunk.group(2), chunk.group(1).lower())
        mark = chunk.end()
    parts.comments.append(text[mark:])
    return parts


def _in_language(source: str, language: str) -> Parts:
    if language in {"python", ""}:
        return python(source)
    return scan(source, SQL if language == "sql" else R)


#: a cell magic opening an IPython cell (``%%sql``; a percent script may write it ``# %%sql``)
_MAGIC = re.compile(r"(?P<escaped>#[ \t]?)?%%(?P<name>[A-Za-z]\w*)(?P<args>[^\n]*)\n?")
_MAGIC_GRAMMARS = {"sql": SQL, "bash": SHELL, "sh": SHELL, "r": R}
_MAGIC_PROSE = {"markdown", "html", "latex"}


def _magic_cell(source: str, escaped: bool = False) -> Parts | None:
    """The parts of an IPython cell its cell magic reads in another language (red team 20C: a
    ``%%sql`` cell's ``'l''effet'`` was two Python strings), or None for a cell of Python's."""
    magic = _MAGIC.match(source)
    if not magic or (magic.group("escaped") and not escaped):
        return None
    name, args = magic.group("name").lower(), magic.group("args").split()
    if name == "script" and args:  # ``%%script bash``
        name = PurePosixPath(args[0]).name.lower()
    if name in _MAGIC_GRAMMARS:  # its arguments with its text (``%%sql SELECT 1`` is a query)
        return scan(source[magic.end("name"):], _MAGIC_GRAMMARS[name])
    body = source[magic.end():]
    if name in _MAGIC_PROSE:
        return Parts(comments=[body], code=[magic.group()])
    if name in {"writefile", "file"} and args:  # the file it writes: a program in its language, else prose
        parts = program_parts(body, args[-1]) or Parts(comments=[body])
        parts.code.append(magic.group())
        return parts
    return None


#: a cell's first line in a percent script (``# %%``, ``#%% [markdown]``; ``# %%sql`` is a magic)
_CELL_MARK = re.compile(r"(^#[ \t]?%%(?![A-Za-z]).*\n?)", re.M)


def _percent_script(text: str) -> Parts:
    """The parts of a ``.py`` script: a cell of a percent script opening with a cell magic is read
    in its language, the rest as one Python program."""
    if "%%" not in text:
        return python(text)
    parts, source = Parts(), []
    for index, piece in enumerate(_CELL_MARK.split(text)):
        magic = None if index % 2 else _magic_cell(piece, escaped=True)
        if magic is None:
            source.append(piece)
        else:
            parts += magic
    parts += python("".join(source))
    return parts


def program_parts(text: str, name: str) -> Parts | None:
    """The parts of a program named ``name``, or None for a language read as code only."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".py":
        return _percent_script(text)
    if suffix in {".qmd", ".rmd"}:
        return _literate(text)
    grammar = _GRAMMARS.get(suffix)
    return scan(text, grammar) if grammar else None


def cell_parts(cell_type: str, source: str, language: str) -> Parts:
    """The parts of a notebook cell: a markdown or raw cell is prose (with the comments), a code
    cell is read in the notebook's ``language`` (Python's signs when it says none)."""
    if cell_type != "code":
        return Parts(comments=[source])
    magic = _magic_cell(source) if language in {"python", ""} else None
    return magic if magic is not None else _in_language(source, language)


#: the signs no language's syntax writes (its spaces are judged with the whole text)
_TYPOGRAPHIC = re.compile("[" + "".join(sign for kind in ("apostrophe", "double quote", "dash")
                                         for sign in typography.CLASSES[kind][1:]) + "]")


def prose_rules(parts: Parts) -> list[tuple[str, Status, str]]:
    """The ``hidden-text`` finding of a program whose comments, or whose strings, write look-alike
    signs two ways in one context or a character both as itself and in a broken encoding (its
    strings but a cleaning step's pairs, ``replace('Ã©', 'é')``), or whose code holds a typographic
    sign (see the module)."""
    for what, texts, why in (
            ("comments", parts.comments, lambda text: typography.mixed_signs(text, tuple(typography.CLASSES))),
            ("strings", parts.strings, lambda text: typography.mixed_signs(text, tuple(typography.CLASSES))),
            ("comments and code", parts.comments + parts.code, typography.broken_encoding),
            ("strings", _unpaired(parts.strings), typography.broken_encoding)):
        found = why("\n".join(texts))
        if found:
            return [("hidden-text", Status.FAIL, f"the program's {what}: {found}: each can carry a bit past the checker; "
                                                 f"write each the same way in all its {what}")]
    stray = next((m.group() for m in map(_TYPOGRAPHIC.search, parts.code) if m), None)
    if stray:
        return [("hidden-text", Status.FAIL, f"{typography.sign_name(stray)} outside the program's comments and strings, "
                                             "where no language reads it: prose the gate cannot place; write it "
                                             "in a comment or a string")]
    return []


def _unpaired(strings: list[str]) -> list[str]:
    """The strings but those in a broken encoding whose repair is the string right before or after
    them: a cleaning step's pairs (``replace('Ã©', 'é')``, ``{'rÃ©gion': 'région'}``; red team 21)."""
    kept = []
    for index, text in enumerate(strings):
        fixed = typography.repaired(text)
        if fixed == text or fixed not in strings[max(0, index - 1):index] + strings[index + 1:index + 2]:
            kept.append(text)
    return kept
