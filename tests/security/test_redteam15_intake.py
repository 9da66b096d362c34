"""Red team 15A: silent damage at intake, the residuals of red team 14B.

Each test delivers crafted files to the real ingestion (``ingest_delivery``, what ``pds ingest``
calls, on a real lake in ``tmp_path``) and asserts that the attack fails: the file is refused with
its reason, or the damaged lines are quarantined with their check and reason, and the lake holds
exactly the values the delivery meant. Both parsers are played where a clean file could reach the
streamed one. 25 attempts: 13 got through before the fixes ("got through" in each test), and 4
more were false refusals of legitimate text by 14B's quote and encoding rules. The fixes:

* quotes: a line is a quoting export when a field starts with ``"``, a code holds one, or a label
  an odd or doubled number; a label holding quotes in pairs (``CREME "X"``) loads;
* encoding: declared latin-1, a *value* whose every non-ASCII byte forms UTF-8 sequences is
  refused, for every multi-byte sequence (``Š`` is C5 A0), not only Â or Ã before A0-BF; a value
  holding a latin-1 byte no UTF-8 sequence explains is latin-1 (``TEMPÉRATURE 37Â°`` loads), and
  an accented capital before a no-break space or ``»`` (``CAFÉ\\u00a0:``) is latin-1;
* a blank before or after a code or identifier: quarantined (``blank_around_code``); labels are
  loaded as written;
* a text longer than the catalogue's ``length``: quarantined (``too_long``);
* the profile's PMSI files are checked against their period (``SOR_DAT``; ``SOR_ANN``/``SOR_MOI``),
  monthly and yearly, as the DCIR flux date already was;
* a date after the ingest's day and a week: quarantined (``future_date``), except in end dates
  (``..._DTF``, ``..._FIN...``), where ``31DEC9999`` is the open end.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from intake_damage_support import (
    edit_fields,
    fresh_runtime,
    ingest,
    lake_values,
    make_rows,
    quarantined_checks,
    use_parser,
    write_delivery,
    write_table,
)

from pds_kernel.ingest import Status
from pds_kernel.snds.tables import MISSING_DATE

PRS = "ER_PRS_F_202301.csv"
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _sas(day: date) -> str:
    return f"{day.day:02d}{_MONTHS[day.month - 1]}{day.year}:00:00:00"


def _claims(tmp_path, edits: dict[int, dict[str, str]]):
    """A delivery of one ER_PRS_F month whose data lines ``edits`` keys (0 = first row) get the
    given field texts; the rows as written, before the edits."""
    rows = make_rows(persons=12, months=("202301",))[("ER_PRS_F", "202301")]
    delivery = write_delivery(tmp_path / "d", {("ER_PRS_F", "202301"): rows})
    edit_fields(delivery / PRS, edits)
    return delivery, rows


def _drugs(tmp_path, labels: list[str], encoding: str = "latin-1", raw: dict[str, bytes] | None = None):
    """An IR_PHA_R file whose drug names are ``labels``; ``raw`` replaces a name's bytes after
    encoding (to mix encodings)."""
    rows = make_rows(persons=1, months=())["IR_PHA_R"][:1] * len(labels)
    rows = [dict(r, PHA_CIP_C13=3400930000011 + 11 * i, PHA_MED_NOM=label, PHA_ATC_L07="LIBELLE")
            for i, (r, label) in enumerate(zip(rows, labels, strict=True))]
    (tmp_path / "d").mkdir(parents=True, exist_ok=True)
    path = write_table(tmp_path / "d" / "IR_PHA_R.csv", "IR_PHA_R", rows, encoding=encoding)
    data = path.read_bytes()
    for placeholder, replacement in (raw or {}).items():
        data = data.replace(placeholder.encode("ascii"), replacement)
    path.write_bytes(data)
    return tmp_path / "d"


# -- 1. quotes ------------------------------------------------------------------------------------

def test_a_label_holding_quotes_in_pairs_loads(tmp_path):
    """False refusal (14B): a drug name with a quoted word was quarantined as a quoting export."""
    runtime = fresh_runtime(tmp_path)
    labels = ['CREME "X" 5 %', 'LE "GEL" ET LA "CREME"', "DOSE"]
    result = ingest(runtime, _drugs(tmp_path, labels))["IR_PHA_R.csv"]
    assert (result.status, result.rows_loaded, result.rows_quarantined) == (Status.LOADED, 3, 0)
    assert sorted(lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM")) == sorted(labels)


def test_a_quoting_export_of_a_label_is_stillquarantined_checks(tmp_path):
    """Did not get through (before or after): a label quoted whole, with doubled quotes, with an
    odd quote (the half of a quoted separator or line feed), a quoted separator, and a code with a
    quote; beside them a label with quotes in pairs loads (before: quarantined too)."""
    runtime = fresh_runtime(tmp_path)
    labels = ['"CREME X"', 'CREME ""X""', 'X"', "PLACEHOLDER", 'CREME "X"', "DOSE"]
    delivery = _drugs(tmp_path, labels, raw={"PLACEHOLDER": b'"CREME;X"'})
    path = delivery / "IR_PHA_R.csv"
    path.write_bytes(path.read_bytes().replace(b"A10BA02", b'A10"BA02', 1))  # the ATC code, line 2
    result = ingest(runtime, delivery)["IR_PHA_R.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 4)
    assert {line: check for line, (check, _) in quarantined_checks(runtime, "IR_PHA_R.csv").items()} == {
        2: "quote", 3: "quote", 4: "quote", 5: "quote"}
    assert sorted(lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM")) == ['CREME "X"', "DOSE"]


# -- 2 and 3. UTF-8 inside latin-1 ------------------------------------------------------------------

@pytest.mark.parametrize("labels", [
    ["TEMPÉRATURE < 37Â°", "DOSE"],       # Â° beside a latin-1 É in the same value (C2 B0)
    ["CAFÉ\u00a0: 5 MG", "DOSE"],          # É then a no-break space: the file's only accent
    ["«\u00a0NOËL\u00a0»", "ÉTÉ"],         # Ë before a no-break space, « and » around
])
def test_latin1_text_that_looks_like_a_utf8_pair_loads(labels, tmp_path):
    """False refusals (14B): Â before a symbol in a latin-1 value holding another accent was
    refused as UTF-8 mixed in; a file whose only accents were É or Ë before a no-break space was
    refused as a UTF-8 file."""
    runtime = fresh_runtime(tmp_path)
    result = ingest(runtime, _drugs(tmp_path, labels))["IR_PHA_R.csv"]
    assert (result.status, result.rows_quarantined) == (Status.LOADED, 0), result.reason
    assert sorted(lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM")) == sorted(labels)


@pytest.mark.parametrize("letter", ["Š", "ž", "ł", "ő", "Ā", "°", "ー"])
def test_utf8_letters_of_any_script_inside_latin1_are_refused(letter, tmp_path):
    """Got through (Š C5 A0, ž C5 BE, ł C5 82 no: C1, ő C5 91 no: C1, Ā C4 80 no: C1, ー E3 83 BC
    no: C1): a UTF-8 value whose letter is not a latin-1 one loaded as mojibake (``Å\\u00a0KODA``)
    beside latin-1 values; a value whose only accent is Â° is UTF-8 (refused, as before)."""
    runtime = fresh_runtime(tmp_path)
    result = ingest(runtime, _drugs(tmp_path, ["DOSé", "PLACEHOLDER"],
                                    raw={"PLACEHOLDER": f"{letter}KODA 5".encode()}))["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "line 3" in result.reason, result.reason
    assert "UTF-8" in result.reason and "convert" in result.reason
    assert lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM") == []


def test_a_utf8_value_beside_a_latin1_one_on_the_same_line_is_refused(tmp_path):
    """Got through: a UTF-8 drug name (``ŠKODA``) on a line whose ATC label is latin-1
    (``libellé``): the value, not the line, is the unit (14B's ``CRèME`` was refused by its Ã)."""
    runtime = fresh_runtime(tmp_path)
    delivery = _drugs(tmp_path, ["PLACEHOLDER"], raw={"PLACEHOLDER": "ŠKODA".encode(), "LIBELLE": b"libell\xe9"})
    result = ingest(runtime, delivery)["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "C5 A0" in result.reason


# -- 4. blanks around codes ----------------------------------------------------------------------

@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_a_blank_around_a_code_isquarantined_checks(parser, tmp_path, monkeypatch):
    """Got through: ``'75123456 '``, ``' 01C75100'`` and a tab (a space: the streamed parser
    takes no tab) after a department loaded with their blanks; each then matches no
    practitioner, fund or nomenclature code."""
    use_parser(monkeypatch, parser)
    runtime = fresh_runtime(tmp_path)
    delivery, rows = _claims(tmp_path, {0: {"PFS_EXE_NUM": "75123456 "}, 1: {"ORG_CLE_NUM": " 01C75100"},
                                        2: {"BEN_RES_DPT": "75\t" if parser == "blocks" else "75 "},
                                        3: {"BEN_NIR_PSA": " NIR0000000000000"}})
    result = ingest(runtime, delivery)[PRS]
    assert (result.rows_loaded, result.rows_quarantined) == (len(rows) - 4, 4)
    assert quarantined_checks(runtime, PRS) == {2: ("blank_around_code", "PFS_EXE_NUM"),
                                          3: ("blank_around_code", "ORG_CLE_NUM"),
                                          4: ("blank_around_code", "BEN_RES_DPT"),
                                          5: ("blank_around_code", "BEN_NIR_PSA")}
    assert set(lake_values(runtime, "ER_PRS_F", "PFS_EXE_NUM")) == {"751234567"}


def test_a_blank_around_a_label_loads_as_written(tmp_path):
    """No false quarantine: a label is text, its blanks are kept."""
    runtime = fresh_runtime(tmp_path)
    result = ingest(runtime, _drugs(tmp_path, ["DOSE ", " CREME"]))["IR_PHA_R.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    assert sorted(lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM")) == [" CREME", "DOSE "]


# -- 5. catalogue lengths ------------------------------------------------------------------------

@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_a_text_longer_than_its_catalogue_length_isquarantined_checks(parser, tmp_path, monkeypatch):
    """Got through: a department of four characters (3 in the catalogue), a beneficiary
    identifier of 18 (17: two values glued), a practitioner number of 10 (9)."""
    use_parser(monkeypatch, parser)
    runtime = fresh_runtime(tmp_path)
    delivery, rows = _claims(tmp_path, {0: {"BEN_RES_DPT": "0750"}, 1: {"BEN_NIR_PSA": "NIR000000000000021"},
                                        2: {"PFS_EXE_NUM": "7512345670"}, 3: {"BEN_RES_DPT": "075"}})
    result = ingest(runtime, delivery)[PRS]
    assert (result.rows_loaded, result.rows_quarantined) == (len(rows) - 3, 3)
    assert quarantined_checks(runtime, PRS) == {2: ("too_long", "BEN_RES_DPT"), 3: ("too_long", "BEN_NIR_PSA"),
                                          4: ("too_long", "PFS_EXE_NUM")}


# -- 6. the period of a file ---------------------------------------------------------------------

def _stays(tmp_path, name: str, exits: list[date]):
    # a stay whose exit is missing has a missing entry too (two days before 1600-01-01 is a date
    # too old since red team 19C)
    rows = [dict(ETA_NUM="2A0000022", RSA_NUM=1000 + i, NIR_ANO_17=f"NIR{i:014d}",
                 ENT_DAT=day if day == MISSING_DATE else day - timedelta(days=2),
                 SOR_DAT=day, EXE_SOI_DTD=day, EXE_SOI_DTF=day) for i, day in enumerate(exits)]
    (tmp_path / "d").mkdir(parents=True, exist_ok=True)
    write_table(tmp_path / "d" / name, "T_MCOaaC", rows)
    return tmp_path / "d"


@pytest.mark.parametrize("name, exits, wrong", [
    ("T_MCOaaC_202301.csv", [date(2023, 1, 5), date(2023, 2, 1), date(2022, 12, 31), MISSING_DATE], {3, 4, 5}),
    ("T_MCO23C.csv", [date(2023, 1, 5), date(2022, 12, 31), date(2023, 12, 31), date(2024, 1, 1)], {3, 5}),
])
def test_stays_outside_the_period_of_their_file_arequarantined_checks(name, exits, wrong, tmp_path):
    """Got through: a stay whose exit date is in another month (monthly file) or year (yearly
    file) loaded into the file's partition, where a study by period finds it twice or never."""
    runtime = fresh_runtime(tmp_path)
    result = ingest(runtime, _stays(tmp_path, name, exits))[name]
    assert (result.rows_loaded, result.rows_quarantined) == (len(exits) - len(wrong), len(wrong))
    assert quarantined_checks(runtime, name) == {line: ("wrong_month", "SOR_DAT") for line in wrong}


def test_a_stay_summary_outside_its_month_isquarantined_checks(tmp_path):
    """Got through: T_MCOaaB's exit year and month (SOR_ANN, SOR_MOI) of another month."""
    runtime = fresh_runtime(tmp_path)
    base = dict(ETA_NUM="2A0000022", DGN_PAL="E11", SOR_ANN=2023, SOR_MOI=1)
    rows = [dict(base, RSA_NUM=1), dict(base, RSA_NUM=2, SOR_MOI=2), dict(base, RSA_NUM=3, SOR_ANN=2022),
            dict(base, RSA_NUM=4, SOR_MOI=None)]
    (tmp_path / "d").mkdir()
    write_table(tmp_path / "d" / "T_MCOaaB_202301.csv", "T_MCOaaB", rows)
    result = ingest(runtime, tmp_path / "d")["T_MCOaaB_202301.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 2)
    assert quarantined_checks(runtime, "T_MCOaaB_202301.csv") == {3: ("wrong_month", "SOR_ANN"),
                                                             4: ("wrong_month", "SOR_ANN")}


def test_a_claim_of_another_flux_month_isquarantined_checks(tmp_path):
    """Did not get through (checked since the profile's first version): the DCIR flux date."""
    runtime = fresh_runtime(tmp_path)
    delivery, rows = _claims(tmp_path, {0: {"FLX_DIS_DTD": "01FEB2023:00:00:00"}})
    result = ingest(runtime, delivery)[PRS]
    assert result.rows_quarantined == 1 and quarantined_checks(runtime, PRS) == {2: ("wrong_month", "FLX_DIS_DTD")}


# -- 7. dates after the ingest ---------------------------------------------------------------------

@pytest.mark.parametrize("parser", ["blocks", "streamed"])
def test_dates_after_the_ingest_arequarantined_checks(parser, tmp_path, monkeypatch):
    """Got through: a date of care in 2999 and on 31DEC9999, and one a month after the ingest,
    loaded; the end of a care period on 31DEC9999 (an open end) and a date of care within the
    week's margin load."""
    use_parser(monkeypatch, parser)
    runtime = fresh_runtime(tmp_path)
    today = date.today()
    delivery, rows = _claims(tmp_path, {
        0: {"EXE_SOI_DTD": "01JAN2999:00:00:00"}, 1: {"EXE_SOI_DTD": "31DEC9999:00:00:00"},
        2: {"EXE_SOI_DTD": _sas(today + timedelta(days=31))}, 3: {"EXE_SOI_DTD": _sas(today + timedelta(days=7))},
        4: {"EXE_SOI_DTF": "31DEC9999:00:00:00"}})
    result = ingest(runtime, delivery)[PRS]
    assert (result.rows_loaded, result.rows_quarantined) == (len(rows) - 3, 3)
    assert quarantined_checks(runtime, PRS) == {line: ("future_date", "EXE_SOI_DTD") for line in (2, 3, 4)}
    assert date(9999, 12, 31) in lake_values(runtime, "ER_PRS_F", "EXE_SOI_DTF")
    assert max(lake_values(runtime, "ER_PRS_F", "EXE_SOI_DTD")) == today + timedelta(days=7)


def test_an_open_ended_exoneration_loads_and_a_future_start_does_not(tmp_path):
    """Got through (the start): an ALD starting in 2999 loaded; its open end 31DEC9999 is the
    SNDS's way to say "no end" and loads (an end date may lie in the future)."""
    runtime = fresh_runtime(tmp_path)
    base = dict(BEN_NIR_PSA="NIR00000000000001", BEN_RNG_GEM=1, IMB_ALD_NUM=1, IMB_ETM_NAT=41, MED_MTF_COD="E11",
                IMB_ALD_DTD=date(2019, 5, 1), IMB_ALD_DTF=date(9999, 12, 31))
    rows = [base, dict(base, IMB_ALD_NUM=2, IMB_ALD_DTF=date(2031, 1, 1)),
            dict(base, IMB_ALD_NUM=3, IMB_ALD_DTD=date(2999, 1, 1))]
    (tmp_path / "d").mkdir()
    write_table(tmp_path / "d" / "IR_IMB_R.csv", "IR_IMB_R", rows)
    result = ingest(runtime, tmp_path / "d")["IR_IMB_R.csv"]
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert quarantined_checks(runtime, "IR_IMB_R.csv") == {4: ("future_date", "IMB_ALD_DTD")}
    assert sorted(lake_values(runtime, "IR_IMB_R", "IMB_ALD_DTF")) == [date(2031, 1, 1), date(9999, 12, 31)]
