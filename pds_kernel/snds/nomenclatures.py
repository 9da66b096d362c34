"""Code lists of the synthetic SNDS generator: drugs, departments, hospitals, diagnoses, acts.

Everything here is *plausible*, not official: ICD-10 and ATC codes are real codes with their real
meaning (so that cohort definitions written for the real SNDS select the right people), but prices,
CIP13 numbers, FINESS numbers, act codes and frequencies are invented. The lists are plain data so
that :mod:`pds_kernel.snds.generator` stays about *how* rows are drawn, not *which* codes exist.

Text may contain Latin-1 accents (``MÉTFORMINE``): the delivery is written in Latin-1, as the SNDS is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

# --------------------------------------------------------------------------------------------
# Drugs (IR_PHA_R). (ATC7, ATC label, presentations as (product name, box price in euros)).


@dataclass(frozen=True)
class Drug:
    cip13: int
    cip7: int
    name: str
    atc7: str
    atc_label: str
    price: float


_DRUG_SPECS: tuple[tuple[str, str, tuple[tuple[str, float], ...]], ...] = (
    # type 2 diabetes
    ("A10BA02", "MÉTFORMINE", (("GLUCOPHAGE 850MG CPR PELLIC", 4.62), ("MÉTFORMINE BIOGARAN 1000MG CPR", 3.91),
                               ("MÉTFORMINE ARROW 500MG CPR", 2.85))),
    ("A10BB09", "GLICLAZIDE", (("DIAMICRON 60MG CPR LM", 6.34), ("GLICLAZIDE MYLAN 30MG CPR LM", 3.12))),
    ("A10BH01", "SITAGLIPTINE", (("JANUVIA 100MG CPR", 29.36),)),
    ("A10BD07", "METFORMINE ET SITAGLIPTINE", (("JANUMET 50MG/1000MG CPR", 31.20),)),
    ("A10BJ02", "LIRAGLUTIDE", (("VICTOZA 6MG/ML SOL INJ STYLO", 85.47),)),
    ("A10BK01", "DAPAGLIFLOZINE", (("FORXIGA 10MG CPR", 36.90),)),
    ("A10AE04", "INSULINE GLARGINE", (("LANTUS 100U/ML SOL INJ STYLO", 54.10), ("ABASAGLAR 100U/ML KWIKPEN", 46.82))),
    ("A10AB05", "INSULINE ASPARTE", (("NOVORAPID FLEXPEN 100U/ML", 33.56),)),
    ("A10AB04", "INSULINE LISPRO", (("HUMALOG KWIKPEN 100U/ML", 34.12),)),
    # hypertension, heart failure
    ("C09AA05", "RAMIPRIL", (("TRIATEC 5MG CPR SÉC", 5.03), ("RAMIPRIL ZENTIVA 10MG CPR", 4.10))),
    ("C09AA04", "PÉRINDOPRIL", (("COVERSYL 5MG CPR", 7.64),)),
    ("C09CA01", "LOSARTAN", (("COZAAR 50MG CPR", 6.02), ("LOSARTAN TEVA 100MG CPR", 5.20))),
    ("C09CA03", "VALSARTAN", (("TAREG 80MG CPR", 6.70),)),
    ("C08CA01", "AMLODIPINE", (("AMLOR 5MG GÉL", 3.72), ("AMLODIPINE SANDOZ 10MG GÉL", 3.40))),
    ("C03CA01", "FUROSÉMIDE", (("LASILIX 40MG CPR", 2.61),)),
    ("C03AA03", "HYDROCHLOROTHIAZIDE", (("ESIDREX 25MG CPR", 2.32),)),
    ("C07AB07", "BISOPROLOL", (("CARDENSIEL 2,5MG CPR", 4.18), ("BISOPROLOL EG 5MG CPR", 3.35))),
    ("C07AB02", "MÉTOPROLOL", (("SELOKEN 100MG CPR", 4.02),)),
    # lipids
    ("C10AA05", "ATORVASTATINE", (("TAHOR 20MG CPR", 10.75), ("ATORVASTATINE TEVA 40MG CPR", 8.95),
                                  ("ATORVASTATINE BIOGARAN 80MG CPR", 9.60))),
    ("C10AA01", "SIMVASTATINE", (("ZOCOR 20MG CPR", 7.90),)),
    ("C10AA07", "ROSUVASTATINE", (("CRESTOR 10MG CPR", 11.20), ("ROSUVASTATINE ARROW 5MG CPR", 8.40))),
    ("C10AA03", "PRAVASTATINE", (("ELISOR 20MG CPR", 9.05),)),
    ("C10AX09", "ÉZÉTIMIBE", (("EZETROL 10MG CPR", 14.50),)),
    # antithrombotics (after a myocardial infarction, atrial fibrillation)
    ("B01AC06", "ACIDE ACÉTYLSALICYLIQUE", (("KARDÉGIC 75MG PDR ORALE", 2.46),)),
    ("B01AC24", "TICAGRÉLOR", (("BRILIQUE 90MG CPR", 55.30),)),
    ("B01AC04", "CLOPIDOGREL", (("PLAVIX 75MG CPR", 12.40), ("CLOPIDOGREL MYLAN 75MG CPR", 9.80))),
    ("B01AF01", "RIVAROXABAN", (("XARELTO 20MG CPR", 68.40),)),
    ("B01AF02", "APIXABAN", (("ELIQUIS 5MG CPR", 67.90),)),
    # pain, infections, digestive, mental health...
    ("N02BE01", "PARACÉTAMOL", (("DOLIPRANE 1000MG CPR", 2.18), ("DAFALGAN 500MG GÉL", 1.95),
                                ("EFFERALGAN 1G CPR EFF", 2.30))),
    ("M01AE01", "IBUPROFÈNE", (("ADVIL 200MG CPR ENROBÉ", 2.05), ("IBUPROFÈNE BIOGARAN 400MG CPR", 2.24))),
    ("N02AX02", "TRAMADOL", (("CONTRAMAL 50MG GÉL", 3.42),)),
    ("N02AJ13", "TRAMADOL ET PARACÉTAMOL", (("IXPRIM 37,5MG/325MG CPR", 4.35),)),
    ("J01CA04", "AMOXICILLINE", (("CLAMOXYL 1G CPR DISPERS", 4.88), ("AMOXICILLINE BIOGARAN 500MG GÉL", 2.70))),
    ("J01CR02", "AMOXICILLINE ET ACIDE CLAVULANIQUE", (("AUGMENTIN 1G/125MG PDR", 6.94),)),
    ("J01FA10", "AZITHROMYCINE", (("ZITHROMAX 250MG CPR", 5.61),)),
    ("J01MA02", "CIPROFLOXACINE", (("CIFLOX 500MG CPR", 6.12),)),
    ("A02BC01", "OMÉPRAZOLE", (("MOPRAL 20MG GÉL", 4.21),)),
    ("A02BC05", "ÉSOMÉPRAZOLE", (("INEXIUM 20MG CPR", 5.02), ("ÉSOMÉPRAZOLE ARROW 40MG CPR", 4.55))),
    ("A02BC02", "PANTOPRAZOLE", (("EUPANTOL 40MG CPR", 4.60),)),
    ("A03AX12", "PHLOROGLUCINOL", (("SPASFON 80MG CPR", 2.47),)),
    ("A07DA03", "LOPÉRAMIDE", (("IMODIUM 2MG GÉL", 2.10),)),
    ("N05BA12", "ALPRAZOLAM", (("XANAX 0,25MG CPR", 1.90),)),
    ("N05CF02", "ZOLPIDEM", (("STILNOX 10MG CPR", 2.40),)),
    ("N06AB10", "ESCITALOPRAM", (("SEROPLEX 10MG CPR", 8.12), ("ESCITALOPRAM EG 20MG CPR", 7.04))),
    ("N06AB06", "SERTRALINE", (("ZOLOFT 50MG GÉL", 6.48),)),
    ("N06AX11", "MIRTAZAPINE", (("NORSET 15MG CPR", 7.11),)),
    ("N05AH04", "QUÉTIAPINE", (("XEROQUEL LP 300MG CPR", 33.50),)),
    ("N06DA02", "DONÉPÉZIL", (("ARICEPT 10MG CPR", 14.20),)),
    ("H03AA01", "LÉVOTHYROXINE SODIQUE", (("LEVOTHYROX 75µG CPR", 2.73), ("L-THYROXIN HENNING 100µG CPR", 2.65))),
    ("R03AC02", "SALBUTAMOL", (("VENTOLINE 100µG SUSP INHAL", 4.12),)),
    ("R03AK06", "SALMÉTÉROL ET FLUTICASONE", (("SERETIDE DISKUS 250/50µG", 33.10),)),
    ("R06AE07", "CÉTIRIZINE", (("ZYRTEC 10MG CPR", 2.19),)),
    ("R06AX27", "DESLORATADINE", (("AERIUS 5MG CPR", 3.08),)),
    ("H02AB06", "PREDNISOLONE", (("SOLUPRED 20MG CPR ORODISP", 3.05),)),
    ("H02AB07", "PREDNISONE", (("CORTANCYL 20MG CPR", 2.95),)),
    ("M04AA01", "ALLOPURINOL", (("ZYLORIC 100MG CPR", 2.80),)),
    ("A11CC05", "COLÉCALCIFÉROL", (("UVEDOSE 100 000UI SOL BUV", 1.79),)),
    ("B03AA07", "SULFATE FERREUX", (("TARDYFERON 80MG CPR", 2.12),)),
    ("N03AX16", "PRÉGABALINE", (("LYRICA 75MG GÉL", 11.40),)),
    ("L02BA01", "TAMOXIFÈNE", (("NOLVADEX 20MG CPR", 8.92),)),
    ("L02BG03", "ANASTROZOLE", (("ARIMIDEX 1MG CPR", 24.60),)),
    ("G04CA02", "TAMSULOSINE", (("JOSIR LP 0,4MG GÉL", 6.90),)),
    ("G03AA07", "LÉVONORGESTREL ET ÉTHINYLESTRADIOL", (("MINIDRIL CPR", 2.50),)),
)


def _ean13(first12: str) -> str:
    """EAN-13 check digit, so that CIP13 codes look (and validate) like real ones."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return first12 + str((10 - total % 10) % 10)


