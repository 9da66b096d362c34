"""The synthetic SNDS delivery: coherent, quirky, streamed, reproducible to the byte. No real data.

:func:`generate` writes one CSV per table and month in the delivery profile of
:mod:`pds_kernel.snds.tables` (``;``-separated, header row, no quoting, Latin-1, SAS dates).

How it works, and why:

* **Population first.** Every person (age, sex, department, chronic conditions, the drugs they take,
  a possible myocardial infarction, death) is drawn once, vectorised, from the generator of
  ``(seed, "IR_BEN_R")``. This is the only state kept for the whole run: O(patients).
* **Then month by month.** DCIR claims are drawn per *care* month from the generator of
  ``(seed, "ER_PRS_F", month)``; each claim gets a reporting delay (1 month for most, 6 to 12 months
  for a few percent) that decides its *flux* month, the month of the file it lands in. Claims wait in
  a small buffer until their flux month is complete, then the month is written and forgotten, so
  memory stays bounded whatever the number of months. PMSI stays (by exit month) and causes of
  death (by death month) are drawn from their own ``(seed, table, month)`` generators.
* **Before the window.** Claims of care months before the first year that are reported inside the
  window are drawn too (thinned by the probability of such a late report), so January is not empty
  of late claims; claims reported after the last month are not written, as in a real extraction.
* **Determinism.** Only seeded numpy generators, no clock, no hash randomisation, stable
  concatenation order, polars' deterministic CSV writer: the same arguments give the same bytes.

Coherence guarantees are listed in ``docs/synthetic-data.md`` and checked by ``tests/snds/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InvalidInput
from . import nomenclatures as nom
from .tables import TABLES, file_name

Progress = Callable[[int, int, str], None]

_EPOCH = date(1970, 1, 1).toordinal()
MISSING_DAY = date(1600, 1, 1).toordinal() - _EPOCH  #: the SNDS "missing date", as a day number
_NEVER = np.int32(np.iinfo(np.int32).max)  #: day number of an event that does not happen

#: One stream number per table, so that ``(seed, table, month)`` names an independent generator.
_STREAM = {name: i + 1 for i, name in enumerate(TABLES)}

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


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote: data rows per file name, and the population size."""

    files: dict[str, int]
    patients: int
    years: tuple[int, int] = (0, 0)
    seed: int = 0
    beneficiary_rows: int = 0  #: IR_BEN_R rows: a few people have a second identifier

    def rows(self, table: str) -> int:
        """Total data rows of ``table`` over all its files."""
        prefix = table + "_"
        return sum(n for f, n in self.files.items() if f == f"{table}.csv" or f.startswith(prefix))


# ---------------------------------------------------------------------------------------------
# Calendar helpers: days are int day numbers since 1970-01-01, months are ``year * 12 + month - 1``.


def _day(y: int, m: int, d: int) -> int:
    return date(y, m, d).toordinal() - _EPOCH


def _month_first(months):
    """First day (day number) of each month index."""
    m = np.asarray(months, dtype=np.int64) - 1970 * 12
    return m.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _month_of(days):
    """Month index of each day number."""
    d = np.asarray(days, dtype=np.int64)
    return d.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + 1970 * 12


def _year_of(days):
    return _month_of(days) // 12


def _rng(seed: int, table: str, month: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[table], month])


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


class _DateText:
    """Text of every day of a range in both profile formats, looked up by day number (fast)."""

    def __init__(self, first_year: int, last_year: int):
        self.base = _day(first_year, 1, 1)
        top = _day(last_year, 12, 31)
        days = [date.fromordinal(d + _EPOCH) for d in range(self.base, top + 1)]
        sas = ["01JAN1600:00:00:00"] + [f"{d.day:02d}{_MONTHS[d.month - 1]}{d.year}:00:00:00" for d in days]
        dmy = ["01011600"] + [f"{d.day:02d}{d.month:02d}{d.year}" for d in days]
        self.size = len(days)
        self.text = {"sas_datetime": pl.Series(sas, dtype=pl.String), "dmy": pl.Series(dmy, dtype=pl.String)}

    def render(self, days: pl.Series, fmt: str) -> pl.Series:
        d = days.to_numpy().astype(np.int64)
        idx = np.where(d == MISSING_DAY, 0, d - self.base + 1)
        if idx.size and (idx.min() < 0 or idx.max() > self.size):
            raise ValueError("date outside the generator's calendar")  # a bug, never user input
        return self.text[fmt].gather(idx)


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


