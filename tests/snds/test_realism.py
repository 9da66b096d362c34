"""The quirks of real deliveries are there, and the frequencies are plausible."""

from __future__ import annotations

import polars as pl
from snds_helpers import MISSING, PATIENTS, YEARS, typed

PERSON_YEARS = PATIENTS * (YEARS[1] - YEARS[0] + 1)


def _drugs(delivery) -> pl.DataFrame:
    """Dispensings with their ATC code and the beneficiary."""
    prs = delivery.tables["ER_PRS_F"].filter(pl.col("PRS_ORD_NUM") == "1")
    keys = ["DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP", "FLX_TRT_DTD",
            "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF"]
    return (delivery.tables["ER_PHA_F"]
            .join(prs.select(*keys, "BEN_NIR_PSA", "EXE_SOI_DTD"), on=keys)
            .join(delivery.tables["IR_PHA_R"].rename({"PHA_CIP_C13": "PHA_PRS_C13"}), on="PHA_PRS_C13"))


def test_information_lines_duplicate_paid_lines(delivery):
    prs = delivery.tables["ER_PRS_F"]
    info = prs.filter(pl.col("DPN_QLF") == "71")
    assert 0.01 < info.height / prs.height < 0.06
    assert (info["PRS_ORD_NUM"] == "2").all()
    same = [c for c in prs.columns if c not in ("PRS_ORD_NUM", "DPN_QLF")]
    paid = prs.filter(pl.col("DPN_QLF") != "71")
    assert info.select(same).join(paid.select(same), on=same, how="anti", nulls_equal=True).height == 0


def test_fictitious_nirs_and_missing_dates(delivery):
    ben = delivery.tables["IR_BEN_R"]
    fictitious = ben.filter(pl.col("BEN_CDI_NIR") != "00")
    assert 0 < fictitious.height < 0.05 * ben.height
    # the fictitious ones have claims too
    assert delivery.tables["ER_PRS_F"].join(fictitious.select("BEN_NIR_PSA"), on="BEN_NIR_PSA").height > 0
    prs = delivery.tables["ER_PRS_F"]
    missing_end = (prs["EXE_SOI_DTF"] == "01JAN1600:00:00:00").mean()
    assert 0.01 < missing_end < 0.06


def test_volume_per_person_and_year(delivery):
    prs_rows = delivery.tables["ER_PRS_F"].height
    assert 20 <= prs_rows / PERSON_YEARS <= 45  # 100k people over 2 years give > 5 million lines
    stays = delivery.tables["T_MCOaaB"].height
    assert 0.1 <= stays / PERSON_YEARS <= 0.5
    deaths = (delivery.tables["IR_BEN_R"]["BEN_DCD_DTE"] != "01JAN1600:00:00:00").sum()
    assert 0.004 <= deaths / PERSON_YEARS <= 0.02


def test_chronic_treatments_have_plausible_prevalence(delivery):
    drugs = _drugs(delivery)
    people = delivery.tables["IR_BEN_R"]["BEN_IDT_ANO"].n_unique()

    def share(prefix: str) -> float:
        return drugs.filter(pl.col("PHA_ATC_C07").str.starts_with(prefix))["BEN_NIR_PSA"].n_unique() / people

    assert 0.03 <= share("A10") <= 0.12  # type 2 diabetes treatments
    assert share("A10BA02") > share("A10AE")  # metformin before insulin
    assert 0.1 <= share("C09") + share("C08") <= 0.35  # hypertension
    assert 0.05 <= share("C10AA") <= 0.2  # statins
    monthly = drugs.filter(pl.col("PHA_ATC_C07") == "A10BA02").group_by("BEN_NIR_PSA").len()
    assert monthly["len"].median() >= 10  # chronic drugs are dispensed (nearly) every month


def test_myocardial_infarctions_with_their_follow_up(delivery):
    b = delivery.tables["T_MCOaaB"]
    c = typed(delivery.tables["T_MCOaaC"], "T_MCOaaC")
    mi = b.filter(pl.col("DGN_PAL").str.starts_with("I21")).select("ETA_NUM", "RSA_NUM")
    per_thousand = mi.height / PERSON_YEARS * 1000
    assert 0.5 <= per_thousand <= 8
    patients = c.with_columns(pl.col("RSA_NUM").cast(pl.String)).join(mi, on=["ETA_NUM", "RSA_NUM"])
    antiplatelets = (_drugs(delivery)
                     .filter(pl.col("PHA_ATC_C07").str.starts_with("B01AC"))
                     .select(pl.col("BEN_NIR_PSA").alias("NIR_ANO_17"),
                             pl.col("EXE_SOI_DTD").str.strptime(pl.Date, "%d%b%Y:%H:%M:%S").alias("care")))
    after = (patients.select("NIR_ANO_17", "SOR_DAT")
             .join(antiplatelets, on="NIR_ANO_17")
             .filter((pl.col("care") > pl.col("SOR_DAT")) & (pl.col("care") != MISSING)))
    assert after["NIR_ANO_17"].n_unique() >= 1  # antiplatelet drugs after the stay


def test_long_term_illnesses_match_conditions(delivery):
    imb = delivery.tables["IR_IMB_R"]
    people = delivery.tables["IR_BEN_R"]["BEN_IDT_ANO"].n_unique()
    assert 0.05 <= imb["BEN_NIR_PSA"].n_unique() / people <= 0.3
    diabetes = imb.filter(pl.col("IMB_ALD_NUM") == "8")
    assert diabetes.height > 0 and diabetes["MED_MTF_COD"].str.starts_with("E11").all()
    severe_hypertension = imb.filter(pl.col("IMB_ALD_NUM") == "12")
    assert (severe_hypertension["IMB_ALD_DTF"] == "27JUN2011:00:00:00").all()
