"""The search for the lake's raw identifiers in an extract's texts (for :mod:`.conformity`).

An identifier may reach an extract inside a text: a value, a column name, a Parquet footer. It is
searched there as a *substring*, not only as a whole value or token, under every form a bug or a
malicious spec could give it without a key (each text becomes a few *views*):

* ``as written``: the text itself, each of its alphanumeric tokens, and the text with everything
  but ASCII letters and digits removed after Unicode compatibility folding (NFKC): an identifier
  glued to other letters (``"X12AB..."``), cut by separators or invisible characters, written in
  lower or mixed case or in full-width digits;
* ``reversed``: that last view reversed;
* ``hex``, ``base64``, ``percent-encoded``: each run of hexadecimal digits (separators removed,
  so ``"%31%32..."`` and ``"31 32 ..."`` are runs too) of at least 2 x :data:`KEY_LENGTH` digits,
  each run of the base64 or base64url alphabet (blanks removed) of at least
  :data:`BASE64_RUN` characters, and a text holding ``%``, decoded at every alignment (a run glued
  to other letters starts anywhere), its bytes kept as letters and digits (so UTF-16 is read too),
  and reversed; and the runs inside what they decode to, once more (``base64 in hex``).

Finding every identifier of the lake in every view is a substring search over millions of
patterns: too large for one automaton in a real lake (tens of millions of persons, three
identifiers each). The search turns it around. Every identifier of at least :data:`KEY_LENGTH`
characters that occurs in a view starts one of the view's windows of that length, so the
extract's windows (a few per character of its distinct texts), as written and in upper case,
are looked up among the lake's identifiers' *keys* (their first :data:`KEY_LENGTH` characters:
:func:`lookup_key`), a hash join that scans the lake once and costs what the extract's distinct
texts cost. The few identifiers it returns are then searched in every view as substrings, in any
case (Aho-Corasick, ``str.contains_any``), which finds them exactly. So an identifier of the lake
in upper case (SNDS identifiers are) is found in any case; one holding lower-case letters is
found when some view holds its first :data:`KEY_LENGTH` characters as the lake writes them
(the lake's keys are not case-folded: that would cost a third more of the lake's scan). An
identifier shorter than :data:`KEY_LENGTH` (SNDS ones have 17 characters) is found only when a
view is that identifier, in any case (a whole value, a token, a decoded run).

The cohort's pseudonyms in a ``PERSON_ID`` column (HMAC-SHA256 in hex, computed by the platform)
are searched as whole values only: they are most of an extract's distinct text, and a pseudonym
of the cohort is the platform's own hash, not a text a spec or a derived column wrote.
"""

from __future__ import annotations

import binascii
import re
import urllib.parse
from collections.abc import Callable, Hashable

import polars as pl

#: Identifiers are looked up by their first this many characters (see the module docstring).
KEY_LENGTH = 12
#: The shortest base64 run decoded: a key's worth of bytes (16 characters for 12 bytes).
BASE64_RUN = (KEY_LENGTH + 2) // 3 * 4
_HEX_RUN = re.compile(f"[0-9A-Fa-f]{{{2 * KEY_LENGTH},}}")
_BASE64_RUN = re.compile(f"[0-9A-Za-z+/_-]{{{BASE64_RUN},}}")
_BASE64URL = str.maketrans("-_", "+/")
_NOT_ALNUM = bytes(b for b in range(256) if not chr(b).isascii() or not chr(b).isalnum())
_TOKEN = r"[0-9A-Za-z]+"

AS_WRITTEN, REVERSED = "as written", "reversed"

#: The lake's raw identifiers, or a function giving those whose :func:`lookup_key` is among the
#: keys it is given (:func:`.build.raw_identifiers`: the same result with a scan of the lake).
RawIds = pl.Series | Callable[[pl.Series], pl.Series]


def lookup_key(identifiers: pl.Expr) -> pl.Expr:
    """An identifier's lookup key: a 64-bit hash of its first :data:`KEY_LENGTH` characters (of the
    whole of a shorter one). A hash joins and deduplicates four times faster than the text, in
    half the memory; two texts of one hash only add an identifier to search for, which the search
    then does not find. ``str.head``: as fast as reading the identifier, where ``str.slice``
    costs a third more and an upper-casing twice that."""
    return identifiers.str.head(KEY_LENGTH).hash(seed=0)


def _alnum(data: bytes) -> str:
    """The ASCII letters and digits of ``data``."""
    return data.translate(None, _NOT_ALNUM).decode("ascii")