class _Writer:
    """Renders internal frames into profile columns and writes each file atomically."""

    def __init__(self, out: Path, pop: _Population, dates: _DateText):
        self.out = out
        self.pop = pop
        self.dates = dates
        self.files: dict[str, int] = {}
        pools = []
        for kind in range(len(nom.ACT_KINDS)):
            for dept, _ in nom.DEPARTMENTS:
                prefix = nom.department_prefix(dept)
                for i in range(nom.PRACTITIONERS_PER_DEPARTMENT):
                    pools.append(f"{prefix}{kind + 1}{i:05d}{(i * 7 + kind) % 10}")
        self.practitioners = pl.Series(pools, dtype=pl.String)
        self.hospitals = pl.Series([None, *nom.hospitals()], dtype=pl.String)  # index 0 = null

    def _strings(self) -> dict[str, tuple[str, pl.Series]]:
        """Profile columns computed from an internal index column: ``column -> (index, lookup)``."""
        p = self.pop
        return {
            "BEN_NIR_PSA": ("_row", p.nir),
            "NIR_ANO_17": ("_row", p.nir),
            "ORG_CLE_NUM": ("_row", p.org),
            "ORG_AFF_BEN": ("_row", p.org),
            "BEN_RES_DPT": ("_dept", p.dept_text),
            "DCD_DPT_COD": ("_dept", p.dept_text),
            "PFS_EXE_NUM": ("_pfs", self.practitioners),
            "ETB_PRE_FIN": ("_etb", self.hospitals),
            "ETA_NUM": ("_eta", self.hospitals),
        }

    def render(self, table: str, frame: pl.DataFrame) -> pl.DataFrame:
        strings = self._strings()
        columns = []
        for col in TABLES[table].columns:
            if col.name in frame.columns:
                s = frame[col.name]
                if col.fmt != "plain":
                    s = self.dates.render(s, col.fmt)
            elif col.name in strings:
                index, lookup = strings[col.name]
                s = lookup.gather(frame[index].to_numpy())
            else:
                raise KeyError(f"{table}.{col.name}")  # a bug in this module
            columns.append(s.alias(col.name))
        return pl.DataFrame(columns)

    def write(self, table: str, frame: pl.DataFrame, month: int | None = None) -> None:
        name = file_name(table, None if month is None else f"{month // 12}{month % 12 + 1:02d}")
        rendered = self.render(table, frame)
        path = self.out / name
        tmp = path.with_name(path.name + ".part")
        options = dict(separator=";", quote_style="never", line_terminator="\n", null_value="",
                       include_header=True)
        if table == "IR_PHA_R":  # the only table with accents: encode to Latin-1 ourselves
            tmp.write_bytes(rendered.write_csv(None, **options).encode("latin-1"))
        else:  # ASCII by construction, so polars' UTF-8 is also Latin-1
            rendered.write_csv(tmp, **options)
        os.replace(tmp, path)
        self.files[name] = rendered.height


# ---------------------------------------------------------------------------------------------
# Snapshot tables: the drug referential, the beneficiaries, the long-term illnesses (ALD).


def _drug_referential() -> pl.DataFrame:
    drugs = nom.drugs()
    return pl.DataFrame({
        "PHA_CIP_C13": [d.cip13 for d in drugs],
        "PHA_PRS_IDE": [d.cip7 for d in drugs],
        "PHA_MED_NOM": [d.name for d in drugs],
        "PHA_ATC_C07": [d.atc7 for d in drugs],
        "PHA_ATC_L07": [d.atc_label for d in drugs],
        "PHA_ATC_C03": [d.atc7[:3] for d in drugs],
    })


def _beneficiaries(pop: _Population, seed: int) -> pl.DataFrame:
    rng = _rng(seed, "IR_BEN_R", 1)
    rows = pop.row_person
    k = rows.size
    w_first = int(_month_first(pop.start))
    fictitious = rng.random(k) < _SHARE_FICTITIOUS_NIR
    cdi = np.where(fictitious, rng.choice(np.array(nom.FICTITIOUS_NIR_CODES), size=k), "00")
    birth_first = _month_first(pop.birth_year * 12 + pop.birth_month - 1)[rows]
    lo = np.maximum(birth_first, _day(1996, 1, 1))
    inserted = lo + (rng.random(k) * (w_first - lo)).astype(np.int64)
    inserted = np.where(rng.random(k) < 0.02, MISSING_DAY, inserted)
    last = int(_month_first(pop.end))
    updated = np.maximum(inserted, w_first) + (rng.random(k) * (last - np.maximum(inserted, w_first))).astype(np.int64)
    is_alt = np.arange(k) >= pop.n
    updated = np.where(is_alt, np.minimum(pop.switch_day[rows], last), updated)
    death = pop.death_day[rows]
    return pl.DataFrame({
        "_row": np.arange(k),
        "BEN_RNG_GEM": np.ones(k, dtype=np.int8),
        "BEN_NIR_ANO": pop.nir_ano.gather(rows),
        "BEN_IDT_ANO": pop.idt_ano.gather(rows),
        "BEN_CDI_NIR": cdi,
        "BEN_NAI_ANN": pop.birth_year[rows],
        "BEN_NAI_MOI": pop.birth_month[rows],
        "BEN_SEX_COD": pop.sex[rows],
        "BEN_DCD_DTE": np.where(death == _NEVER, MISSING_DAY, death),
        "_dept": pop.dept[rows],
        "BEN_RES_COM": [f"{c:03d}" for c in rng.integers(1, 400, size=k)],
        "BEN_DTE_INS": inserted,
        "BEN_DTE_MAJ": updated,
        "MAX_TRT_DTD": np.full(k, last),
    })