@cache
def drugs() -> tuple[Drug, ...]:
    """The drug referential (~100 presentations), identical for every seed.

    A fixed referential means that two deliveries (two seeds, or a later month) share IR_PHA_R,
    as real monthly deliveries do.
    """
    rng = np.random.default_rng(20_240_601)
    count = sum(len(p) for _, _, p in _DRUG_SPECS)
    codes = rng.choice(np.arange(1_000_000, 9_999_999), size=count, replace=False)
    out, i = [], 0
    for atc7, label, presentations in _DRUG_SPECS:
        for name, price in presentations:
            code7 = int(codes[i])
            out.append(Drug(cip13=int(_ean13(f"34009{code7:07d}")), cip7=3_400_000 + 37 * i,
                            name=name, atc7=atc7, atc_label=label, price=price))
            i += 1
    return tuple(out)


def drug_indices(*atc7: str) -> tuple[int, ...]:
    """Indices (in :func:`drugs`) of every presentation of the given ATC7 codes."""
    wanted = set(atc7)
    found = tuple(i for i, d in enumerate(drugs()) if d.atc7 in wanted)
    if not found:
        raise KeyError(atc7)
    return found


#: Drugs of occasional (acute) prescriptions, by ATC7, with relative weights.
ACUTE_DRUGS: tuple[tuple[str, float], ...] = (
    ("N02BE01", 30), ("M01AE01", 7), ("N02AX02", 2), ("N02AJ13", 2), ("J01CA04", 8), ("J01CR02", 5),
    ("J01FA10", 3), ("J01MA02", 1.5), ("A02BC01", 3), ("A02BC05", 3), ("A02BC02", 2), ("A03AX12", 4),
    ("A07DA03", 2), ("N05BA12", 3), ("N05CF02", 2), ("R03AC02", 2), ("R06AE07", 3), ("R06AX27", 2),
    ("H02AB06", 2), ("H02AB07", 1), ("A11CC05", 3), ("B03AA07", 1.5), ("N03AX16", 1), ("M04AA01", 1),
    ("G03AA07", 2), ("R03AK06", 1),
)

