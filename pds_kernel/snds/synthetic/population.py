"""The synthetic population: every person-level fact (conditions, drugs, infarction, death),
drawn once, vectorised, and the rates that drive the claims and stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .. import nomenclatures as nom
from .calendar import _NEVER, _month_first, _month_of, _rng

#: P(reporting delay = d months), d = 0..12. The flux month is the care month + d; the flux date is
#: the first day of that month, so d >= 1. A few percent of claims arrive 6 months late or more.
_DELAY_P = np.array([0, .60, .26, .065, .025, .015, .01, .007, .005, .004, .003, .002, .004])
_DELAY_P = _DELAY_P / _DELAY_P.sum()
_MAX_DELAY = len(_DELAY_P) - 1

# Per age band (0-17, 18-39, 40-59, 60-74, 75+): prevalences, yearly incidences and rates.
_BANDS = np.array([18, 40, 60, 75])
_PREV_DIABETES = np.array([0.001, 0.01, 0.06, 0.14, 0.18])
_PREV_HYPERTENSION = np.array([0.001, 0.04, 0.22, 0.45, 0.60])
_PREV_STATIN = np.array([0.0, 0.01, 0.10, 0.25, 0.28])
_PREV_CANCER = np.array([0.001, 0.005, 0.03, 0.07, 0.09])
_PREV_ALZHEIMER = np.array([0.0, 0.0, 0.001, 0.01, 0.08])
_PREV_HEART_FAILURE = np.array([0.0, 0.001, 0.005, 0.02, 0.07])
_PREV_PSYCHIATRIC = np.array([0.002, 0.02, 0.025, 0.02, 0.015])
_INCIDENCE_MI = np.array([0.0, 0.0003, 0.002, 0.005, 0.009])
_MORTALITY = np.array([0.0003, 0.0006, 0.0025, 0.008, 0.045])
_ACUTE_ACTS_PER_YEAR = np.array([16.0, 18.0, 26.0, 36.0, 44.0])
_STAYS_PER_YEAR = np.array([0.06, 0.09, 0.14, 0.25, 0.45])

_SHARE_FICTITIOUS_NIR = 0.01
_SHARE_SECOND_IDENTIFIER = 0.015
_SHARE_INFORMATION_LINES = 0.03
_SHARE_MISSING_CARE_DATE = 0.0005
_SHARE_MISSING_END_DATE = 0.03
_SHARE_LINKAGE_ERRORS = 0.01
_SHARE_DEATHS_WITHOUT_CAUSE = 0.03

_SLOTS = 18
_POST_MI = slice(14, 18)


# ---------------------------------------------------------------------------------------------
# The population: every person-level fact, drawn once.


@dataclass(frozen=True)
class _Population:
    """Person-level arrays (index = person, 0..n-1), day numbers, month indices; never mutated."""

    n: int
    start: int  # first month index of the window
    end: int  # last month index of the window
    birth_year: np.ndarray
    birth_month: np.ndarray
    sex: np.ndarray
    dept: np.ndarray
    band: np.ndarray
    diabetes: np.ndarray
    hypertension: np.ndarray
    statin: np.ndarray
    cancer: np.ndarray
    alzheimer: np.ndarray
    heart_failure: np.ndarray
    psychiatric: np.ndarray
    diabetes_code: np.ndarray
    cancer_code: np.ndarray
    slots: np.ndarray  # (n, _SLOTS) drug indices, -1 = none
    has_chronic: np.ndarray
    ald: np.ndarray  # 100 % reimbursement
    acute_rate: np.ndarray  # acts per year
    stay_rate: np.ndarray  # stays per year
    chemo: np.ndarray
    gp: np.ndarray
    mi_day: np.ndarray
    mi_exit: np.ndarray
    mi_fatal: np.ndarray
    death_day: np.ndarray
    death_cause: np.ndarray
    terminal_los: np.ndarray  # 0 = no terminal stay
    has_death_record: np.ndarray
    alt_row: np.ndarray  # row index of the second identifier, -1 = none
    switch_day: np.ndarray  # claims before this day use the second identifier
    mi_month: np.ndarray  # month index of the end of the infarction stay (huge when none)
    # row-level (IR_BEN_R rows: n primary rows, then the second identifiers)
    row_person: np.ndarray  # person of each row
    nir: pl.Series  # BEN_NIR_PSA of each row
    org: pl.Series  # ORG_AFF_BEN of each row
    nir_ano: pl.Series  # BEN_NIR_ANO of each person
    idt_ano: pl.Series  # BEN_IDT_ANO of each person
    dept_text: pl.Series  # code of each department


def _identifiers(rng: np.random.Generator, count: int, length: int = 17) -> pl.Series:
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    raw = alphabet[rng.integers(0, len(alphabet), size=(count, length))]
    return pl.Series(np.ascontiguousarray(raw).view(f"S{length}").ravel()).cast(pl.String)


def _pick(rng: np.random.Generator, mask: np.ndarray, choices, p=None) -> np.ndarray:
    """A drug index from ``choices`` where ``mask``, else -1."""
    choices = np.asarray(choices, dtype=np.int16)
    if p is not None:
        p = np.asarray(p, dtype=float) / np.sum(p)
    drawn = rng.choice(choices, size=mask.size, p=p)
    return np.where(mask, drawn, -1).astype(np.int16)


def _build_population(patients: int, years: tuple[int, int], seed: int) -> _Population:
    rng = _rng(seed, "IR_BEN_R")
    n = patients
    start, end = years[0] * 12, years[1] * 12 + 11
    w_first, w_last = int(_month_first(start)), int(_month_first(end + 1)) - 1
    window_days = w_last - w_first + 1
    n_years = years[1] - years[0] + 1

    ages = np.arange(100)
    age_w = np.where(ages < 60, 1.0, np.maximum(0.03, 1 - (ages - 60) / 42))
    age0 = rng.choice(ages, size=n, p=age_w / age_w.sum())
    birth_year = (years[0] - 1 - age0).astype(np.int32)
    birth_month = rng.integers(1, 13, size=n).astype(np.int8)
    sex = np.where(rng.random(n) < 0.485, 1, 2).astype(np.int8)
    dept_w = np.array([w for _, w in nom.DEPARTMENTS])
    dept = rng.choice(len(dept_w), size=n, p=dept_w / dept_w.sum()).astype(np.int16)
    band = np.searchsorted(_BANDS, age0 + n_years / 2, side="right").astype(np.int8)
    female = sex == 2

    def condition(prev: np.ndarray, boost: np.ndarray | None = None) -> np.ndarray:
        p = prev[band] if boost is None else np.minimum(1.0, prev[band] * boost)
        return rng.random(n) < p

    diabetes = condition(_PREV_DIABETES)
    hypertension = condition(_PREV_HYPERTENSION, np.where(diabetes, 1.5, 1.0))
    statin = condition(_PREV_STATIN, np.where(diabetes, 2.0, 1.0))
    cancer = condition(_PREV_CANCER)
    alzheimer = condition(_PREV_ALZHEIMER)
    heart_failure = condition(_PREV_HEART_FAILURE)
    psychiatric = condition(_PREV_PSYCHIATRIC)
    diabetes_code = rng.choice(np.array(nom.DIABETES_CODES), size=n, p=[0.7, 0.1, 0.1, 0.1])
    cancer_code = np.where(female, rng.choice(np.array(nom.CANCER_CODES_F), size=n),
                           rng.choice(np.array(nom.CANCER_CODES_M), size=n))

    # Drugs taken every month (one presentation per slot and person, kept for the whole window).
    d = nom.drug_indices
    slots = np.full((n, _SLOTS), -1, dtype=np.int16)
    r = rng.random((n, _SLOTS))
    slots[:, 0] = _pick(rng, diabetes, d("A10BA02") + d("A10BB09"), [3, 3, 3, 1, 1])
    slots[:, 1] = _pick(rng, diabetes & (r[:, 1] < 0.35), d("A10BH01", "A10BD07", "A10BJ02", "A10BK01"))
    slots[:, 2] = _pick(rng, diabetes & (r[:, 2] < 0.22), d("A10AE04"))
    slots[:, 3] = _pick(rng, (slots[:, 2] >= 0) & (r[:, 3] < 0.4), d("A10AB05", "A10AB04"))
    slots[:, 4] = _pick(rng, hypertension, d("C09AA05", "C09AA04", "C09CA01", "C09CA03", "C08CA01"))
    slots[:, 5] = _pick(rng, hypertension & (r[:, 5] < 0.4), d("C03AA03", "C08CA01", "C07AB07", "C07AB02"))
    slots[:, 6] = _pick(rng, statin, d("C10AA05", "C10AA07", "C10AA01", "C10AA03", "C10AX09"),
                        [4, 4, 4, 3, 3, 2, 2, 1])
    slots[:, 7] = _pick(rng, psychiatric, d("N06AB10", "N06AB06", "N06AX11", "N05AH04"))
    slots[:, 8] = _pick(rng, heart_failure, d("C03CA01"))
    slots[:, 9] = _pick(rng, heart_failure & (slots[:, 5] < 0), d("C07AB07"))
    slots[:, 10] = _pick(rng, alzheimer, d("N06DA02"))
    breast = cancer & (cancer_code == "C509") & (r[:, 11] < 0.6)
    slots[:, 11] = _pick(rng, breast, d("L02BA01", "L02BG03"))
    thyroid = (female & (band >= 2) & (r[:, 12] < 0.08)) | (r[:, 12] > 0.99)
    slots[:, 12] = _pick(rng, thyroid, d("H03AA01"))
    slots[:, 13] = _pick(rng, (band == 4) & (r[:, 13] < 0.08), d("B01AF01", "B01AF02"))
    # after a myocardial infarction (active from the month after the stay)
    slots[:, 14] = _pick(rng, np.ones(n, bool), d("B01AC06"))
    slots[:, 15] = _pick(rng, np.ones(n, bool), d("B01AC24", "B01AC04"), [3, 1, 1])
    slots[:, 16] = _pick(rng, slots[:, 9] < 0, d("C07AB07"))
    slots[:, 17] = _pick(rng, slots[:, 6] < 0, d("C10AA05")[-1:])
    has_chronic = (slots[:, :14] >= 0).any(axis=1)
    any_condition = diabetes | hypertension | cancer | alzheimer | heart_failure | psychiatric

    # Myocardial infarction and death, within the window.
    male = ~female
    mi_incidence = _INCIDENCE_MI[band] * np.where(male, 1.8, 1.0) * np.where(diabetes, 1.6, 1.0) \
        * np.where(hypertension, 1.3, 1.0)
    has_mi = rng.random(n) < 1 - (1 - mi_incidence) ** n_years
    mortality = np.minimum(0.5, _MORTALITY[band] * (1 + 3 * cancer + 2 * heart_failure + 1.5 * alzheimer
                                                    + 0.3 * diabetes))
    dies = rng.random(n) < 1 - (1 - mortality) ** n_years
    death_day = np.where(dies, w_first + rng.integers(0, window_days, size=n), _NEVER).astype(np.int64)
    mi_day = np.where(has_mi, w_first + rng.integers(0, window_days, size=n), _NEVER).astype(np.int64)
    has_mi &= mi_day < death_day
    mi_exit = np.where(has_mi, mi_day + 3 + rng.poisson(3, size=n), _NEVER)
    mi_fatal = has_mi & ((rng.random(n) < 0.08) | (death_day <= mi_exit))
    death_day = np.where(mi_fatal, mi_exit, death_day)
    death_day = np.where(death_day > w_last, _NEVER, death_day)
    mi_day = np.where(has_mi, mi_day, _NEVER)

    # Cause of death: the person's disease when they have one, else a common cause.
    other = np.array([c for c, _ in nom.OTHER_DEATH_CAUSES])
    other_w = np.array([w for _, w in nom.OTHER_DEATH_CAUSES])
    cause = rng.choice(other, size=n, p=other_w / other_w.sum()).astype("U5")
    r = rng.random((n, 5))
    cause = np.where(diabetes & (r[:, 0] < 0.2), "E149", cause)
    cause = np.where(heart_failure & (r[:, 1] < 0.5), "I500", cause)
    cause = np.where(alzheimer & (r[:, 2] < 0.6), rng.choice(np.array(nom.ALZHEIMER_CODES), size=n), cause)
    cause = np.where(cancer & (r[:, 3] < 0.7), cancer_code, cause)
    cause = np.where(mi_fatal, "I219", cause)
    dying = death_day != _NEVER
    terminal_los = np.where(dying & ~mi_fatal & (r[:, 4] < 0.5), 1 + rng.poisson(6, size=n), 0)
    has_death_record = dying & (rng.random(n) >= _SHARE_DEATHS_WITHOUT_CAUSE)

    # A few people have a second (older) identifier: their claims before ``switch_day`` use it.
    has_alt = rng.random(n) < _SHARE_SECOND_IDENTIFIER
    alt_people = np.flatnonzero(has_alt)
    alt_row = np.full(n, -1, dtype=np.int64)
    alt_row[alt_people] = n + np.arange(alt_people.size)
    switch_day = np.where(has_alt, w_first + rng.integers(0, window_days, size=n), -1 << 40)
    row_person = np.concatenate([np.arange(n), alt_people])

    acute_rate = _ACUTE_ACTS_PER_YEAR[band] * np.where(female & (band >= 1) & (band <= 2), 1.15, 1.0) \
        + 6.0 * any_condition
    stay_rate = _STAYS_PER_YEAR[band] + 0.1 * any_condition
    ald = (diabetes & (rng.random(n) < 0.7)) | cancer | alzheimer | heart_failure

    nir = _identifiers(rng, row_person.size)
    dept_text = pl.Series([c for c, _ in nom.DEPARTMENTS], dtype=pl.String)
    org_codes = pl.Series([f"01C{(c + '1')[:3]}000" for c, _ in nom.DEPARTMENTS], dtype=pl.String)
    return _Population(
        n=n, start=start, end=end, birth_year=birth_year, birth_month=birth_month, sex=sex, dept=dept,
        band=band, diabetes=diabetes, hypertension=hypertension, statin=statin, cancer=cancer,
        alzheimer=alzheimer, heart_failure=heart_failure, psychiatric=psychiatric,
        diabetes_code=diabetes_code, cancer_code=cancer_code, slots=slots, has_chronic=has_chronic,
        ald=ald, acute_rate=acute_rate, stay_rate=stay_rate, chemo=cancer & (rng.random(n) < 0.3),
        gp=rng.integers(0, nom.PRACTITIONERS_PER_DEPARTMENT, size=n), mi_day=mi_day, mi_exit=mi_exit,
        mi_fatal=mi_fatal, death_day=death_day, death_cause=cause, terminal_los=terminal_los,
        has_death_record=has_death_record, alt_row=alt_row, switch_day=switch_day,
        mi_month=np.where(has_mi, _month_of(np.where(has_mi, mi_exit, 0)), np.iinfo(np.int64).max),
        row_person=row_person,
        nir=nir, org=org_codes.gather(dept[row_person]), nir_ano=_identifiers(rng, n),
        idt_ano=_identifiers(rng, n), dept_text=dept_text,
    )


# ---------------------------------------------------------------------------------------------
# Writing: internal frames (day numbers, lookup indices) become profile text here, and only here.
