"""Red team 19B: a raw identifier glued, reversed or encoded past the conformity check.

A bug, a malicious spec or a derived column puts a cohort person's ``BEN_NIR_PSA`` (or another
raw identifier of the lake) into an extract's text, in a form the check did not search: glued to
other letters or to another identifier, in full-width characters, reversed, or encoded (hex with
or without separators and at an odd alignment, base64 and base64url glued to other letters,
UTF-16, percent-encoding, hex of the reversed identifier, encoded twice): in a text value of an extract's file
(written as an attacker with write access would, the manifest's hashes true, as in
test_redteam12_conformity.py, and checked with the lake lookup the build and ``pds extract
check`` use), and in the subject column's name and values a study's linkage file gives the build.
Before the fix all 26 attempts got through (each run against the code before the fix: 23 extracts
passed the check, 3 builds were published). The check now searches every identifier of the lake
as a substring of each text, of its letters and digits, reversed, and of its encoded runs decoded
(``pds_kernel/extract/identifier_search.py``). Controls: an honest extract with codes, amounts,
dates, keyed PERSON_IDs, labels, hex lot numbers and base64-looking words passes.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from functools import partial
from pathlib import Path

import polars as pl
import pytest
from extract_attacks_support import (
    SMALL_SPEC,
    generate_rows,
    make_registry,
    rewrite_file,
    writable_copy,
    write_lake,
)

from pds_kernel.errors import DisclosureRisk
from pds_kernel.extract.build import raw_identifiers, run_build
from pds_kernel.extract.conformity import check_extract
from pds_kernel.extract.spec import PERSON_ID, load_spec, parse_spec
from pds_kernel.runtime import Runtime
from tests.conftest import make_settings

SPEC = parse_spec(SMALL_SPEC)


def _runtime(root: Path) -> Runtime:
    return Runtime(make_settings(root))


@pytest.fixture(scope="module")
def built():
    """One honest build of the small lake for the module (each test tampers with its own copy)."""
    root = Path(tempfile.mkdtemp(prefix="rt19conf-"))
    runtime = _runtime(root / "pds")
    rows = generate_rows()
    write_lake(runtime.settings.paths.lake, rows)
    make_registry(runtime)
    result = run_build(runtime, "diab-study", SPEC, actor="root")
    lake = runtime.settings.paths.lake
    people = rows["IR_BEN_R"]
    yield {"path": result.path, "lake": lake, "nir": people[0]["BEN_NIR_PSA"], "idt": people[1]["BEN_IDT_ANO"],
           "cohort": pl.read_parquet(result.path / "COHORT.parquet")[PERSON_ID]}
    runtime.close()
    shutil.rmtree(root, ignore_errors=True)


def _check(built, tmp_path, labels: list[str]):
    """A copy of the extract whose drug labels (IR_PHA_R.PHA_MED_NOM, text the build copies from
    the lake) are ``labels`` cycled over its rows, checked as the build checks it."""
    copy = writable_copy(built["path"], tmp_path / "copy")
    drugs = pl.read_parquet(copy / "IR_PHA_R.parquet")
    column = pl.Series("PHA_MED_NOM", [labels[i % len(labels)] for i in range(drugs.height)])
    rewrite_file(copy, "IR_PHA_R", drugs.with_columns(column))
    return check_extract(copy, SPEC, built["cohort"], partial(raw_identifiers, built["lake"]))


def _hex(text: str) -> str:
    return text.encode().hex()


def _b64(data: bytes, urlsafe: bool = False) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


#: name -> (how the identifier is written, the kind the refusal names)
ATTACKS = {
    "glued before": (lambda nir, idt: f"X{nir}", "as written"),
    "glued after": (lambda nir, idt: f"{nir}7Q", "as written"),
    "glued both sides, lower case": (lambda nir, idt: f"lot{nir.lower()}b", "as written"),
    "two identifiers glued": (lambda nir, idt: f"{idt}{nir}", "as written"),
    "cut by invisible spaces": (lambda nir, idt: "R" + "\u200b".join(nir), "as written"),
    "full-width letters and digits": (lambda nir, idt: f"ref {_full_width(nir)}", "as written"),
    "percent-glued": (lambda nir, idt: f"id%3D{nir}", "as written"),
    "reversed": (lambda nir, idt: nir[::-1], "reversed"),
    "reversed, glued, lower case": (lambda nir, idt: f"note{nir[::-1].lower()}x", "reversed"),
    "hex": (lambda nir, idt: _hex(nir), "hex"),
    "hex upper case after 0x": (lambda nir, idt: "0x" + _hex(nir).upper(), "hex"),
    "hex at an odd alignment": (lambda nir, idt: "abc" + _hex(nir), "hex"),
    "hex bytes cut by colons": (lambda nir, idt: ":".join(f"{b:02x}" for b in nir.encode()), "hex"),
    "hex of the reversed identifier": (lambda nir, idt: _hex(nir[::-1]), "reversed hex"),
    "base64": (lambda nir, idt: _b64(nir.encode()), "base64"),
    "base64 glued after letters": (lambda nir, idt: "token" + _b64(nir.encode()), "base64"),
    "base64url inside other text": (lambda nir, idt: _b64(f"id:{nir};".encode(), urlsafe=True), "base64"),
    "base64 cut in lines": (lambda nir, idt: "\n".join(_b64(b"<" + nir.encode() + b">")[i:i + 8]
                                                       for i in range(0, 28, 8)), "base64"),
    "base64 of UTF-16": (lambda nir, idt: _b64(nir.encode("utf-16-le")), "base64"),
    "percent-encoded bytes": (lambda nir, idt: "".join(f"%{b:02X}" for b in nir.encode()), "percent-encoded"),
    "base64 of the hex": (lambda nir, idt: _b64(_hex(nir).encode()), "hex in base64"),
    "hex of the base64": (lambda nir, idt: _hex(_b64(nir.encode())), "base64 in hex"),
    "percent-encoded base64": (lambda nir, idt: "".join(f"%{b:02X}" for b in _b64(nir.encode()).encode()),
                               "base64 in percent-encoded"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_identifier_glued_reversed_or_encoded_in_a_text_column_is_refused(built, tmp_path, attack):
    write, kind = ATTACKS[attack]
    nir = built["nir"]
    text = write(nir, built["idt"])
    report = _check(built, tmp_path, ["DRUG A10BA02", text])
    refusals = [r for r in report.reasons if r.startswith("IR_PHA_R.PHA_MED_NOM holds ")]
    assert not report.ok and refusals and "raw identifier value(s) of the lake (" in refusals[0], report.reasons
    assert kind in refusals[0].rsplit("(", 1)[1].rstrip(")").split(", "), refusals
    assert not any(nir in r or nir.lower() in r for r in report.reasons)


@pytest.mark.parametrize("disguise", ["glued", "reversed"])
def test_a_subject_column_named_after_an_identifier_glued_or_reversed_is_refused(tmp_path, disguise):
    """The spec's subject column named after a person's identifier, glued to a letter or reversed
    (an upper-case name that is no lake column passes the spec's rule)."""
    rows = generate_rows()
    runtime = _runtime(tmp_path / "pds")
    write_lake(runtime.settings.paths.lake, rows)
    make_registry(runtime)
    people = rows["IR_BEN_R"]
    nir = people[0]["BEN_NIR_PSA"]
    name = f"S{nir}" if disguise == "glued" else nir[::-1]
    (tmp_path / "cohort.csv").write_text(f"BEN_NIR_PSA,{name}\n" + "".join(
        f"{p['BEN_NIR_PSA']},S{n}\n" for n, p in enumerate(people)))
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC + f"linkage: {{file: cohort.csv, source_id: BEN_NIR_PSA, "
                                                     f"subject_id: {name}}}\n")
    try:
        with pytest.raises(DisclosureRisk, match="a column name of COHORT is a raw identifier") as refused:
            run_build(runtime, "diab-study", load_spec(tmp_path / "spec.yaml"), actor="root")
    finally:
        runtime.close()
    assert nir not in str(refused.value) and nir[::-1] not in str(refused.value)


