"""PMSI: hospital stays of one exit month (T_MCOaaB, T_MCOaaC, T_MCOaaD), and causes of death."""

from __future__ import annotations

import numpy as np
import polars as pl

from .. import nomenclatures as nom
from .calendar import _NEVER, _day, _month_first, _month_of, _rng
from .dcir import _group_rank
from .hospital import stay_details
from .population import _SHARE_LINKAGE_ERRORS, _Population


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
    return {"T_MCOaaB": b, "T_MCOaaC": c, "T_MCOaaD": d, **stay_details(pop, month, seed, stay, eta, rsa)}


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
