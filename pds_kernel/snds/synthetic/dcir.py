"""DCIR: claims of one care month, with their pharmacy and biology details."""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

from .. import nomenclatures as nom
from .calendar import MISSING_DAY, _month_first, _rng
from .hospital import dcir_details
from .population import (
    _DELAY_P,
    _POST_MI,
    _SHARE_INFORMATION_LINES,
    _SHARE_MISSING_CARE_DATE,
    _SHARE_MISSING_END_DATE,
    _Population,
)


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
    """ER_PRS_F, ER_PHA_F, ER_BIO_F (and ER_CAM_F, ER_UCD_F: :mod:`.hospital`) rows of care month
    ``care``, each with its flux months.

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
    drawn = {"ER_PRS_F": (prs, flux[lines]), "ER_PHA_F": (pha, flux[pha_claim]), "ER_BIO_F": (bio, flux[bio_claim])}
    for table, (claims, extra) in dcir_details(pop, care, seed, person, kind, routine, at_hospital).items():
        drawn[table] = (detail(claims, extra), flux[claims])
    return drawn


# ---------------------------------------------------------------------------------------------
# PMSI: hospital stays of one exit month (T_MCOaaB, T_MCOaaC, T_MCOaaD).
