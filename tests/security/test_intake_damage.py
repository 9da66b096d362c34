"""Attacks on the intake: files crafted so that damaged data would load silently.

Each test delivers one crafted file to the real ingestion and asserts that the damage is refused,
quarantined or reported with a reason, and that no damaged value reaches the lake.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys

from intake_damage_support import (
    committed,
    fresh_runtime,
    ingest,
    lake_values,
    make_rows,
    write_delivery,
    write_table,
)

from pds_kernel.ingest import Status

TARGET = "MÉTFORMINE"


def _drugs(directory, name: str, encoding: str):
    rows = make_rows(persons=2, months=())["IR_PHA_R"]
    for row in rows:
        row["PHA_MED_NOM"] = row["PHA_MED_NOM"].replace("É", "E")
    rows[0]["PHA_MED_NOM"] = name
    directory.mkdir(parents=True, exist_ok=True)
    return write_table(directory / "IR_PHA_R.csv", "IR_PHA_R", rows, encoding=encoding)


def test_utf8_smuggled_as_latin1_does_not_load_as_mojibake(tmp_path):
    runtime = fresh_runtime(tmp_path)
    _drugs(tmp_path / "d", TARGET, "utf-8")
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "C1 control character" in result.reason
    assert not any("Ã" in str(v) for v in lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM"))


def test_utf8_without_c1_bytes_declared_latin1_is_refused(tmp_path):
    # "dosé" in UTF-8 is C3 A9: read as latin-1 it is "dosÃ©", printable: no C1 byte to catch.
    runtime = fresh_runtime(tmp_path)
    _drugs(tmp_path / "d", "COMPRIME dosé", "utf-8")
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "the text is UTF-8" in result.reason
    assert lake_values(runtime, "IR_PHA_R", "PHA_MED_NOM") == []


def test_cp1252_quote_declared_latin1_is_refused(tmp_path):
    runtime = fresh_runtime(tmp_path)
    _drugs(tmp_path / "d", "INSULINE D’ACTION RAPIDE", "cp1252")
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "byte 0x92" in result.reason
    assert not committed(runtime, "IR_PHA_R.csv")


def test_hidden_c1_line_break_in_a_latin1_field_is_refused(tmp_path):
    # NEL (0x85) is a line break for some readers downstream: a row could be split in two later.
    runtime = fresh_runtime(tmp_path)
    path = _drugs(tmp_path / "d", "PLAIN", "latin-1")
    path.write_bytes(path.read_bytes().replace(b"PLAIN", b"PLA\x85IN"))
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "byte 0x85" in result.reason


def test_double_encoded_utf8_declared_utf8_is_refused(tmp_path):
    runtime = fresh_runtime(tmp_path, encoding="utf-8")
    _drugs(tmp_path / "d", TARGET.encode("utf-8").decode("latin-1"), "utf-8")  # "MÃ\x89TFORMINE"
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "U+0089" in result.reason


def test_a_cut_last_value_is_not_loaded_shortened(tmp_path):
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=("202301",))
    rows[("ER_PRS_F", "202301")][-1]["ETB_PRE_FIN"] = "8533"
    delivery = write_delivery(tmp_path / "d", rows)
    prs = delivery / "ER_PRS_F_202301.csv"
    prs.write_bytes(prs.read_bytes()[:-3])  # "8533\n" -> "85"
    result = ingest(runtime, delivery)["ER_PRS_F_202301.csv"]
    assert result.rows_quarantined == 1
    assert "85" not in lake_values(runtime, "ER_PRS_F", "ETB_PRE_FIN")


def test_nul_bytes_hidden_in_an_identifier_are_quarantined(tmp_path):
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=("202301",))
    victim = rows[("ER_PRS_F", "202301")][0]["BEN_NIR_PSA"]
    delivery = write_delivery(tmp_path / "d", rows)
    prs = delivery / "ER_PRS_F_202301.csv"
    prs.write_bytes(prs.read_bytes().replace(victim.encode(), victim[:5].encode() + b"\x00" + victim[5:].encode(), 1))
    result = ingest(runtime, delivery)["ER_PRS_F_202301.csv"]
    assert result.rows_quarantined == 1
    assert not any("\x00" in v for v in lake_values(runtime, "ER_PRS_F", "BEN_NIR_PSA"))


def test_a_header_only_file_cannot_take_a_month_for_good(tmp_path):
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=("202301",))
    decoy = write_delivery(tmp_path / "decoy", {k: v for k, v in rows.items() if isinstance(k, str)})
    write_table(decoy / "ER_PRS_F_202301.csv", "ER_PRS_F", [])
    assert ingest(runtime, decoy)["ER_PRS_F_202301.csv"].status == Status.EMPTY
    real = ingest(runtime, write_delivery(tmp_path / "real", rows))["ER_PRS_F_202301.csv"]
    assert real.status == Status.LOADED and real.rows_loaded == len(rows[("ER_PRS_F", "202301")])


def test_an_empty_referential_cannot_wipe_the_loaded_one(tmp_path):
    runtime = fresh_runtime(tmp_path)
    rows = make_rows(months=())
    ingest(runtime, write_delivery(tmp_path / "first", rows))
    wipe = tmp_path / "wipe"
    wipe.mkdir()
    write_table(wipe / "IR_BEN_R.csv", "IR_BEN_R", [])
    assert ingest(runtime, wipe)["IR_BEN_R.csv"].status == Status.EMPTY
    assert len(lake_values(runtime, "IR_BEN_R", "BEN_NIR_PSA")) == len(rows["IR_BEN_R"])


def test_utf16_file_with_bom_is_refused_naming_the_bom(tmp_path):
    runtime = fresh_runtime(tmp_path)
    path = _drugs(tmp_path / "d", "PLAIN", "latin-1")
    path.write_bytes(path.read_text(encoding="latin-1").encode("utf-16"))
    result = ingest(runtime, tmp_path / "d")["IR_PHA_R.csv"]
    assert result.status == Status.REFUSED and "UTF-16 byte order mark" in result.reason


def test_an_empty_delivery_does_not_exit_zero(tmp_path):
    config = tmp_path / "pds.yaml"
    config.write_text("paths:\n  lake: lake\n  reports: reports\n  state: state\n"
                      f"cli:\n  identities:\n    {json.dumps(getpass.getuser())}: alice\n")
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()",
                           "--config", str(config), "ingest", str(tmp_path / "empty")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2 and "holds no file" in done.stderr, (done.stdout, done.stderr)