# --------------------------------------------------------------------------------------------
# Geography: departments (code, relative population), hospitals per department.

DEPARTMENTS: tuple[tuple[str, float], ...] = (
    ("75", 2.1), ("13", 2.0), ("59", 2.6), ("69", 1.9), ("92", 1.6), ("93", 1.7), ("33", 1.6),
    ("31", 1.4), ("44", 1.4), ("67", 1.1), ("06", 1.1), ("34", 1.2), ("35", 1.1), ("76", 1.2),
    ("62", 1.5), ("38", 1.3), ("29", 0.9), ("57", 1.0), ("83", 1.1), ("21", 0.5), ("87", 0.4),
    ("63", 0.7), ("45", 0.7), ("37", 0.6), ("64", 0.7), ("80", 0.6), ("2A", 0.16), ("2B", 0.18),
    ("971", 0.38), ("974", 0.86),
)
HOSPITALS_PER_DEPARTMENT = 3
#: Practitioners (or pharmacies, laboratories) per department and kind of act.
PRACTITIONERS_PER_DEPARTMENT = 200


def department_prefix(dept: str) -> str:
    """The 2-character prefix of FINESS and practitioner numbers (``97`` for overseas)."""
    return dept[:2]


def postal_prefix(dept: str) -> str:
    """First characters of a postal code: Corsica is ``20``, overseas departments use 3 digits."""
    if dept in ("2A", "2B"):
        return "20"
    return dept


