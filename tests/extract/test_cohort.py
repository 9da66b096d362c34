"""Cohort selection equals a brute-force Python computation over the same small rows."""

from __future__ import annotations

from datetime import date

import pytest
from extract_lake import DRUGS, write_spec

from pds_kernel.extract.cohort import RETURN_CODES, select_persons
from pds_kernel.extract.frames import PolarsBackend
from pds_kernel.extract.linkage import read_linkage_file
from pds_kernel.extract.spec import load_spec, parse_spec
from pds_kernel.snds.tables import DCIR_KEYS, MISSING_DATE

TABLES_PART = "tables: {ER_PRS_F: [EXE_SOI_DTD]}\n"


# ---- brute force ------------------------------------------------------------------------------
def claims(rows, start, end):
    return [r for r in rows["ER_PRS_F"] if r["DPN_QLF"] != 71 and start <= r["EXE_SOI_DTD"] <= end]


def valid_stays(rows, start, end):
    b_keys = {(r["ETA_NUM"], r["RSA_NUM"]) for r in rows["T_MCOaaB"]}
    errors = {(r["ETA_NUM"], r["RSA_NUM"]) for r in rows["T_MCOaaB"] if (r["GRG_GHM"] or "").startswith("90")}
    return [r for r in rows["T_MCOaaC"]
            if all(r[c] == "0" for c in RETURN_CODES) and start <= r["EXE_SOI_DTD"] <= end
            and (r["ETA_NUM"], r["RSA_NUM"]) in b_keys and (r["ETA_NUM"], r["RSA_NUM"]) not in errors]


def brute(rows, c, start, end) -> set[str]:
    if c["kind"] == "drug":
        atc = {cip: code for cip, code in DRUGS.items()}
        lines = {tuple(r[k] for k in DCIR_KEYS) for r in rows["ER_PHA_F"]
                 if any(atc[r["PHA_PRS_C13"]].startswith(p) for p in c["codes"])}
        return {r["BEN_NIR_PSA"] for r in claims(rows, start, end) if tuple(r[k] for k in DCIR_KEYS) in lines}
    if c["kind"] == "biology":
        lines = {tuple(r[k] for k in DCIR_KEYS) for r in rows["ER_BIO_F"] if r["BIO_PRS_IDE"] in c["nabm"]}
        return {r["BEN_NIR_PSA"] for r in claims(rows, start, end) if tuple(r[k] for k in DCIR_KEYS) in lines}
    if c["kind"] == "diagnosis":
        keys = set()
        for r in rows["T_MCOaaB"]:
            if "principal" in c["where"] and any(r["DGN_PAL"].startswith(p) for p in c["codes"]):
                keys.add((r["ETA_NUM"], r["RSA_NUM"]))
            if "related" in c["where"] and r["DGN_REL"] and any(r["DGN_REL"].startswith(p) for p in c["codes"]):
                keys.add((r["ETA_NUM"], r["RSA_NUM"]))
        if "secondary" in c["where"]:
            keys |= {(r["ETA_NUM"], r["RSA_NUM"]) for r in rows["T_MCOaaD"]
                     if any(r["ASS_DGN"].startswith(p) for p in c["codes"])}
        return {r["NIR_ANO_17"] for r in valid_stays(rows, start, end) if (r["ETA_NUM"], r["RSA_NUM"]) in keys}
    if c["kind"] == "ald":
        return {r["BEN_NIR_PSA"] for r in rows["IR_IMB_R"]
                if any(r["MED_MTF_COD"].startswith(p) for p in c["codes"]) and r["IMB_ALD_DTD"] <= end
                and (r["IMB_ALD_DTF"] == MISSING_DATE or r["IMB_ALD_DTF"] >= start)}
    if c["kind"] == "age":
        at = c["at"]
        return {r["BEN_NIR_PSA"] for r in rows["IR_BEN_R"]
                if c["min"] <= at.year - r["BEN_NAI_ANN"] - (r["BEN_NAI_MOI"] > at.month) <= c["max"]}
    if c["kind"] == "sex":
        return {r["BEN_NIR_PSA"] for r in rows["IR_BEN_R"] if r["BEN_SEX_COD"] in c["sexes"]}
    if c["kind"] == "care":
        return ({r["BEN_NIR_PSA"] for r in claims(rows, c["from"], c["to"])}
                | {r["NIR_ANO_17"] for r in valid_stays(rows, c["from"], c["to"])})
    raise ValueError(c)


