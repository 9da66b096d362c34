"""Attacks on the streamed parser of large files (``pds_kernel/ingest/streamed.py``).

The streamed parser reads a file twice: once to hash it and check its bytes, once to load it. Each
test below delivers a large claims file (past the default size threshold, so that the real
routing applies) crafted to get damage or unhashed bytes through that split, and asserts that the
lake holds only what the recorded SHA-256 describes, and no damaged value. The writer that
changes the file between the two reads runs inside the real scan function, at the worst moment
(right after the hash), as a concurrent writer on the drop zone would.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from intake_damage_support import fresh_runtime, ingest, lake_values

from pds_kernel.ingest import Status, streamed
from pds_kernel.ingest.manifest import Manifest

NAME = "ER_PRS_F_202301.csv"


@pytest.fixture
def large(tmp_path):
    from delivery_factory import write_large_claims

    delivery = tmp_path / "d"
    delivery.mkdir()
    return write_large_claims(delivery / NAME, streamed.MIN_BYTES + (1 << 20))


def _after_the_hash(monkeypatch, change):
    """Run ``change()`` right after the streamed parser has hashed and checked the file."""
    real = streamed.scan_bytes

    def scan_then_change(*args):
        found = real(*args)
        change()
        return found

    monkeypatch.setattr(streamed, "scan_bytes", scan_then_change)


def _recorded_sha(runtime) -> str:
    return Manifest(runtime.settings.paths.lake).get(NAME).sha256


def _last_identifier_line(path) -> tuple[bytes, bytes]:
    """The last line of the file and its BEN_NIR_PSA (well past the first 8 MiB read)."""
    data = path.read_bytes()
    column = data[:data.index(b"\n")].split(b";").index(b"BEN_NIR_PSA")
    last = data[data.rstrip(b"\n").rfind(b"\n") + 1:].rstrip(b"\n")
    return last, last.split(b";")[column]


def test_a_rewrite_between_the_hash_and_the_load_is_not_loaded_under_the_old_hash(tmp_path, large, monkeypatch):
    runtime = fresh_runtime(tmp_path)
    line, victim = _last_identifier_line(large)
    forged = b"X" * len(victim)  # same size: only the content changes

    def rewrite():
        data = large.read_bytes()
        at = data.rfind(line)
        with open(large, "r+b") as fh:
            fh.seek(at + line.index(victim))
            fh.write(forged)

    _after_the_hash(monkeypatch, rewrite)
    result = ingest(runtime, large.parent)[NAME]
    assert result.status == Status.LOADED
    values = set(lake_values(runtime, "ER_PRS_F", "BEN_NIR_PSA"))
    # whatever was loaded, the recorded hash is the hash of the bytes loaded: here the new ones
    assert forged.decode() in values and _recorded_sha(runtime) == hashlib.sha256(large.read_bytes()).hexdigest()


def test_rows_appended_between_the_hash_and_the_load_are_not_loaded_unhashed(tmp_path, large, monkeypatch):
    runtime = fresh_runtime(tmp_path)
    line, _ = _last_identifier_line(large)
    extra = b"99999999" + line[line.index(b";"):] + b"\n"  # a new order number: a new key

    _after_the_hash(monkeypatch, lambda: large.open("ab").write(extra))
    result = ingest(runtime, large.parent)[NAME]
    # the rows loaded are the rows hashed: all of them, appended ones included
    assert _recorded_sha(runtime) == hashlib.sha256(large.read_bytes()).hexdigest()
    assert result.rows_read == result.rows_loaded == large.read_bytes().count(b"\n") - 1
    assert 99999999 in lake_values(runtime, "ER_PRS_F", "DCT_ORD_NUM")


def test_a_file_swapped_between_the_hash_and_the_load_is_not_loaded(tmp_path, large, monkeypatch):
    runtime = fresh_runtime(tmp_path)
    original = large.read_bytes()
    line, victim = _last_identifier_line(large)
    swapped = original.replace(victim, b"S" * len(victim))

    def swap():
        other = large.with_name("swap.tmp")
        other.write_bytes(swapped)
        os.replace(other, large)

    _after_the_hash(monkeypatch, swap)
    ingest(runtime, large.parent)
    values = set(lake_values(runtime, "ER_PRS_F", "BEN_NIR_PSA"))
    # the file opened and hashed is the one loaded; the swapped-in content never reaches the lake
    assert "S" * len(victim) not in values and victim.decode() in values
    assert _recorded_sha(runtime) == hashlib.sha256(original).hexdigest()


@pytest.mark.parametrize("damage, refused", [
    (b"\x00", False),       # a NUL deep in the file, past the first read: its line is quarantined
    (b"\x85", True),        # a C1 byte (NEL) in latin-1: the file is refused
    (b"\xc3\xa9", True),    # UTF-8 bytes declared latin-1: refused
    (b"\r", False),         # a lone carriage return: quarantined (red team 14B: a hidden line end)
    (b"\t", False),         # a tab: text (see parse._CONTROL), but the identifier is then longer
                            # than its 17 characters: quarantined (red team 15A), by the block parser
])
def test_damage_past_the_first_read_is_not_loaded(tmp_path, large, damage, refused):
    runtime = fresh_runtime(tmp_path)
    line, victim = _last_identifier_line(large)
    damaged = victim[:5] + damage + victim[5:]
    data = large.read_bytes()
    at = data.rfind(line)
    large.write_bytes(data[:at] + line.replace(victim, damaged) + data[at + len(line):])
    result = ingest(runtime, large.parent)[NAME]
    values = lake_values(runtime, "ER_PRS_F", "BEN_NIR_PSA")
    assert not any("\x00" in v or "\x85" in v or "Ã" in v for v in values)
    if refused:
        assert result.status == Status.REFUSED and values == []
    else:
        assert result.rows_quarantined == 1 and result.rows_loaded == result.rows_read - 1


def test_a_large_file_cut_in_its_last_value_is_not_loaded_shortened(tmp_path, large):
    runtime = fresh_runtime(tmp_path)
    data = large.read_bytes()
    column = data[:data.index(b"\n")].split(b";").index(b"PFS_EXE_NUM")
    line, _ = _last_identifier_line(large)
    value = line.split(b";")[column]
    at = data.rfind(line) + len(b";".join(line.split(b";")[:column + 1]))
    large.write_bytes(data[:at - 3])  # the transfer stopped inside the last line's PFS_EXE_NUM
    result = ingest(runtime, large.parent)[NAME]
    assert result.rows_quarantined == 1
    assert value[:-3].decode() not in lake_values(runtime, "ER_PRS_F", "PFS_EXE_NUM")


def test_a_large_file_with_a_short_line_does_not_load_it_padded(tmp_path, large):
    runtime = fresh_runtime(tmp_path)
    data = large.read_bytes()
    line, _ = _last_identifier_line(large)
    at = data.rfind(line)
    short = line.rsplit(b";", 2)[0]  # two fields short: a reader would pad them with nulls
    large.write_bytes(data[:at] + short + data[at + len(line):])
    result = ingest(runtime, large.parent)[NAME]
    assert result.rows_quarantined == 1 and result.rows_loaded == result.rows_read - 1
