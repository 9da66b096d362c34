"""The small scanner of a program's comments, strings and code in R, SQL and the shell (red teams
19, 20C and 21; :mod:`.program_text` reads Python with :mod:`tokenize` and places each language).

A :class:`Grammar` says where a language's prose is: line comments (``#``, ``--``; the shell's
``#`` at the start of a word only), block comments (``/* */``) and quoted strings (``\\`` escapes
in R, a doubled ``''`` in SQL); a string not closed runs to the end of the text (all of it is then
judged as prose). Backquoted names in R and SQL's ``"names"`` are judged with the strings (a column
may be named ``d’après``). The shell's here-documents (``<<EOF``, ``<<-'EOF'``: the lines up to the
delimiter; not ``<<<`` nor a shift in ``$((...))``) and PostgreSQL's dollar quotes (``$$...$$``,
``$tag$...$tag$``) are strings (red team 20C). A quote right after a letter (``l'effet``,
``patients'``) opens no string but after a prefix (``E'...'``, ``r"(...)"``; the shell's ``"``
may, ``"$(cat "$d/x")"``): it is prose's apostrophe, so prose written straight as code keeps its
``’`` in the code, where it fails.

The shell's quotes are read as the shell reads them (red team 21): a backslash is itself inside
``'...'`` (``'C:\\'`` is closed); ``$'...'`` (ANSI-C quoting) is a string whose escapes are the
characters they stand for (``$'l\\x27effet'`` is ``l'effet``, ``$'\\u2019'`` is ``’``, octal and
``\\n`` too), or each escape was a way to write an apostrophe the checker does not decode (so
``tr $'\\u2019' "'"`` fails as ``tr "’" "'"`` does: one string each sign, alone); and
the quoted parts of one shell word with the text glued to them (``"il a dit "oui" 1"``,
``"$d"/x``) are one string with the quotes it shows, or a ``"`` closing a quotation in prose was
syntax, never judged beside the ``“`` of the next line; so is a quote set off by blanks
(``echo "il a dit " oui 1`` shows ``il a dit " ``). SQL's backslash means two things: standard
SQL's ``'C:\\'`` is closed, MySQL's ``'l\\'effet'`` is ``l'effet``; a SQL text holding a
backslash is read both ways, the strings of both judged (:attr:`Grammar.dialect`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache


@dataclass
class Parts:
    """A program's text in three parts: its comments (with a notebook's markdown and the text of
    R Markdown: the author's prose), the text of its strings, and its code."""

    comments: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)

    def __iadd__(self, other: Parts) -> Parts:
        self.comments += other.comments
        self.strings += other.strings
        self.code += other.code
        return self


@dataclass(frozen=True)
class Grammar:
    """Where a language's prose is: comments and strings (see the module)."""

    line_comments: tuple[str, ...]
    block_comment: tuple[str, str] | None
    strings: str  #: quotes around a string
    names: str  #: quotes around a name (R's backquotes, SQL's double quotes)
    backslash: bool  #: a backslash escapes the next character inside quotes
    doubled: bool  #: a doubled quote inside quotes is the quote itself (SQL)
    #: a line comment opens only at the start of a word (the shell's ``#``: ``${#x}`` is no comment)
    word_comments: bool = False
    #: the shell's here-documents (``<<EOF``, ``<<-'EOF'``): the lines up to the delimiter are a string
    heredocs: bool = False
    #: PostgreSQL's dollar quotes (``$$...$$``, ``$tag$...$tag$``): a string
    dollar_quotes: bool = False
    #: the quotes that open no string right after a letter (:func:`_apostrophe`)
    apostrophes: str = "'\""
    #: the words that may stand right before a string's opening quote (``E'...'``, ``r"(...)"``)
    prefixes: frozenset[str] = frozenset()


    #: the quotes inside which a backslash is itself (the shell's ``'...'``)
    raw: str = ""
    #: the shell's ANSI-C quotes (``$'...'``): a string whose escapes are decoded (:func:`ansi_c`)
    ansi_c: bool = False
    #: the shell's words: a word's quoted parts and the text glued to them are one string
    words: bool = False
    #: a string's character escapes (``\\u2019``, ``\\x27``, octal) decoded (:func:`code_escapes`):
    #: "bytes" where ``\\x`` and octal escapes are bytes read as UTF-8 (R), "str" where they are
    #: code points (Python's strings); "" leaves them as written
    escapes: str = ""
    #: prefixes whose strings take backslash escapes although the language's others do not
    #: (PostgreSQL's ``E'l\\u2019effet'``), decoded as R's are (:func:`code_escapes`)
    escape_prefixes: frozenset[str] = frozenset()
    #: the prefix of strings written with Unicode escapes (PostgreSQL's ``U&'l\\2019effet'``: :func:`unicode_escapes`)
    unicode_prefix: str = ""
    #: another dialect whose reading of a text holding a backslash differs, its strings judged too
    #: (MySQL's ``'l\\'effet'`` is ``l'effet``, where standard SQL reads ``'l\\'`` then ``effet``)
    dialect: Grammar | None = None