def test_subject_numbers_that_are_the_identifiers_in_base64_are_refused(tmp_path):
    """The study's linkage file gives each person's BEN_NIR_PSA in base64 as the subject number:
    the COHORT table would hand PERSON_ID -> identifier over, one decoding away."""
    rows = generate_rows()
    runtime = _runtime(tmp_path / "pds")
    write_lake(runtime.settings.paths.lake, rows)
    make_registry(runtime)
    people = rows["IR_BEN_R"]
    (tmp_path / "cohort.csv").write_text("BEN_NIR_PSA,SUBJECT\n" + "".join(
        f"{p['BEN_NIR_PSA']},{_b64(p['BEN_NIR_PSA'].encode())}\n" for p in people))
    (tmp_path / "spec.yaml").write_text(SMALL_SPEC + "linkage: {file: cohort.csv, source_id: BEN_NIR_PSA, "
                                                     "subject_id: SUBJECT}\n")
    try:
        with pytest.raises(DisclosureRisk, match=r"COHORT.SUBJECT holds \d+ raw identifier value\(s\) of the "
                                                 r"lake \(base64"):
            run_build(runtime, "diab-study", load_spec(tmp_path / "spec.yaml"), actor="root")
    finally:
        runtime.close()


def test_honest_texts_pass(built, tmp_path):
    """Control: labels, codes, amounts and dates written as text, hex lot numbers, base64-looking
    words and percent signs, next to the extract's keyed PERSON_IDs, are no identifier."""
    labels = ["METFORMINE CHLORHYDRATE 1000MG CPR", "INSULINE-GLARGINE/100UI", "DRUG A10BA02", "A10BA02",
              "12.50 EUR", "2022-03-01", "lot 0f3a9c2b7d4e1f6a8b0c5d2e9f1a3b7c", "dGhpcyBpcyBhIGxhYmVs",
              "remboursé à 65 % (taux normal)", "Dose: 2×/jour — ½ CPR", "ＤＯＳＥ　１０ＭＧ"]
    report = _check(built, tmp_path, labels)
    assert report.ok, report.reasons