@cache
def hospitals() -> tuple[str, ...]:
    """FINESS numbers (9 characters) of the hospitals, ``HOSPITALS_PER_DEPARTMENT`` per department."""
    out = []
    for i, (dept, _) in enumerate(DEPARTMENTS):
        for k in range(HOSPITALS_PER_DEPARTMENT):
            body = f"{department_prefix(dept)}{(i * 7919 + k * 104_729) % 10_000_000:07d}"
            out.append(body)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# DCIR acts (ER_PRS_F). Each kind: (name, PRS_NAT_REF, PSE_SPE_COD, share of occasional acts).


@dataclass(frozen=True)
class ActKind:
    name: str
    prs_nat_ref: int
    pse_spe_cod: int
    weight: float


ACT_KINDS: tuple[ActKind, ...] = (
    ActKind("general practitioner", 1111, 1, 34),
    ActKind("specialist", 1112, 3, 11),
    ActKind("pharmacy", 3317, 50, 30),
    ActKind("biology", 3336, 38, 10),
    ActKind("nurse", 3121, 24, 9),
    ActKind("physiotherapy", 3122, 26, 6),
)
GP, SPECIALIST, PHARMACY, BIOLOGY, NURSE, PHYSIO = range(len(ACT_KINDS))
#: Specialities drawn for a specialist visit (cardiology, dermatology, gynaecology, ophthalmology,
#: psychiatry, paediatrics, ENT, endocrinology).
SPECIALITIES: tuple[int, ...] = (3, 5, 7, 15, 33, 12, 11, 42)