R = Grammar(("#",), None, "'\"", "`", backslash=True, doubled=False, prefixes=frozenset({"r"}), escapes="bytes")
#: MySQL's signs: a backslash escapes in its strings, which double quotes also open
MYSQL = Grammar(("--", "#"), ("/*", "*/"), "'\"", "`", backslash=True, doubled=True, prefixes=frozenset({"n", "b", "x"}))
SQL = Grammar(("--",), ("/*", "*/"), "'", '"`', backslash=False, doubled=True, dollar_quotes=True,
              prefixes=frozenset({"e", "n", "b", "x"}), escape_prefixes=frozenset({"e"}), unicode_prefix="u&",
              dialect=MYSQL)
#: a shell script's signs (red team 19: its prose was free, only its spaces were judged)
#: (its ``"`` may follow a letter: ``"$(cat "$d/x")"`` nests quotes)
SHELL = Grammar(("#",), None, "'\"", "", backslash=True, doubled=False, word_comments=True, heredocs=True,
                apostrophes="'", raw="'", ansi_c=True, words=True)
#: Python's signs, for source :mod:`tokenize` cannot read to its end
PYTHON = Grammar(("#",), None, "'\"", "", backslash=True, doubled=False,
                 prefixes=frozenset({"r", "u", "b", "f", "br", "rb", "fr", "rf"}), escapes="str")


#: a here-document's operator and delimiter (``<<<`` is a here-string: a word, read as code)
_HEREDOC = r"(?<!<)<<(?P<tabs>-?)[ \t]*(?P<delimiter>'[^'\n]*'|\"[^\"\n]*\"|\\?[A-Za-z_][\w-]*)"
#: a dollar quote's tag (``$1`` is a parameter, ``x$y`` a name)
_DOLLAR = r"(?<![\w$])\$(?:[A-Za-z_]\w*)?\$"
#: what a shell word is made of besides its quoted parts (no blank, operator, quote or backquote)
#: (a backslash escapes the next character: ``"il a dit "\\ oui`` is one word)
_WORD = re.compile(r"(?:[^\s|&;()<>'\"`\\]|\\.)*")
_WORD_TAIL = re.compile(r"(?:[^\s|&;()<>'\"`\\]|\\.)*\Z")
_WORD_ESCAPE = re.compile(r"\\(.)")


def _word_text(text: str) -> str:
    """The text the shell makes of a word's unquoted part (``\\ `` is a blank)."""
    return _WORD_ESCAPE.sub(r"\1", text) if "\\" in text else text


@cache
def _openers(grammar: Grammar, after_heredoc: bool) -> re.Pattern:
    """What opens a comment, string or name in ``grammar`` (and the end of a line that a
    here-document's body follows)."""
    block = grammar.block_comment
    comment_start = r"(?:^|(?<=[\s;&|()]))" if grammar.word_comments else ""
    return re.compile("|".join([*(comment_start + re.escape(c) for c in grammar.line_comments),
                                *(re.escape(o) for o in (*(block[:1] if block else ()), *grammar.strings,
                                                         *grammar.names)),
                                *([r"\$'"] if grammar.ansi_c else []),
                                *([_HEREDOC] if grammar.heredocs else []), *([_DOLLAR] if grammar.dollar_quotes else []),
                                *(["\n"] if after_heredoc else [])]), re.M)


@dataclass
class _Word:
    """The shell word being read: its string's index in ``Parts.strings``, its text so far (joined
    when the word ends), and where its last quote closed."""

    index: int
    after: int
    pieces: list[str]
    last: str = ""  #: the last character of its text so far

    def add(self, *pieces: str) -> None:
        self.pieces += pieces
        self.last = next((piece[-1] for piece in reversed(pieces) if piece), self.last)


