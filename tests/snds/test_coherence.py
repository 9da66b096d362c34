"""Cross-table coherence: every link a study relies on holds in the generated delivery."""

from __future__ import annotations

from datetime import date

import polars as pl
from snds_helpers import MISSING, typed

from pds_kernel.snds.tables import DCIR_KEYS, TABLES


def _t(delivery, name: str) -> pl.DataFrame:
    return typed(delivery.tables[name], name)


def _missing_from(left: pl.DataFrame, right: pl.DataFrame, on) -> int:
    return left.select(on).unique().join(right.select(on).unique(), on=on, how="anti").height


def test_primary_keys_are_unique_across_all_files(delivery):
    for name, table in TABLES.items():
        frame = delivery.tables[name]
        assert frame.height > 0, name
        assert frame.select(table.primary_key).is_duplicated().sum() == 0, name


def test_every_claim_belongs_to_a_beneficiary(delivery):
    ben = delivery.tables["IR_BEN_R"]
    for name in ("ER_PRS_F", "IR_IMB_R"):
        assert _missing_from(delivery.tables[name], ben, ["BEN_NIR_PSA", "BEN_RNG_GEM"]) == 0, name


def test_detail_lines_join_one_claim_line_on_the_nine_keys(delivery):
    prs = delivery.tables["ER_PRS_F"]
    for name in ("ER_PHA_F", "ER_BIO_F"):
        detail = delivery.tables[name]
        assert detail.height > 0
        assert _missing_from(detail, prs, list(DCIR_KEYS)) == 0, name
        joined = detail.join(prs.select(DCIR_KEYS), on=list(DCIR_KEYS), how="inner")
        assert joined.height == detail.height  # exactly one claim line each


def test_dispensed_drugs_are_in_the_drug_referential(delivery):
    pha, ref = delivery.tables["ER_PHA_F"], delivery.tables["IR_PHA_R"]
    assert _missing_from(pha.rename({"PHA_PRS_C13": "PHA_CIP_C13"}), ref, ["PHA_CIP_C13"]) == 0
    assert 50 <= ref.height <= 200
    assert ref["PHA_CIP_C13"].str.contains(r"^34009[0-9]{8}$").all()


def test_hospital_stays_link_to_beneficiaries_and_share_their_keys(delivery):
    b, c, d = (delivery.tables[n] for n in ("T_MCOaaB", "T_MCOaaC", "T_MCOaaD"))
    ben = delivery.tables["IR_BEN_R"]
    assert _missing_from(c.rename({"NIR_ANO_17": "BEN_NIR_PSA"}), ben, ["BEN_NIR_PSA"]) == 0
    keys = ["ETA_NUM", "RSA_NUM"]
    assert b.select(keys).sort(keys).equals(c.select(keys).sort(keys))
    assert _missing_from(d, b, keys) == 0
    returns = pl.concat([c[col] for col in ("NIR_RET", "NAI_RET", "SEX_RET")])
    share_ok = (returns == "0").mean()
    assert 0.95 < share_ok < 1.0  # almost all linkages pass, a few do not


def test_each_row_is_in_the_file_of_its_month(delivery):
    def month(expr: pl.Expr) -> pl.Expr:
        return expr.dt.strftime("%Y%m")

    for name, column in (("ER_PRS_F", "FLX_DIS_DTD"), ("ER_PHA_F", "FLX_DIS_DTD"), ("ER_BIO_F", "FLX_DIS_DTD"),
                         ("KI_CCI_R", "BEN_DCD_DTE")):
        frame = _t(delivery, name).with_columns(delivery.month_of_row[name].alias("file"))
        assert frame.filter(month(pl.col(column)) != pl.col("file")).height == 0, name
    b = _t(delivery, "T_MCOaaB").with_columns(delivery.month_of_row["T_MCOaaB"].alias("file"))
    assert b.filter(pl.format("{}{}", pl.col("SOR_ANN"), pl.col("SOR_MOI").cast(pl.String).str.zfill(2))
                    != pl.col("file")).height == 0
    c = _t(delivery, "T_MCOaaC").with_columns(delivery.month_of_row["T_MCOaaC"].alias("file"))
    assert c.filter(month(pl.col("SOR_DAT")) != pl.col("file")).height == 0