#: Biology panels (NABM-like act codes) and their relative weights for occasional prescriptions.
BIOLOGY_PANELS: tuple[tuple[tuple[int, ...], float], ...] = (
    ((1104,), 20),                 # blood count
    ((1104, 1804), 15),            # blood count + CRP
    ((552, 996, 592), 20),         # glucose, lipids, creatinine
    ((1208,), 8),                  # TSH
    ((1104, 1617), 6),             # blood count + ferritin
    ((592, 1610), 6),              # creatinine + potassium
    ((7335,), 4),                  # PSA
    ((4340,), 5),                  # urine culture
)
#: The follow-up panel of a person with diabetes: HbA1c, glucose, creatinine.
DIABETES_PANEL: tuple[int, ...] = (1577, 552, 592)
BIOLOGY_PRICE = 4.59  # euros per biology act, whatever the code: a flat synthetic tariff

# --------------------------------------------------------------------------------------------
# Hospital stays (PMSI MCO). (ICD-10 principal diagnosis, GHM, mean length of stay, weight).

STAY_KINDS: tuple[tuple[str, str, float, float], ...] = (
    ("J189", "04M053", 7.0, 10),   # pneumonia
    ("K359", "06C091", 3.0, 4),    # appendicitis
    ("S720", "08C471", 10.0, 5),   # hip fracture
    ("K802", "07C141", 2.0, 7),    # gallstones
    ("H251", "02C05J", 0.0, 10),   # cataract (day case)
    ("I500", "05M092", 9.0, 6),    # heart failure
    ("I480", "05M081", 4.0, 5),    # atrial fibrillation
    ("I639", "01M304", 11.0, 4),   # stroke
    ("N390", "11M041", 5.0, 5),    # urinary infection
    ("K291", "06M121", 3.0, 4),    # gastritis
    ("M170", "08C241", 6.0, 4),    # knee arthrosis (prosthesis)
    ("R074", "05M201", 1.0, 6),    # chest pain
    ("S060", "01M211", 1.0, 4),    # concussion
)
DELIVERY_STAY = ("O800", "14Z14A", 4.0)      # childbirth: women aged 18 to 42
CHEMOTHERAPY_STAY = ("Z511", "28Z07Z", 0.0)  # chemotherapy session: people with a cancer
MI_DIAGNOSES: tuple[tuple[str, float], ...] = (("I214", 0.55), ("I210", 0.15), ("I211", 0.15), ("I219", 0.15))
MI_GHMS: tuple[str, ...] = ("05K051", "05M041")
TERMINAL_GHM = "23Z02Z"  # palliative care

#: Secondary diagnoses drawn at random for any stay (besides the person's chronic conditions).
OTHER_SECONDARY: tuple[str, ...] = ("F171", "E669", "N183", "J449", "Z921", "D649", "E86", "R296", "Z9911")

# --------------------------------------------------------------------------------------------
# Chronic conditions: ICD-10 codes used as ALD motives, secondary diagnoses and causes of death.

DIABETES_CODES = ("E119", "E112", "E117", "E115")
CANCER_CODES_F = ("C509", "C189", "C349", "C56")
CANCER_CODES_M = ("C61", "C349", "C189", "C679")
ALZHEIMER_CODES = ("G309", "F03")
HEART_FAILURE_CODES = ("I500", "I509")
PSYCHIATRIC_CODES = ("F200", "F322", "F310")
OTHER_DEATH_CAUSES: tuple[tuple[str, float], ...] = (
    ("I64", 8), ("J189", 6), ("J449", 5), ("R99", 6), ("X59", 3), ("C349", 7), ("K746", 2),
    ("N189", 2), ("I251", 7), ("C259", 3), ("W19", 2), ("X70", 1), ("G20", 2), ("E149", 2),
)

#: ALD numbers (IR_IMB_R.IMB_ALD_NUM) of the conditions we model.
ALD_HEART_FAILURE = 5
ALD_DIABETES = 8
ALD_SEVERE_HYPERTENSION = 12  # removed from the list in 2011: such rows all end in 2011
ALD_CORONARY = 13
ALD_ALZHEIMER = 15
ALD_PSYCHIATRIC = 23
ALD_CANCER = 30
ALD_LIST_NATURE = 41  # IMB_ETM_NAT: exoneration "ALD of the list"