def scan(text: str, grammar: Grammar) -> Parts:
    """The comments, strings and code of ``text`` read with ``grammar``."""
    parts = Parts()
    block = grammar.block_comment
    heredocs: list[re.Pattern] = []  # the delimiters of the here-documents whose bodies follow this line
    word: _Word | None = None  # the shell word a quoted part closed, which text glued to it continues
    i, n = 0, len(text)
    while (found := _openers(grammar, bool(heredocs)).search(text, i)) is not None:
        opener = found.group()
        parts.code.append(text[i:found.start()])
        quoted = opener in grammar.strings or opener in grammar.names or opener == "$'"
        if word is not None and not (quoted and _WORD.fullmatch(text, word.after, found.start())):
            _end_word(text, parts, word)  # the word ends before this opener: its text glued after its last quote
            word = None
        if found.group() == "\n":  # a line ending with here-documents: their bodies follow, each a string
            i = found.end()
            for delimiter in heredocs:
                end = delimiter.search(text, i)
                parts.strings.append(text[i:end.start() if end else n])  # not closed: it runs to the end
                i = end.end() if end else n
            heredocs = []
        elif opener.startswith("<<"):
            line = _line_code(parts.code)
            if line.count("((") <= line.count("))"):  # not a shift in arithmetic (``$((1 << n))``)
                delimiter = found.group("delimiter").strip("'\"").removeprefix("\\")
                heredocs.append(re.compile(("^\t*" if found.group("tabs") else "^") + re.escape(delimiter) + "$\n?", re.M))
            parts.code.append(opener)
            i = found.end()
        elif opener.startswith("$") and opener != "$'":
            end = text.find(opener, found.end())
            end = n if end < 0 else end
            parts.strings.append(text[found.end():end])
            i = min(n, end + len(opener))
        elif opener in grammar.line_comments:
            end = text.find("\n", found.end())
            end = n if end < 0 else end
            parts.comments.append(text[found.end():end])
            i = end
        elif block and opener == block[0]:
            end = text.find(block[1], found.end())
            end = n if end < 0 else end
            parts.comments.append(text[found.end():end])
            i = min(n, end + len(block[1]))
        elif _apostrophe(text, found.start(), grammar):
            parts.code.append(opener)
            i = found.end()
        else:
            quote = opener[-1]
            prefix = _prefix(text, found.start()) if quote in grammar.strings else ""
            escaped_prefix = prefix in grammar.escape_prefixes
            escapes = (grammar.backslash or escaped_prefix) and (opener == "$'" or quote not in grammar.raw)
            end = _inside(quote, grammar.doubled, escapes).match(text, found.end()).end()  # not closed: to the end
            inside = text[found.end():end]  # a quoted name is judged as a string: it names the data too
            if grammar.doubled:
                inside = inside.replace(quote * 2, quote)
            if opener == "$'":
                value = ansi_c(inside)
            elif escapes and (grammar.escapes or escaped_prefix) and "r" not in prefix:
                value = code_escapes(inside, grammar.escapes != "str")
            elif grammar.unicode_prefix and prefix == grammar.unicode_prefix:
                value = unicode_escapes(inside)
            else:
                value = unescaped(inside, escapes)
            i = min(n, end + 1)
            if not grammar.words:
                parts.strings.append(value)
                continue
            opening = opener[-1] if _prose_side(value[:1]) else ""
            if word is not None:  # a quoted part glued to the word's last: one string, with the text between
                word.add(text[word.after - 1] if _prose_side(word.last) else "", _word_text(text[word.after:found.start()]),
                         opener[:-1], opening, value)
                word.after = i
            else:  # with the text glued before it (``oui" 0``)
                before = _word_text(_WORD_TAIL.search(parts.code[-1], max(0, len(parts.code[-1]) - 256)).group())
                parts.strings.append("")
                word = _Word(len(parts.strings) - 1, i, [])
                if before:
                    word.add(before, opener[:-1], opening)
                elif len(opener) == 1 and _set_off(value, 0) and _set_off(text, found.start() - 1):
                    word.add(" ", opener)  # ``oui " 1``: a quote set off by blanks
                word.add(value)
            if end >= n:  # not closed: the word ends with the text
                _end_word(text, parts, word)
                word = None
    if word is not None:
        _end_word(text, parts, word)
    parts.code.append(text[i:])
    if grammar.dialect is not None and "\\" in text:  # red team 21: ``'l\\'effet'`` beside ``'l’effet'``
        parts.strings += scan(text, grammar.dialect).strings
    return parts


