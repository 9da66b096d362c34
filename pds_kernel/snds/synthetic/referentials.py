"""Snapshot tables: the drug referential, the beneficiaries, the long-term illnesses (ALD)."""

from __future__ import annotations

import numpy as np
import polars as pl

from .. import nomenclatures as nom
from .calendar import _NEVER, MISSING_DAY, _day, _month_first, _rng
from .population import _SHARE_FICTITIOUS_NIR, _Population


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