def _hex_bytes(run: str) -> list[bytes]:
    """A hexadecimal run decoded at both alignments."""
    return [bytes.fromhex(run[offset:][:(len(run) - offset) // 2 * 2]) for offset in (0, 1)]


def _base64_bytes(run: str) -> list[bytes]:
    """A base64 or base64url run decoded at its four alignments."""
    run = run.translate(_BASE64URL)
    decoded = []
    for offset in range(4):
        part = run[offset:]
        # its last 2 or 3 characters are a last byte or two (padded); a last single one is no byte
        part = part[:-1] if len(part) % 4 == 1 else part + "=" * (-len(part) % 4)
        decoded.append(binascii.a2b_base64(part))
    return decoded


def _decoded(value: str, squeezed: str, depth: int = 2) -> list[tuple[str, str]]:
    """``(view, kind)`` of the encoded runs of ``value`` (``squeezed``: its letters and digits)
    decoded, and of the runs inside what they decode to, ``depth`` levels deep (an identifier
    encoded twice: ``"base64 in hex"``)."""
    runs = [("hex", data) for run in _HEX_RUN.findall(squeezed) for data in _hex_bytes(run)]
    blank_free = "".join(value.split())
    if len(blank_free) >= BASE64_RUN:
        runs += [("base64", data) for run in _BASE64_RUN.findall(blank_free) for data in _base64_bytes(run)]
    if "%" in value:
        runs.append(("percent-encoded", urllib.parse.unquote_to_bytes(value)))
    views = []
    for kind, data in runs:
        view = _alnum(data)
        views.append((view, kind))
        if depth > 1 and len(view) >= KEY_LENGTH:
            views += [(inner, f"{inner_kind} in {kind}") for inner, inner_kind in
                      _decoded(data.decode("latin-1"), view, depth - 1)]
    return [(view, kind) for view, kind in views if view]


def views(values: pl.Series, whole_only: pl.Series | None = None) -> pl.DataFrame:
    """``value``, ``view`` and ``kind``: every view of each of the distinct ``values`` (module
    docstring); those among ``whole_only`` (the cohort's pseudonyms) have their whole value only."""
    values = values.cast(pl.String).drop_nulls().unique()
    trusted = values.is_in(whole_only.cast(pl.String).implode()) if whole_only is not None else values.is_null()
    # a whole value is looked up by its first window only (it is searched whole, and its letters
    # and digits below): the cohort's 64-character pseudonyms would otherwise give 53 windows each,
    # and a pseudonym only as written (were the pseudonymisation broken, it would be a lake's value)
    whole = pl.DataFrame({"value": values, "view": values, "kind": AS_WRITTEN, "windows": False, "fold": ~trusted})
    values = values.filter(~trusted)
    squeezed = values.str.normalize("NFKC").str.replace_all(r"[^0-9A-Za-z]", "")
    several = values.filter(~values.str.contains(r"^[0-9A-Za-z]+$"))
    frame = pl.DataFrame({"value": values, "squeezed": squeezed})
    parts = [whole,
             frame.select("value", pl.col("squeezed").alias("view"), kind=pl.lit(AS_WRITTEN)),
             frame.select("value", pl.col("squeezed").str.reverse().alias("view"), kind=pl.lit(REVERSED)),
             pl.DataFrame({"value": several, "view": several.str.extract_all(_TOKEN)}).explode("view")
             .select("value", "view", kind=pl.lit(AS_WRITTEN))]
    decoded = [(value, view, kind) for value, squeezed_value in zip(values.to_list(), squeezed.to_list(), strict=True)
               for view, kind in _decoded(value, squeezed_value)]
    if decoded:
        forward = pl.DataFrame(decoded, schema={"value": pl.String, "view": pl.String, "kind": pl.String},
                               orient="row")
        backward = forward.with_columns(pl.col("view").str.reverse(), (pl.lit("reversed ") + pl.col("kind")).alias("kind"))
        parts += [forward, backward]
    return (pl.concat(parts, how="diagonal_relaxed").with_columns(pl.col("windows", "fold").fill_null(True))
            .filter(pl.col("view").is_not_null() & (pl.col("view") != "")).unique())


def _keys(frame: pl.DataFrame) -> pl.Series:
    """The lookup keys of every window of :data:`KEY_LENGTH` characters of the views (a shorter view
    whole; the first window only of a view without ``windows``), as written and (but a view
    without ``fold``) in upper case."""
    length = pl.col("view").str.len_chars().cast(pl.Int64)
    last = pl.when(pl.col("windows")).then(pl.max_horizontal(length - KEY_LENGTH + 1, 1)).otherwise(1)
    windows = (frame.select("view", "fold", pl.int_ranges(0, last).alias("at")).explode("at")
               .select(pl.col("view").str.slice(pl.col("at"), KEY_LENGTH).alias("key"), "fold"))
    return pl.concat([windows.select(lookup_key(pl.col("key"))).to_series(),
                      windows.filter("fold").select(lookup_key(pl.col("key").str.to_uppercase())).to_series()]).unique()


def search(texts: dict[Hashable, pl.DataFrame], raw_ids: RawIds) -> dict[Hashable, pl.DataFrame]:
    """``name -> value, kind`` of the texts holding a raw identifier of the lake, for each name of
    ``texts`` whose views (:func:`views`) hold one (a value once per kind it was found in)."""
    views_of = pl.concat([frame.with_columns(name=pl.lit(index, dtype=pl.Int64))
                          for index, frame in enumerate(texts.values())] or [pl.DataFrame()], how="diagonal")
    if views_of.is_empty():
        return {}
    keys = _keys(views_of)
    if callable(raw_ids):
        found = raw_ids(keys)
    else:
        found = raw_ids.cast(pl.String).drop_nulls()
        found = found.filter(pl.DataFrame({"id": found}).select(lookup_key(pl.col("id")).is_in(keys.implode()))
                             .to_series())
    found = found.cast(pl.String).drop_nulls().unique()
    if found.is_empty():
        return {}
    short = found.str.len_chars() < KEY_LENGTH  # a short identifier is a whole view (module docstring)
    held = pl.col("view").str.to_uppercase().is_in(found.filter(short).str.to_uppercase().implode())
    if not short.all():
        held = held | pl.col("view").str.contains_any(found.filter(~short).to_list(), ascii_case_insensitive=True)
    hits = views_of.filter(held).select("name", "value", "kind").unique()
    names = list(texts)
    return {names[index]: part.drop("name") for (index,), part in hits.partition_by("name", as_dict=True).items()}