def _end_word(text: str, parts: Parts, word: _Word) -> None:
    """The end of a shell word: the text glued after its last quote (``"$d"/x``)."""
    after = _word_text(_WORD.match(text, word.after).group()) if word.after < len(text) else ""
    if after:
        word.add(text[word.after - 1] if _prose_side(word.last) else "", after)
    elif _set_off(word.last, 0) and _set_off(text, word.after) and text[word.after - 1] in "'\"":
        word.add(text[word.after - 1], " ")  # ``"il a dit " oui``: a closing quote set off by blanks
    parts.strings[word.index] = "".join(word.pieces)


def _set_off(text: str, at: int) -> bool:
    """Whether a blank of the line stands at ``at``: beside a quote whose quoted text starts or
    ends with a blank too, the quote is set off by blanks as prose sets off its quotation marks
    (``il a dit " oui " 1``), not a word's edge (red team 21's residual: both quotes were syntax,
    each line's ``“ oui ”`` never judged beside them)."""
    return 0 <= at < len(text) and text[at] in " \t"


def _prose_side(char: str) -> bool:
    """A shell word's quote is shown in its string when the quoted text beside it is a blank or a
    stop, as in prose (``dit "oui" 1``: ``"dit "`` then ``oui`` then ``" 1"``), not a name or a path
    (``"$d"/x``, ``--name="$n"``), where its quotes are syntax."""
    return char.isspace() or char in ",;:!?"


def _line_code(code: list[str]) -> str:
    """The code of the line read so far (its strings and comments left out)."""
    tail = []
    for piece in reversed(code):
        tail.append(piece.rpartition("\n")[2])
        if "\n" in piece:
            break
    return "".join(reversed(tail))


_WORD_END = re.compile(r"\w+\Z")


def _apostrophe(text: str, start: int, grammar: Grammar) -> bool:
    """A quote right after a letter is prose's apostrophe or closing quote (``l'effet``,
    ``patients'``), not a string's opening: no language opens one there but after a prefix
    (``E'...'``). Red team 20C: prose written as code, each ASCII apostrophe opening a "string"
    whose typographic ones were never judged beside it."""
    if not start or not text[start - 1].isalpha() or text[start] not in grammar.apostrophes:
        return False
    if grammar.words and _WORD_TAIL.search(text, max(0, start - 64), start).group().startswith("-"):
        return False  # a shell option's argument (``awk -F';'``, ``cut -d','``)
    word = _WORD_END.search(text, max(0, start - 8), start)
    return word is None or word.group().lower() not in grammar.prefixes


@cache
def _inside(quote: str, doubled: bool, escapes: bool) -> re.Pattern:
    """What may stand inside quotes ``quote`` (escaped quotes included)."""
    q = re.escape(quote)
    if escapes and doubled:  # PostgreSQL's E'...': a backslash or a doubled quote escapes the quote
        return re.compile(rf"(?:[^{q}\\]|\\.|{q}{q})*(?:\\\Z)?", re.S)
    if escapes:
        return re.compile(rf"(?:[^{q}\\]|\\.)*(?:\\\Z)?", re.S)
    if doubled:
        return re.compile(rf"(?:[^{q}]|{q}{q})*", re.S)
    return re.compile(rf"[^{q}]*", re.S)


_ESCAPE = re.compile(r"\\(.)", re.S)


def unescaped(text: str, backslash: bool = True) -> str:
    """A string's text with its escaped quotes as the quotes they stand for (``l\\'effet`` is
    ``l'effet``, as ``l''effet`` is in SQL), so a reader's apostrophe is judged as one."""
    if not backslash or "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: m.group(1) if m.group(1) in "'\"" else m.group(0), text)

#: an escape of a Python or R string: hexadecimal, Unicode (R's also in braces), a character's
#: name (Python), octal, or one character (a quote is itself; any other stays as written)
_CODE_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[uU]\{[0-9A-Fa-f]{1,8}\}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}"
                          r"|N\{[A-Za-z0-9 -]{1,88}\}|[0-7]{1,3}|.)", re.S)


def _prefix(text: str, start: int) -> str:
    """The prefix of the string whose quote is at ``start``, lower-cased: one or two letters glued
    to it (``r"..."``, ``rb'...'``, ``E'...'``) or PostgreSQL's ``U&``; "" when none."""
    before = re.search(r"(?<![\w&])[A-Za-z]{1,2}&?\Z", text[max(0, start - 4):start])
    return before.group().lower() if before else ""