#: Codes of a fictitious or provisional NIR (IR_BEN_R.BEN_CDI_NIR other than ``00``).
FICTITIOUS_NIR_CODES: tuple[str, ...] = ("01", "03", "04", "08")

# --------------------------------------------------------------------------------------------
# Medical acts (CCAM, IR_CCAM_V63) and hospital drugs (UCD, NU_UCD_R): real codes of the catalogue.

#: Technical acts of an occasional specialist visit (ER_CAM_F), with their weights and fees.
OUTPATIENT_ACTS: tuple[tuple[str, float, float], ...] = (
    ("DEQP003", 40, 14.26),   # electrocardiogram (12 leads)
    ("ZBQK002", 20, 21.28),   # chest X-ray
    ("ZCQM001", 15, 75.60),   # abdominal ultrasound with Doppler
    ("GLQP012", 10, 40.28),   # spirometry
    ("EBQM001", 15, 60.48),   # cervical arteries Doppler
)
#: The act of every cardiology follow-up after a myocardial infarction.
ECG = "DEQP003"
#: Screening mammography: women aged 50 to 74, in place of the drawn act for some of their visits.
MAMMOGRAPHY = ("QEQK004", 66.42)
#: Acts of a hospital stay by principal diagnosis: ((code, probability), ...) per ICD-10 code.
STAY_ACTS: dict[str, tuple[tuple[str, float], ...]] = {
    "J189": (("ZBQK002", 0.9),),                      # pneumonia: chest X-ray
    "K359": (("HHFA016", 0.95),),                     # appendicitis: laparoscopic appendicectomy
    "S720": (("NEKA020", 0.6), ("ZBQK002", 0.5)),     # hip fracture: hip prosthesis
    "K802": (("HMFC004", 0.9),),                      # gallstones: laparoscopic cholecystectomy
    "I500": (("DEQP003", 0.9), ("DZQM006", 0.7)),     # heart failure: ECG, echocardiography
    "I480": (("DEQP003", 0.95),),                     # atrial fibrillation: ECG
    "I639": (("ACQK001", 0.9),),                      # stroke: brain scan
    "M170": (("NFKA007", 0.9),),                      # knee arthrosis: knee prosthesis
    "R074": (("DEQP003", 0.95),),                     # chest pain: ECG
    "O800": (("JQGD010", 1.0),),                      # delivery
}
#: Acts of a myocardial infarction stay: coronary angiography, then angioplasty for most.
MI_ACTS: tuple[tuple[str, float], ...] = (("DDQH009", 1.0), ("DDAF001", 0.7))
#: Chemotherapy drugs of a chemotherapy session (T_MCOaaMED), by cancer code (13-digit UCD).
CHEMOTHERAPY_UCD: dict[str, str] = {
    "C509": "0000009308254",  # PACLITAXEL TEVA 6 mg/ml
    "C189": "0000009301401",  # OXALIPLATINE 5 mg/ml
    "C349": "0000009239145",  # CARBOPLATINE 10 mg/ml
    "C56": "0000009239145",   # CARBOPLATINE 10 mg/ml
    "C61": "0000009240740",   # CISPLATINE 1 mg/ml
    "C679": "0000009240740",  # CISPLATINE 1 mg/ml
}
#: Bevacizumab, added to a share of colon cancer sessions.
BEVACIZUMAB_UCD = "0000009261104"  # AVASTIN 25 mg/ml
#: Drugs dispensed by a hospital pharmacy to outpatients (retrocession, ER_UCD_F): oral
#: chemotherapy for a person with a cancer, pre-exposure prophylaxis otherwise.
RETROCESSION_UCD = (("0000009354082", 310.0),   # TEMOZOLOMIDE MYLAN 180 mg
                    ("0000009274182", 180.0))   # TRUVADA