def test_claims_are_reported_after_care_and_a_few_very_late(delivery):
    prs = _t(delivery, "ER_PRS_F").filter(pl.col("EXE_SOI_DTD") != MISSING)
    assert prs.filter(pl.col("FLX_DIS_DTD") <= pl.col("EXE_SOI_DTD")).height == 0
    assert prs.filter(pl.col("FLX_TRT_DTD") < pl.col("EXE_SOI_DTD")).height == 0
    assert prs.filter(pl.col("FLX_TRT_DTD") >= pl.col("FLX_DIS_DTD")).height == 0
    lag = (pl.col("FLX_DIS_DTD").dt.year() * 12 + pl.col("FLX_DIS_DTD").dt.month()
           - pl.col("EXE_SOI_DTD").dt.year() * 12 - pl.col("EXE_SOI_DTD").dt.month())
    late = prs.select((lag >= 6).mean()).item()
    assert 0.005 < late < 0.08
    # care before the window, reported inside it (January's file holds last year's December)
    assert prs.filter(pl.col("EXE_SOI_DTD") < date(2022, 1, 1)).height > 0


def test_deaths_after_births_and_no_care_after_death(delivery):
    ben = _t(delivery, "IR_BEN_R")
    dead = ben.filter(pl.col("BEN_DCD_DTE") != MISSING)
    assert dead.height > 0
    born = pl.date(pl.col("BEN_NAI_ANN"), pl.col("BEN_NAI_MOI"), 1)
    assert dead.filter(pl.col("BEN_DCD_DTE") < born).height == 0

    deaths = dead.select("BEN_NIR_PSA", "BEN_DCD_DTE")
    prs = _t(delivery, "ER_PRS_F").join(deaths, on="BEN_NIR_PSA")
    for col in ("EXE_SOI_DTD", "EXE_SOI_DTF"):
        assert prs.filter((pl.col(col) != MISSING) & (pl.col(col) > pl.col("BEN_DCD_DTE"))).height == 0, col
    stays = _t(delivery, "T_MCOaaC").join(deaths.rename({"BEN_NIR_PSA": "NIR_ANO_17"}), on="NIR_ANO_17")
    assert stays.filter(pl.col("SOR_DAT") > pl.col("BEN_DCD_DTE")).height == 0
    assert stays.filter(pl.col("ENT_DAT") > pl.col("SOR_DAT")).height == 0


def test_causes_of_death_link_by_ben_idt_ano_and_agree_on_the_date(delivery):
    ben = _t(delivery, "IR_BEN_R").select("BEN_IDT_ANO", "BEN_NAI_ANN", "BEN_DCD_DTE").unique()
    ki = _t(delivery, "KI_CCI_R")
    assert ki.height > 0
    joined = ki.join(ben, on="BEN_IDT_ANO", how="left", suffix="_ben")
    assert joined["BEN_DCD_DTE_ben"].null_count() == 0
    assert (joined["BEN_DCD_DTE"] == joined["BEN_DCD_DTE_ben"]).all()
    assert (joined["BEN_NAI_ANN"] == joined["BEN_NAI_ANN_ben"]).all()
    dead = ben.filter(pl.col("BEN_DCD_DTE") != MISSING)["BEN_IDT_ANO"].n_unique()
    assert 0.9 * dead <= ki.height <= dead  # a few deaths have no recorded cause


def test_a_person_with_two_identifiers_keeps_one_pseudonymous_identity(delivery):
    ben = delivery.tables["IR_BEN_R"]
    per_person = ben.group_by("BEN_IDT_ANO").agg(pl.col("BEN_NIR_PSA").n_unique().alias("n"),
                                                 pl.col("BEN_NIR_ANO").n_unique().alias("ano"))
    assert (per_person["ano"] == 1).all()
    assert (per_person["n"] == 2).sum() > 0
    assert (per_person["n"] <= 2).all()
