"""The CSV form rules read a plain CSV (no quotes, no carriage returns, rows of one width) with
pyarrow's reader, any other record by record with csv.reader: both readings must tell the rules
the same things (blank and padded lines, the header, each column's missing values and
spellings), or the fast reading would open a channel the slow one closes."""

from __future__ import annotations

import random

import pytest

from pds_kernel.airlock.checks import csv_form

#: fields of every kind the rules judge: numbers spelt several ways, missing values written
#: several ways, padded texts, codes, non-ASCII text
FIELDS = ["1", "1.5", "1.50", "010", "10", "3", "3.0", "1e1", "+3", "-2", ".5", "0.5", "1 234", "1234", "2,5",
          "", "NA", "N/A", "null", " a", "b ", "x y", "\tz", "Total", "E11", "é", "C00012", "1e-05", "120"]
#: columns written one way (each a pool the column draws from), so that some columns pass
ONE_WAY = [["1", "10", "120", "3"], ["1.50", "3.00", "0.25"], ["1.5", "3.0", "0.25"], ["E11", "C50", "I21"],
           ["", "12", "7"], ["NA", "4", "5"]]


def _text(rng: random.Random) -> str:
    width = rng.randint(1, 4)
    pools = [rng.choice(ONE_WAY) if rng.random() < 0.6 else FIELDS for _ in range(width)]
    lines = [",".join(f"h{i}" for i in range(width))]
    for _ in range(rng.randint(0, 30)):
        if rng.random() < 0.05:
            lines.append("")  # a blank line
            continue
        cells = [rng.choice(pool) for pool in pools]
        if rng.random() < 0.05:
            cells = cells[:-1] or cells + ["9"]  # a row of another width
        lines.append(",".join(cells))
    if rng.random() < 0.2:
        lines.insert(0, "")
    return "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")


def _told(read: csv_form._Read, text: str) -> tuple:
    """What the rules are told: lines, header, columns' missing values and the columns whose
    numbers are spelt freely (judged as :func:`.csv_form.check_csv` judges them)."""
    problems = csv_form._spelling_problems(text, ",", read.columns)
    return (read.blank, read.padded, read.header, [sorted(c.missing) for c in read.columns], problems)


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_reading_tells_the_rules_what_csv_reader_tells_them(seed):
    rng = random.Random(seed)
    fast = 0
    for _ in range(150):
        text = _text(rng)
        read = csv_form._read_plain(text, ",")
        if read is None:
            continue
        fast += 1
        assert _told(read, text) == _told(csv_form._read_records(text, ","), text), text
    assert fast > 40  # many texts are plain


def test_quotes_carriage_returns_and_ragged_rows_are_read_record_by_record():
    assert csv_form._read_plain('a,b\n"1",2\n', ",") is None
    assert csv_form._read_plain("a,b\r\n1,2\r\n", ",") is None
    assert csv_form._read_plain("a,b\n1,2\n1,2,3\n", ",") is None
    assert csv_form._read_plain("a;b\n1;2\n", ";").header == ["a", "b"]


@pytest.mark.parametrize("text", ["a,b\n1,\x002\n", "a\n#x\n1\n", "a,b\n1,2\n\n\n3,4", "\n\na,b\n1,2", "a,b\n\x0b,3\n",
                                  "a,b\n3,4\x85\n", "a,b\n1,NA\n2,\n", "a\n1\n01\n", "a,b\n 1,2\n", "a,b\n1,2\t\n"])
def test_the_fast_reading_of_odd_but_plain_texts(text):
    read = csv_form._read_plain(text, ",")
    assert read is not None and _told(read, text) == _told(csv_form._read_records(text, ","), text)