#: a Unicode escape of PostgreSQL's ``U&'...'`` strings: four or six hexadecimal digits, or ``\\``
_UNICODE_ESCAPE = re.compile(r"\\(?:([0-9A-Fa-f]{4})|\+([0-9A-Fa-f]{6})|(\\))")


def unicode_escapes(text: str) -> str:
    """The text of a PostgreSQL ``U&'...'`` string: ``\\2019`` and ``\\+002019`` are ``’``."""
    def char(m: re.Match) -> str:
        if m.group(3):
            return "\\"
        code = int(m.group(1) or m.group(2), 16)
        return chr(code) if code < 0x110000 and not 0xD800 <= code < 0xE000 else "\ufffd"
    return _UNICODE_ESCAPE.sub(char, text)


def code_escapes(text: str, byte_escapes: bool) -> str:
    """A Python or R string's text with its character escapes as the characters they stand for:
    ``\\u2019``, R's ``\\u{2019}`` and Python's ``\\N{RIGHT SINGLE QUOTATION MARK}`` are ``’``,
    ``\\x27`` and ``\\047`` are ``'``, and an escaped quote is the quote (:func:`unescaped`). Each
    was a way to write a sign beside its other spelling that the checker did not read (red team 21).
    ``byte_escapes``: ``\\x`` and octal escapes are bytes read as UTF-8 (R: ``\\xe2\\x80\\x99``
    is ``’``), else code points (Python's strings). Other escapes (``\\n``) stay as written."""
    if "\\" not in text:
        return text
    out, mark = bytearray(), 0
    for m in _CODE_ESCAPE.finditer(text):
        out += text[mark:m.start()].encode("utf-8", "replace")
        mark, escape = m.end(), m.group(1)
        if escape[0] == "x" or escape[0] in "01234567":
            number = int(escape[1:], 16) if escape[0] == "x" else int(escape, 8)
            out += bytes([number & 0xFF]) if byte_escapes else chr(number).encode("utf-8")
        elif escape[0] in "uU":
            code = int(escape[1:].strip("{}"), 16)
            out += (chr(code) if code < 0x110000 and not 0xD800 <= code < 0xE000 else "\ufffd").encode("utf-8")
        elif escape[0] == "N" and len(escape) > 1:
            try:
                out += unicodedata.lookup(escape[2:-1]).encode("utf-8")
            except KeyError:  # no such name: as written
                out += m.group().encode("utf-8")
        elif escape in "'\"":
            out += escape.encode()
        else:  # not a character escape: as written
            out += m.group().encode("utf-8", "replace")
    out += text[mark:].encode("utf-8", "replace")
    return out.decode("utf-8", "replace")


#: an ANSI-C escape of the shell (``$'...'``): hexadecimal, Unicode, octal, control, one character
_ANSI_C = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{1,4}|U[0-9A-Fa-f]{1,8}|[0-7]{1,3}|c.|.)", re.S)
_ANSI_C_SIMPLE = {"a": 7, "b": 8, "e": 27, "E": 27, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39,
                  '"': 34, "?": 63}


def ansi_c(text: str) -> str:
    """The text the shell makes of ``$'text'``: each escape the bytes it stands for (``\\x27`` and
    ``\\047`` are ``'``, ``\\u2019`` and ``\\342\\200\\231`` are ``’``), read as UTF-8 (red team 21)."""
    out, mark = bytearray(), 0
    for m in _ANSI_C.finditer(text):
        out += text[mark:m.start()].encode("utf-8", "replace")
        mark, escape = m.end(), m.group(1)
        if escape[0] == "x":
            out.append(int(escape[1:], 16))
        elif escape[0] in "uU":
            code = int(escape[1:], 16)
            out += (chr(code) if code < 0x110000 and not 0xD800 <= code < 0xE000 else "\ufffd").encode("utf-8")
        elif escape[0] in "01234567":
            out.append(int(escape, 8) & 0xFF)
        elif escape[0] == "c" and len(escape) == 2:
            out.append(ord(escape[1]) & 0x1F if escape[1].isascii() else 0x3F)
        elif escape in _ANSI_C_SIMPLE:
            out.append(_ANSI_C_SIMPLE[escape])
        else:  # not an escape: the backslash stays
            out += m.group().encode("utf-8", "replace")
    out += text[mark:].encode("utf-8", "replace")
    return out.decode("utf-8", "replace")