def _long_term_illnesses(pop: _Population, seed: int) -> pl.DataFrame:
    """IR_IMB_R: ALD of the chronic conditions, mostly granted before the window."""
    rng = _rng(seed, "IR_IMB_R")
    n = pop.n
    w_first, w_last = int(_month_first(pop.start)), int(_month_first(pop.end + 1)) - 1
    birth_first = _month_first(pop.birth_year * 12 + pop.birth_month - 1)
    lo = np.maximum(birth_first, _day(1995, 1, 1))
    before = lo + (rng.random(n) * (w_first - lo)).astype(np.int64)
    open_ended = rng.random(n) < 0.35
    ends = np.where(open_ended, MISSING_DAY, before + 365 * rng.choice([5, 10], size=n))
    r = rng.random((n, 6))
    parts = []

    def add(mask, number, code, start, end):
        people = np.flatnonzero(mask)
        code = np.broadcast_to(np.asarray(code), (n,))
        parts.append(pl.DataFrame({
            "_row": people, "IMB_ALD_NUM": np.full(people.size, number, dtype=np.int16),
            "IMB_ALD_DTD": np.broadcast_to(start, (n,))[people],
            "IMB_ALD_DTF": np.broadcast_to(end, (n,))[people],
            "MED_MTF_COD": code[people].astype(str),
        }))

    add(pop.diabetes & pop.ald, nom.ALD_DIABETES, pop.diabetes_code, before, ends)
    add(pop.cancer, nom.ALD_CANCER, pop.cancer_code, before, ends)
    add(pop.alzheimer & (r[:, 0] < 0.8), nom.ALD_ALZHEIMER, "G309", before, ends)
    add(pop.heart_failure & (r[:, 1] < 0.6), nom.ALD_HEART_FAILURE, "I500", before, ends)
    add(pop.psychiatric & (r[:, 2] < 0.5),
        nom.ALD_PSYCHIATRIC, rng.choice(np.array(nom.PSYCHIATRIC_CODES), size=n), before, ends)
    # ALD 12 (severe hypertension) was removed from the list in 2011: old rows, all closed then.
    old = pop.hypertension & (pop.birth_year < 1960) & (r[:, 3] < 0.15)
    add(old, nom.ALD_SEVERE_HYPERTENSION, "I10",
        np.maximum(lo, _day(1998, 1, 1) + (r[:, 4] * 4000).astype(np.int64)), _day(2011, 6, 27))
    # coronary disease, granted a few weeks after a myocardial infarction the person survived
    after_mi = np.where(pop.mi_day != _NEVER, pop.mi_exit + rng.integers(15, 60, size=n), _NEVER)
    add((pop.mi_day != _NEVER) & ~pop.mi_fatal & (r[:, 5] < 0.5) & (after_mi <= w_last),
        nom.ALD_CORONARY, "I251", after_mi, MISSING_DAY)

    frame = pl.concat(parts).sort("_row", maintain_order=True)
    m = frame.height
    return frame.with_columns(
        pl.lit(1, dtype=pl.Int8).alias("BEN_RNG_GEM"),
        pl.Series("IMB_ETM_NAT", np.full(m, nom.ALD_LIST_NATURE, dtype=np.int16)),
    )


# ---------------------------------------------------------------------------------------------
# DCIR: claims of one care month, with their pharmacy and biology details.