def brute_cohort(rows, include, exclude, start, end) -> set[str]:
    cohort = set.intersection(*(brute(rows, c, start, end) for c in include))
    for c in exclude:
        cohort -= brute(rows, c, start, end)
    return cohort


CASES = {
    "diabetes drug users without ALD E11": (  # (no drug user has an ALD I25 in this fixture)
        "include: [{drug: {atc: [A10]}}]\nexclude: [{long_term_illness: {icd10: [E11]}}]\n",
        [dict(kind="drug", codes=["A10"])], [dict(kind="ald", codes=["E11"])]),
    "I21 principal diagnosis": (
        "include: [{diagnosis: {icd10: [I21], where: [principal]}}]\n",
        [dict(kind="diagnosis", codes=["I21"], where=["principal"])], []),
    "I2 anywhere, women 40-80, no statin": (
        "include:\n  - diagnosis: {icd10: [I2]}\n  - age: {min: 40, max: 80, at: 2022-06-01}\n  - sex: [2]\n"
        "exclude: [{drug: {atc: [C10AA]}}]\n",
        [dict(kind="diagnosis", codes=["I2"], where=["principal", "related", "secondary"]),
         dict(kind="age", min=40, max=80, at=date(2022, 6, 1)), dict(kind="sex", sexes=[2])],
        [dict(kind="drug", codes=["C10AA"])]),
    "care in 2022 Q2-Q3, ALD E11 or E10": (
        "include:\n  - care: {from: 2022-03-01, to: 2022-09-30}\n  - long_term_illness: {icd10: [E11, E10]}\n",
        [dict(kind="care", **{"from": date(2022, 3, 1), "to": date(2022, 9, 30)}), dict(kind="ald", codes=["E11", "E10"])],
        []),
    "I21 related diagnosis alone": (
        "include: [{diagnosis: {icd10: [I21], where: [related]}}]\n",
        [dict(kind="diagnosis", codes=["I21"], where=["related"])], []),
    "diabetes drug users without a stay for I25 anywhere": (
        "include: [{drug: {atc: [A10]}}]\nexclude: [{diagnosis: {icd10: [I25]}}]\n",
        [dict(kind="drug", codes=["A10"])],
        [dict(kind="diagnosis", codes=["I25"], where=["principal", "related", "secondary"])]),
    "diabetes drug users, excluding those aged 0-60 in mid-2022": (
        "include: [{drug: {atc: [A10]}}]\nexclude: [{age: {min: 0, max: 60, at: 2022-06-15}}]\n",
        [dict(kind="drug", codes=["A10"])], [dict(kind="age", min=0, max=60, at=date(2022, 6, 15))]),
    "I2 principal stays, men excluded": (
        "include: [{diagnosis: {icd10: [I2], where: [principal]}}]\nexclude: [{sex: [1]}]\n",
        [dict(kind="diagnosis", codes=["I2"], where=["principal"])], [dict(kind="sex", sexes=[1])]),
    "diabetes drug users without care in the first half of 2023": (
        "include: [{drug: {atc: [A10]}}]\nexclude: [{care: {from: 2023-01-01, to: 2023-06-30}}]\n",
        [dict(kind="drug", codes=["A10"])],
        [dict(kind="care", **{"from": date(2023, 1, 1), "to": date(2023, 6, 30)})]),
    "HbA1c tested diabetes drug users": (
        "include: [{drug: {atc: [A10]}}, {biology: {nabm: [1577]}}]\n",
        [dict(kind="drug", codes=["A10"]), dict(kind="biology", nabm=[1577])], []),
    "a creatinine or TSH test, none of HbA1c (codes as text, leading zero)": (
        "include: [{biology: {nabm: [\"0592\", 1208]}}]\nexclude: [{biology: {nabm: [1577]}}]\n",
        [dict(kind="biology", nabm=[592, 1208])], [dict(kind="biology", nabm=[1577])]),
    "age 50-70 at the period start (default date), women": (
        "include: [{age: {min: 50, max: 70}}, {sex: [2]}]\n",
        [dict(kind="age", min=50, max=70, at=date(2022, 1, 1)), dict(kind="sex", sexes=[2])], []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_cohort_equals_brute_force(name, small_lake):
    text, include, exclude = CASES[name]
    spec = parse_spec(f"project: diab-study\nyears: [2022, 2023]\n{TABLES_PART}{text}")
    got = set(select_persons(PolarsBackend(small_lake.path), spec)["BEN_NIR_PSA"].to_list())
    expected = brute_cohort(small_lake.rows, include, exclude, date(2022, 1, 1), date(2023, 12, 31))
    assert got == expected
    assert 0 < len(got) < len(small_lake.rows["IR_BEN_R"]), "the case should select some, not all"
    if exclude:  # the exclusion must matter on this data, or the case would test nothing
        included = brute_cohort(small_lake.rows, include, [], date(2022, 1, 1), date(2023, 12, 31))
        assert got < included


def test_period_narrows_the_criteria(small_lake):
    spec = parse_spec("project: diab-study\nyears: [2022]\nperiod: {from: 2022-04-01, to: 2022-08-31}\n"
                      + TABLES_PART + "include: [{drug: {atc: [A10]}}]\n")
    got = set(select_persons(PolarsBackend(small_lake.path), spec)["BEN_NIR_PSA"].to_list())
    assert got == brute(small_lake.rows, dict(kind="drug", codes=["A10"]), date(2022, 4, 1), date(2022, 8, 31))


def test_standard_filters_matter(small_lake):
    """The fixture has information lines, error stays and failed linkage: the filters drop them."""
    rows = small_lake.rows
    assert any(r["DPN_QLF"] == 71 for r in rows["ER_PRS_F"])
    assert any(r["GRG_GHM"].startswith("90") for r in rows["T_MCOaaB"])
    assert any(r["NIR_RET"] != "0" for r in rows["T_MCOaaC"])
    wide = {r["NIR_ANO_17"] for r in rows["T_MCOaaC"] if r["EXE_SOI_DTD"].year >= 2022}
    assert {r["NIR_ANO_17"] for r in valid_stays(rows, date(2022, 1, 1), date(2023, 12, 31))} < wide


def test_linkage_file_restricts_the_cohort(small_lake, tmp_path):
    people = small_lake.rows["IR_BEN_R"][:25]
    csv = "BEN_IDT_ANO,SUBJ\n" + "".join(f"{p['BEN_IDT_ANO']},S{n:03d}\n" for n, p in enumerate(people))
    csv += "UNKNOWNIDENTIFIER,S999\n"
    (tmp_path / "cohort.csv").write_text(csv)
    spec = load_spec(write_spec(tmp_path, "project: diab-study\nyears: [2022, 2023]\n" + TABLES_PART
                                + "include: [{drug: {atc: [A10]}}]\n"
                                + "linkage: {file: cohort.csv, source_id: BEN_IDT_ANO, subject_id: SUBJ}\n"))
    backend = PolarsBackend(small_lake.path)
    linked = read_linkage_file(spec.linkage, backend)
    assert linked.columns == ["BEN_NIR_PSA", "SUBJ"] and linked.height == 25
    got = set(select_persons(backend, spec, linked)["BEN_NIR_PSA"].to_list())
    users = brute(small_lake.rows, dict(kind="drug", codes=["A10"]), date(2022, 1, 1), date(2023, 12, 31))
    assert got == users & {p["BEN_NIR_PSA"] for p in people}
    assert linked["SUBJ"].str.starts_with("S").all()
