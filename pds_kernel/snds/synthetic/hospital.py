"""Medical acts (CCAM) and hospital drugs (UCD) of the synthetic delivery, in the catalogue tables
ER_CAM_F and ER_UCD_F (details of DCIR claims) and T_MCOaaA and T_MCOaaMED (details of PMSI stays).

Each is drawn from its own random stream, so adding them left the profile's files unchanged:

* ER_CAM_F: a technical act on 40 % of the occasional specialist visits (an ECG, a chest X-ray...;
  a screening mammography for some women aged 50 to 74), an ECG on every cardiology follow-up
  after an infarction;
* ER_UCD_F: a retroceded drug on hospital specialist visits: oral chemotherapy for 80 % of the
  visits of people with a cancer, pre-exposure prophylaxis for 5 % of the others;
* T_MCOaaA: the acts of the stay's principal diagnosis (a prosthesis for a hip fracture, an
  angiography and mostly an angioplasty for an infarction, the delivery...);
* T_MCOaaMED: the chemotherapy of the person's cancer at each session (bevacizumab too for half
  of the colon cancer sessions).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .. import nomenclatures as nom
from .calendar import _rng
from .population import _Population

#: A claim index array and the detail columns of its lines, per table.
Details = dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]


def dcir_details(pop: _Population, care: int, seed: int, person: np.ndarray, kind: np.ndarray,
                 routine: np.ndarray, at_hospital: np.ndarray) -> Details:
    """ER_CAM_F and ER_UCD_F lines of the claims of care month ``care`` (claim indices, columns)."""
    rng_cam, rng_ucd = _rng(seed, "ER_CAM_F", care), _rng(seed, "ER_UCD_F", care)
    e = person.size
    codes = np.array([c for c, _, _ in nom.OUTPATIENT_ACTS])
    fees = np.array([f for _, _, f in nom.OUTPATIENT_ACTS])
    weights = np.array([w for _, w, _ in nom.OUTPATIENT_ACTS])
    act = rng_cam.choice(codes.size, size=e, p=weights / weights.sum())
    draw, screen = rng_cam.random(e), rng_cam.random(e)
    specialist = kind == nom.SPECIALIST
    age = care // 12 - pop.birth_year[person]
    screened = ~routine & (pop.sex[person] == 2) & (age >= 50) & (age <= 74) & (screen < 0.3)
    code = np.where(routine, nom.ECG, np.where(screened, nom.MAMMOGRAPHY[0], codes[act]))
    fee = np.where(routine, fees[0], np.where(screened, nom.MAMMOGRAPHY[1], fees[act]))
    cam = np.flatnonzero(specialist & (routine | (draw < 0.4)))

    cancer = pop.cancer[person]
    draw = rng_ucd.random(e)
    ucd = np.flatnonzero(at_hospital & np.where(cancer, draw < 0.8, draw < 0.05))
    which = np.where(cancer[ucd], 0, 1)
    boxes = 1 + rng_ucd.binomial(2, 0.3, size=ucd.size)
    price = np.array([p for _, p in nom.RETROCESSION_UCD])[which]
    return {
        "ER_CAM_F": (cam, {"CAM_PRS_IDE": code[cam], "CAM_ORD_NUM": np.ones(cam.size, dtype=np.int16),
                           "CAM_ACT_PRU": fee[cam], "CAM_REM_BSE": fee[cam]}),
        "ER_UCD_F": (ucd, {"UCD_UCD_COD": np.array([c for c, _ in nom.RETROCESSION_UCD])[which],
                           "UCD_ORD_NUM": np.ones(ucd.size, dtype=np.int16),
                           "UCD_DLV_NBR": boxes.astype(np.int16), "UCD_FAC_PRU": price,
                           "UCD_TTF_MNT": np.round(price * boxes, 2)}),
    }


def stay_details(pop: _Population, month: int, seed: int, stay: dict[str, np.ndarray],
                 eta: np.ndarray, rsa: np.ndarray) -> dict[str, pl.DataFrame]:
    """T_MCOaaA and T_MCOaaMED rows of the stays of exit month ``month`` (``stay``: the stay
    arrays of :func:`~.pmsi._pmsi_month`; ``eta``/``rsa``: their keys)."""
    rng_act, rng_med = _rng(seed, "T_MCOaaA", month), _rng(seed, "T_MCOaaMED", month)
    s = eta.size
    dgn = stay["dgn"].astype(str)
    which, code = [], []
    draws = rng_act.random((s, 2))
    for diagnosis, acts in nom.STAY_ACTS.items():
        for slot, (act, p) in enumerate(acts):
            hit = np.flatnonzero((dgn == diagnosis) & ~stay["main"] & (draws[:, slot] < p))
            which.append(hit)
            code.append(np.full(hit.size, act))
    for slot, (act, p) in enumerate(nom.MI_ACTS):
        hit = np.flatnonzero(stay["main"] & (draws[:, slot] < p))
        which.append(hit)
        code.append(np.full(hit.size, act))
    a_stay, a_code = _by_stay(which, code)
    acts = pl.DataFrame({
        "_eta": eta[a_stay], "RSA_NUM": rsa[a_stay], "CDC_ACT": a_code,
        "ACV_ACT": np.full(a_stay.size, "1"), "PHA_ACT": np.full(a_stay.size, "0"),
        "NBR_EXE_ACT": np.ones(a_stay.size, dtype=np.int16),
        "ENT_DAT_DEL": (rng_act.random(a_stay.size) * (stay["exit"] - stay["entry"])[a_stay]).astype(np.int32),
    })

    sessions = np.flatnonzero(dgn == nom.CHEMOTHERAPY_STAY[0])
    cancer = stay["rel"].astype(str)[sessions]
    ucd = np.array([nom.CHEMOTHERAPY_UCD.get(c, nom.BEVACIZUMAB_UCD) for c in cancer], dtype="U13")
    bevacizumab = sessions[(cancer == "C189") & (rng_med.random(sessions.size) < 0.5)]
    m_stay, m_code = _by_stay([sessions, bevacizumab], [ucd, np.full(bevacizumab.size, nom.BEVACIZUMAB_UCD)])
    drugs = pl.DataFrame({
        "_eta": eta[m_stay], "RSA_NUM": rsa[m_stay], "UCD_UCD_COD": m_code,
        "UCD_COD": np.array([c[-7:] for c in m_code], dtype="U7"),
        "ADM_NBR": np.round(1 + rng_med.random(m_stay.size) * 3, 1), "DELAI": np.zeros(m_stay.size, dtype=np.int16),
        "ANN": np.full(m_stay.size, month // 12, dtype=np.int16),
        "MOI": np.full(m_stay.size, month % 12 + 1, dtype=np.int8),
    })
    return {"T_MCOaaA": acts, "T_MCOaaMED": drugs}


def _by_stay(which: list[np.ndarray], code: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stay indices and codes, grouped by stay (stable: the order of ``which`` inside a stay)."""
    stays = np.concatenate(which) if which else np.zeros(0, dtype=np.int64)
    codes = np.concatenate(code) if code else np.zeros(0, dtype="U13")
    order = np.argsort(stays, kind="stable")
    return stays[order].astype(np.int64), codes[order].astype(str)