@cache
def _drug_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(box price, CIP13) per drug index, and the occasional drugs with their probabilities."""
    drugs = nom.drugs()
    price = np.array([d.price for d in drugs])
    cip = np.array([d.cip13 for d in drugs], dtype=np.int64)
    groups = [nom.drug_indices(atc) for atc, _ in nom.ACUTE_DRUGS]
    acute = np.array([i for g in groups for i in g])
    weight = np.array([w / len(g) for (_, w), g in zip(nom.ACUTE_DRUGS, groups) for _ in g])
    return price, cip, acute, weight / weight.sum()


def _group_rank(groups: np.ndarray) -> np.ndarray:
    """1, 2, 3... within each run of equal values (rows of one claim are contiguous)."""
    if groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(groups.size)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    return idx - np.maximum.accumulate(np.where(starts, idx, 0)) + 1


def _dcir_month(pop: _Population, care: int, seed: int) -> dict[str, tuple[pl.DataFrame, np.ndarray]]:
    """ER_PRS_F, ER_PHA_F and ER_BIO_F rows of care month ``care``, each with its flux months.

    Rows come sorted by flux month, so that each flux month is one slice of the frame.
    """
    rng = _rng(seed, "ER_PRS_F", care)
    rng_pha, rng_bio = _rng(seed, "ER_PHA_F", care), _rng(seed, "ER_BIO_F", care)
    n = pop.n
    first = int(_month_first(care))
    ndays = int(_month_first(care + 1)) - first
    probs = _DELAY_P.copy()
    lateness = pop.start - care  # > 0: before the window; only claims reported inside it are kept
    if lateness > 0:
        probs[:lateness] = 0.0
    weight = probs.sum()
    probs /= weight
    avail = np.clip(pop.death_day - first + 1, 0, ndays)
    frac = avail / ndays * weight

    # The claims of the month: occasional acts, monthly chronic prescriptions, follow-ups.
    n_acute = rng.poisson(pop.acute_rate / 12 * frac)
    post_mi = ~pop.mi_fatal & (pop.mi_month < care)
    chronic = (avail > 0) & (pop.has_chronic | post_mi) & (rng.random(n) < 0.9 * frac)
    diabetes_bio = pop.diabetes & (rng.random(n) < 0.3 * frac)
    cardiology = post_mi & (rng.random(n) < 0.2 * frac)
    kind_w = np.array([k.weight for k in nom.ACT_KINDS])
    n_occasional = int(n_acute.sum())
    person = np.concatenate([np.repeat(np.arange(n), n_acute), np.flatnonzero(chronic),
                             np.flatnonzero(diabetes_bio), np.flatnonzero(cardiology)])
    kind = np.concatenate([rng.choice(len(kind_w), size=n_occasional, p=kind_w / kind_w.sum()),
                           np.full(int(chronic.sum()), nom.PHARMACY), np.full(int(diabetes_bio.sum()), nom.BIOLOGY),
                           np.full(int(cardiology.sum()), nom.SPECIALIST)]).astype(np.int8)
    routine = np.concatenate([np.zeros(n_occasional, bool), np.ones(person.size - n_occasional, bool)])
    e = person.size
    care_day = first + (rng.random(e) * avail[person]).astype(np.int64)
    delay = rng.choice(len(probs), size=e, p=probs)
    flux = care + delay
    keep = np.flatnonzero(flux <= pop.end)
    keep = keep[np.argsort(delay[keep], kind="stable")]  # claims in flux order: files are slices
    person, kind, routine, care_day, delay, flux = (a[keep] for a in (person, kind, routine, care_day, delay, flux))
    e = person.size
    flux_day = _month_first(flux)

    # Pharmacy lines: the person's chronic drugs, or one to three occasional drugs.
    price, cip, acute_idx, acute_p = _drug_arrays()
    chronic_claims = np.flatnonzero(routine & (kind == nom.PHARMACY))
    held = pop.slots[person[chronic_claims]].copy()
    held[:, _POST_MI] = np.where(post_mi[person[chronic_claims]][:, None], held[:, _POST_MI], -1)
    line, slot = np.nonzero(held >= 0)
    acute_claims = np.flatnonzero(~routine & (kind == nom.PHARMACY))
    per_claim = 1 + rng_pha.binomial(2, 0.35, size=acute_claims.size)
    pha_claim = np.concatenate([chronic_claims[line], np.repeat(acute_claims, per_claim)])
    pha_drug = np.concatenate([held[line, slot], rng_pha.choice(acute_idx, size=int(per_claim.sum()), p=acute_p)])
    by_claim = np.argsort(pha_claim, kind="stable")
    pha_claim, pha_drug = pha_claim[by_claim], pha_drug[by_claim]
    pha_qsn = np.where(rng_pha.random(pha_claim.size) < 0.1, 3, 1)
    pha_amount = np.bincount(pha_claim, weights=pha_qsn * price[pha_drug], minlength=e)
    pha_boxes = np.bincount(pha_claim, weights=pha_qsn, minlength=e)

    # Biology lines: a panel of acts per claim.
    panels = [nom.DIABETES_PANEL] + [p for p, _ in nom.BIOLOGY_PANELS]
    panel_w = np.array([w for _, w in nom.BIOLOGY_PANELS])
    flat = np.array([c for p in panels for c in p])
    offset = np.cumsum([0] + [len(p) for p in panels])[:-1]
    length = np.array([len(p) for p in panels])
    bio_claims = np.flatnonzero(kind == nom.BIOLOGY)
    panel = np.where(routine[bio_claims], 0,
                     1 + rng_bio.choice(panel_w.size, size=bio_claims.size, p=panel_w / panel_w.sum()))
    bio_claim = np.repeat(bio_claims, length[panel])
    bio_rank = _group_rank(bio_claim)
    bio_code = flat[np.repeat(offset[panel], length[panel]) + bio_rank - 1]
    bio_count = np.bincount(bio_claim, minlength=e)

    # The claim lines (ER_PRS_F).
    acts = nom.ACT_KINDS
    quantity = np.ones(e)
    paramedical = (kind == nom.NURSE) | (kind == nom.PHYSIO)
    quantity = np.where(paramedical, 1 + rng.poisson(4, size=e), quantity)
    quantity = np.where(kind == nom.PHARMACY, pha_boxes, quantity)
    quantity = np.where(kind == nom.BIOLOGY, bio_count, quantity)
    gp_fee = 25.0 if care < 2023 * 12 + 11 else 26.5
    fee = np.array([gp_fee, 0.0, 0.0, 0.0, 3.15, 16.13])[kind] * quantity
    fee = np.where(kind == nom.SPECIALIST, rng.choice([30.0, 50.0, 56.5], size=e), fee)
    fee = np.where(kind == nom.PHARMACY, pha_amount, fee)
    fee = np.where(kind == nom.BIOLOGY, bio_count * nom.BIOLOGY_PRICE, fee)
    rate = np.where(pop.ald[person], 1.0, np.array([0.7, 0.7, 0.65, 0.6, 0.6, 0.6])[kind])
    speciality = np.array([a.pse_spe_cod for a in acts])[kind]
    speciality = np.where((kind == nom.SPECIALIST) & ~routine,
                          rng.choice(np.array(nom.SPECIALITIES), size=e), speciality)
    dept = pop.dept[person].astype(np.int64)
    pool = nom.PRACTITIONERS_PER_DEPARTMENT
    who = np.where(kind == nom.GP, pop.gp[person], rng.integers(0, pool, size=e))
    at_hospital = (kind == nom.SPECIALIST) & (rng.random(e) < 0.12)
    hospital = dept * nom.HOSPITALS_PER_DEPARTMENT + rng.integers(0, nom.HOSPITALS_PER_DEPARTMENT, size=e)
    row = np.where((pop.alt_row[person] >= 0) & (care_day < pop.switch_day[person]), pop.alt_row[person], person)

    soi_dtd = np.where(rng.random(e) < _SHARE_MISSING_CARE_DATE, MISSING_DAY, care_day)
    last_possible = np.minimum(pop.death_day[person], flux_day - 1)
    soi_dtf = np.where(paramedical, np.minimum(care_day + rng.poisson(5, size=e), last_possible), care_day)
    soi_dtf = np.where(rng.random(e) < _SHARE_MISSING_END_DATE, MISSING_DAY, soi_dtf)
    trt = flux_day - 1 - (rng.random(e) * (flux_day - 1 - care_day)).astype(np.int64)

    keys = {
        "DCT_ORD_NUM": np.arange(1, e + 1, dtype=np.int64),
        "FLX_DIS_DTD": flux_day,
        "FLX_EMT_NUM": (dept % 30 + 1).astype(np.int16),
        "FLX_EMT_ORD": delay.astype(np.int16),
        "FLX_EMT_TYP": rng.choice(np.array([1, 2, 3], dtype=np.int8), size=e, p=[0.15, 0.8, 0.05]),
        "FLX_TRT_DTD": trt,
        "_row": row,
        "PRS_ORD_NUM": np.ones(e, dtype=np.int16),
        "REM_TYP_AFF": np.where(rng.random(e) < 0.97, 1, 2).astype(np.int16),
    }
    prs = pl.DataFrame({
        **keys,
        "BEN_RNG_GEM": np.ones(e, dtype=np.int8),
        "BEN_SEX_COD": pop.sex[person],
        "BEN_NAI_ANN": pop.birth_year[person],
        "_dept": dept,
        "EXE_SOI_DTD": soi_dtd,
        "EXE_SOI_DTF": soi_dtf,
        "PRS_NAT_REF": np.array([a.prs_nat_ref for a in acts], dtype=np.int16)[kind],
        "PRS_ACT_QTE": quantity.astype(np.float64),
        "PRS_PAI_MNT": np.round(fee * rate, 2),
        "BSE_REM_MNT": np.round(fee, 2),
        "DPN_QLF": np.zeros(e, dtype=np.int16),
        "PSE_SPE_COD": speciality.astype(np.int16),
        "_pfs": (kind.astype(np.int64) * len(nom.DEPARTMENTS) + dept) * pool + who,
        "_etb": np.where(at_hospital, hospital + 1, 0),
    })
    # Information lines (DPN_QLF = 71): copies of a paid line, for information only, right after it.
    information = np.flatnonzero(rng.random(e) < _SHARE_INFORMATION_LINES)
    lines = np.concatenate([np.arange(e), information])
    order = np.argsort(lines, kind="stable")
    is_info = (order >= e)
    lines = lines[order]
    prs = prs[lines].with_columns(
        pl.Series("PRS_ORD_NUM", np.where(is_info, 2, 1).astype(np.int16)),
        pl.Series("DPN_QLF", np.where(is_info, 71, 0).astype(np.int16)),
    )

    def detail(claims: np.ndarray, extra: dict) -> pl.DataFrame:
        return pl.DataFrame({**{k: v[claims] for k, v in keys.items()}, **extra})

    pha = detail(pha_claim, {
        "PHA_PRS_C13": cip[pha_drug],
        "PHA_ACT_QSN": pha_qsn.astype(np.int16),
        "PHA_ACT_PRU": price[pha_drug],
        "PHA_ORD_NUM": _group_rank(pha_claim).astype(np.int16),
    })
    bio = detail(bio_claim, {
        "BIO_PRS_IDE": bio_code.astype(np.int16),
        "BIO_ACT_QSN": np.ones(bio_claim.size, dtype=np.int16),
        "BIO_ORD_NUM": bio_rank.astype(np.int16),
    })
    return {"ER_PRS_F": (prs, flux[lines]), "ER_PHA_F": (pha, flux[pha_claim]), "ER_BIO_F": (bio, flux[bio_claim])}


# ---------------------------------------------------------------------------------------------
# PMSI: hospital stays of one exit month (T_MCOaaB, T_MCOaaC, T_MCOaaD).


def _pmsi_month(pop: _Population, month: int, seed: int) -> dict[str, pl.DataFrame]:
    rng = _rng(seed, "T_MCOaaB", month)
    n = pop.n
    first = int(_month_first(month))
    ndays = int(_month_first(month + 1)) - first
    before_death = np.clip(pop.death_day - first, 0, ndays)  # ordinary stays end before death day

    # ordinary stays
    count = rng.poisson(pop.stay_rate / 12 * before_death / ndays)
    people = np.repeat(np.arange(n), count)
    kinds = nom.STAY_KINDS
    kind_w = np.array([k[3] for k in kinds])
    k = rng.choice(len(kinds), size=people.size, p=kind_w / kind_w.sum())
    dgn = np.array([s[0] for s in kinds])[k].astype("U6")
    ghm = np.array([s[1] for s in kinds])[k].astype("U6")
    mean_los = np.array([s[2] for s in kinds])[k]
    age = (month // 12) - pop.birth_year[people]
    delivery = (pop.sex[people] == 2) & (age >= 18) & (age <= 42) & (rng.random(people.size) < 0.25)
    dgn = np.where(delivery, nom.DELIVERY_STAY[0], dgn)
    ghm = np.where(delivery, nom.DELIVERY_STAY[1], ghm)
    mean_los = np.where(delivery, nom.DELIVERY_STAY[2], mean_los)
    los = np.where(mean_los == 0, (rng.random(people.size) < 0.1).astype(np.int64), rng.poisson(mean_los))
    exit_ = first + (rng.random(people.size) * before_death[people]).astype(np.int64)
    ordinary = dict(person=people, dgn=dgn, rel=np.full(people.size, ""), ghm=ghm, entry=exit_ - los,
                    exit=exit_, end_mode=rng.choice(np.array(["8", "7", "6"]), size=people.size, p=[.9, .07, .03]),
                    start_mode=rng.choice(np.array(["8", "7", "6"]), size=people.size, p=[.85, .1, .05]),
                    main=np.zeros(people.size, bool))

    # chemotherapy sessions of people treated for a cancer (day cases)
    chemo = np.flatnonzero(pop.chemo & (before_death > 0) & (rng.random(n) < 0.5))
    day = first + (rng.random(chemo.size) * before_death[chemo]).astype(np.int64)
    sessions = dict(person=chemo, dgn=np.full(chemo.size, nom.CHEMOTHERAPY_STAY[0]),
                    rel=pop.cancer_code[chemo], ghm=np.full(chemo.size, nom.CHEMOTHERAPY_STAY[1]),
                    entry=day, exit=day, end_mode=np.full(chemo.size, "8"), start_mode=np.full(chemo.size, "8"),
                    main=np.zeros(chemo.size, bool))

    # myocardial infarctions whose stay ends this month (the main hospital of the department)
    mi = np.flatnonzero((pop.mi_day != _NEVER) & (pop.mi_month == month))
    mi_codes = np.array([c for c, _ in nom.MI_DIAGNOSES])
    infarctions = dict(person=mi, dgn=rng.choice(mi_codes, size=mi.size, p=[w for _, w in nom.MI_DIAGNOSES]),
                       rel=np.full(mi.size, ""), ghm=rng.choice(np.array(nom.MI_GHMS), size=mi.size),
                       entry=pop.mi_day[mi], exit=pop.mi_exit[mi],
                       end_mode=np.where(pop.mi_fatal[mi], "9", "8"), start_mode=np.full(mi.size, "8"),
                       main=np.ones(mi.size, bool))

    # the last stay of people who die in hospital
    dying = np.flatnonzero((pop.terminal_los > 0) & (pop.death_day != _NEVER) & (_month_of(pop.death_day) == month))
    terminal = dict(person=dying, dgn=pop.death_cause[dying], rel=np.full(dying.size, ""),
                    ghm=np.full(dying.size, nom.TERMINAL_GHM), entry=pop.death_day[dying] - pop.terminal_los[dying],
                    exit=pop.death_day[dying], end_mode=np.full(dying.size, "9"), start_mode=np.full(dying.size, "8"),
                    main=np.zeros(dying.size, bool))

    parts = (ordinary, sessions, infarctions, terminal)
    stay = {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in ordinary}
    s = stay["person"].size
    person = stay["person"]
    dept = pop.dept[person].astype(np.int64)
    eta = 1 + dept * nom.HOSPITALS_PER_DEPARTMENT + np.where(
        stay["main"], 0, rng.integers(0, nom.HOSPITALS_PER_DEPARTMENT, size=s))
    rsa = (month // 12 * 100 + month % 12 + 1) * 10**7 + np.arange(1, s + 1, dtype=np.int64)
    entry_month = _month_of(stay["entry"])
    age = entry_month // 12 - pop.birth_year[person] - (entry_month % 12 + 1 < pop.birth_month[person])
    dept_codes = [c for c, _ in nom.DEPARTMENTS]
    postal = np.array([nom.postal_prefix(c) for c in dept_codes])[dept]
    town = rng.integers(1, 1000, size=s)
    bdi = [f"{p}{t:03d}"[:5] for p, t in zip(postal, town)]
    exit_month = _month_of(stay["exit"])
    rel = pl.DataFrame({"r": stay["rel"].astype(str)}).select(
        pl.when(pl.col("r") != "").then(pl.col("r"))).to_series()
    b = pl.DataFrame({
        "_eta": eta, "RSA_NUM": rsa,
        "DGN_PAL": stay["dgn"].astype(str), "DGN_REL": rel,
        "GRG_GHM": stay["ghm"].astype(str), "SEJ_NBJ": (stay["exit"] - stay["entry"]).astype(np.int32),
        "AGE_ANN": age.astype(np.int16), "COD_SEX": pop.sex[person].astype(str),
        "SOR_ANN": (exit_month // 12).astype(np.int16), "SOR_MOI": (exit_month % 12 + 1).astype(np.int8),
        "ENT_MOD": stay["start_mode"].astype(str), "SOR_MOD": stay["end_mode"].astype(str),
        "BDI_DEP": [nom.department_prefix(c) for c in np.array(dept_codes)[dept]], "BDI_COD": bdi,
    })

    # linkage table: the person's identifier, and return codes ("0" = linkage checks passed)
    ret = np.full((s, 3), "0", dtype="U1")
    wrong = np.flatnonzero(rng.random(s) < _SHARE_LINKAGE_ERRORS)
    ret[wrong, rng.integers(0, 3, size=wrong.size)] = "1"
    c = pl.DataFrame({
        "_eta": eta, "RSA_NUM": rsa, "_row": person,
        "NIR_RET": ret[:, 0], "NAI_RET": ret[:, 1], "SEX_RET": ret[:, 2],
        "SEJ_RET": np.full(s, "0"), "FHO_RET": np.full(s, "0"), "PMS_RET": np.full(s, "0"),
        "DAT_RET": np.full(s, "0"),
        "ENT_DAT": stay["entry"], "SOR_DAT": stay["exit"],
        "EXE_SOI_DTD": stay["entry"], "EXE_SOI_DTF": stay["exit"],
        "SEJ_NUM": (stay["entry"] - _day(2000, 1, 1)).astype(np.int32),
    })

    # secondary diagnoses: the person's chronic conditions, and a few others
    which, code = [], []
    for mask, value in ((pop.diabetes, pop.diabetes_code), (pop.hypertension, "I10"),
                        (pop.statin, "E785"), (pop.heart_failure, "I500"), (pop.alzheimer, "G309")):
        has = np.flatnonzero(mask[person])
        which.append(has)
        code.append(np.broadcast_to(np.asarray(value), (pop.n,))[person[has]].astype("U6"))
    extra = rng.binomial(2, 0.3, size=s)
    which.append(np.repeat(np.arange(s), extra))
    code.append(rng.choice(np.array(nom.OTHER_SECONDARY), size=int(extra.sum())).astype("U6"))
    which_all = np.concatenate(which)
    order = np.argsort(which_all, kind="stable")
    stay_of = which_all[order]
    d = pl.DataFrame({
        "_eta": eta[stay_of], "RSA_NUM": rsa[stay_of],
        "ASS_DGN": np.concatenate(code)[order].astype(str),
        "DGN_ASS_NUM": _group_rank(stay_of).astype(np.int16),
    })
    return {"T_MCOaaB": b, "T_MCOaaC": c, "T_MCOaaD": d}


def _deaths_month(pop: _Population, month: int) -> pl.DataFrame:
    """KI_CCI_R: causes of death of the people who die this month (a few have no record)."""
    people = np.flatnonzero(pop.has_death_record & (pop.death_day != _NEVER)
                            & (_month_of(pop.death_day) == month))
    return pl.DataFrame({
        "BEN_IDT_ANO": pop.idt_ano.gather(people),
        "BEN_NIR_ANO": pop.nir_ano.gather(people),
        "BEN_DCD_DTE": pop.death_day[people],
        "DCD_CIM_COD": pop.death_cause[people].astype(str),
        "BEN_NAI_ANN": pop.birth_year[people],
        "BEN_SEX_COD": pop.sex[people],
        "_dept": pop.dept[people],
    })


# ---------------------------------------------------------------------------------------------
# The entry point.


def check_arguments(patients: int, years: tuple[int, int], seed: int) -> None:
    """Refuse arguments the generator cannot honour, with one sentence for the user."""
    if not isinstance(patients, int) or patients < 1:
        raise InvalidInput(f"patients must be a positive integer, got {patients!r}")
    if patients > 50_000_000:
        raise InvalidInput(f"at most 50,000,000 patients, got {patients:,}")
    start, end = years
    if not (2000 <= start <= end <= 2100):
        raise InvalidInput(f"years must be a range like 2022-2023 within 2000-2100, got {start}-{end}")
    if not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")


def generate(out: Path, *, patients: int, years: tuple[int, int], seed: int,
             progress: Progress | None = None) -> GenerationSummary:
    """Write a synthetic SNDS delivery of ``patients`` people over ``years`` into ``out``.

    Existing delivery files of the same names are replaced (each file is written to ``.part`` and
    renamed, so a reader never sees half a file); other files in ``out`` are left alone.
    ``progress(done, total, what)`` is called after every step.
    """
    check_arguments(patients, years, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first_care = years[0] * 12 - _MAX_DELAY
    last_month = years[1] * 12 + 11
    total = 1 + (last_month - first_care)
    report = progress or (lambda done, total, what: None)

    pop = _build_population(patients, years, seed)
    writer = _Writer(out, pop, _DateText(1990, years[1] + 11))
    writer.write("IR_PHA_R", _drug_referential())
    writer.write("IR_BEN_R", _beneficiaries(pop, seed))
    writer.write("IR_IMB_R", _long_term_illnesses(pop, seed))
    report(1, total, "referentials")

    pending: dict[int, dict[str, list[pl.DataFrame]]] = {}
    dcir = ("ER_PRS_F", "ER_PHA_F", "ER_BIO_F")
    for step, care in enumerate(range(first_care, last_month), start=2):
        drawn = _dcir_month(pop, care, seed)
        for table, (frame, flux) in drawn.items():
            months, starts = np.unique(flux, return_index=True)
            ends = np.r_[starts[1:], flux.size]
            for flux_month, a, b in zip(months, starts, ends):
                # the next month is written now: a view is enough; later months are copied, so
                # that the month's frame is freed at the end of this step (bounded memory)
                part = frame.slice(a, b - a) if flux_month == care + 1 else frame[np.arange(a, b)]
                pending.setdefault(int(flux_month), {t: [] for t in dcir})[table].append(part)
        month = care + 1  # every claim of flux month ``month`` has a care month before it: complete
        if month >= years[0] * 12:
            ready = pending.pop(month, {t: [] for t in dcir})
            for table in dcir:
                parts = ready[table]
                frame = pl.concat(parts) if parts else drawn[table][0].clear()  # header only
                writer.write(table, frame, month)
            for table, frame in _pmsi_month(pop, month, seed).items():
                writer.write(table, frame, month)
            writer.write("KI_CCI_R", _deaths_month(pop, month), month)
        report(step, total, f"{month // 12}-{month % 12 + 1:02d}")
    return GenerationSummary(files=dict(writer.files), patients=patients, years=tuple(years), seed=seed,
                             beneficiary_rows=int(pop.row_person.size))

