"""A synthetic external cohort list, and the trusted third party's NIR correspondence that goes with
a synthetic delivery: what tests and the demo use to exercise cohort linkage end to end.

From the beneficiaries of a delivery written by :mod:`.generator` (``IR_BEN_R``):

* the **correspondence** gives every beneficiary key ``BEN_NIR_PSA`` a synthetic but valid NIR (sex,
  year and month of birth of the beneficiary, a department, a commune and an order number, and the
  97-modulus key). It stands for the health insurance's linkage service and is installed in the
  platform's ``paths.ttp`` directory, never in a project;
* the **cohort list** (``NIR`` + the study's columns ``study_id``, ``arm``, ``inclusion``) holds
  ``matched`` people of the delivery, ``unmatched`` people with valid NIRs the correspondence does
  not know, ``duplicated`` people listed twice, and ``invalid`` rows whose NIR has a wrong key, in a
  shuffled order. :class:`CohortList` says what a correct linkage must report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InvalidInput

CORRESPONDENCE_FILE = "nir_correspondence.parquet"


@dataclass(frozen=True)
class CohortList:
    path: Path  #: the CSV a study would upload
    correspondence: Path  #: the trusted third party's NIR -> BEN_NIR_PSA table
    rows: int
    matched: int
    unmatched: int
    duplicates: int  #: rows whose NIR is listed more than once (all of them are dropped)
    invalid: int
    matched_keys: tuple[str, ...]  #: BEN_NIR_PSA of the matched people (ground truth for tests)


def _key(body: str) -> str:
    return f"{97 - int(body) % 97:02d}"


def _nir(sex: int, year: int, month: int, serial: int) -> str:
    """A valid NIR; ``serial`` (below 10^7) makes it unique: department, commune and order."""
    dept, rest = divmod(serial, 100_000)
    commune, order = divmod(rest, 1_000)
    body = f"{sex}{year % 100:02d}{month:02d}{dept % 95 + 1:02d}{commune % 990 + 1:03d}{order + 1:03d}"
    return body + _key(body)


def _beneficiaries(delivery: Path) -> pl.DataFrame:
    files = sorted(Path(delivery).glob("IR_BEN_R*.csv"))
    if not files:
        raise InvalidInput(f"no IR_BEN_R file in {delivery}: generate a delivery first (pds snds generate)")
    table = pl.read_csv(files[0], separator=";", infer_schema=False,
                        columns=["BEN_NIR_PSA", "BEN_SEX_COD", "BEN_NAI_ANN", "BEN_NAI_MOI"])
    return table.unique(subset=["BEN_NIR_PSA"], keep="first").sort("BEN_NIR_PSA")


def write_correspondence(delivery: Path, ttp_dir: Path) -> pl.DataFrame:
    """NIR -> BEN_NIR_PSA for every beneficiary of ``delivery``, written to ``ttp_dir`` (0600)."""
    people = _beneficiaries(delivery)
    nirs = [_nir(int(s) if s in {"1", "2"} else 1, int(y), int(m), i)
            for i, (s, y, m) in enumerate(zip(people["BEN_SEX_COD"], people["BEN_NAI_ANN"], people["BEN_NAI_MOI"]))]
    table = pl.DataFrame({"NIR": nirs, "BEN_NIR_PSA": people["BEN_NIR_PSA"]})
    ttp_dir = Path(ttp_dir)
    ttp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = ttp_dir / CORRESPONDENCE_FILE
    tmp = target.with_name(target.name + ".part")
    table.write_parquet(tmp)
    tmp.chmod(0o600)
    tmp.replace(target)
    return table


def generate_cohort_list(delivery: Path, out_csv: Path, ttp_dir: Path, *, matched: int, unmatched: int,
                         duplicated: int = 2, invalid: int = 3, seed: int = 0) -> CohortList:
    """Write the correspondence and a cohort list of known composition (see the module docstring).

    The match rate is ``matched / rows``."""
    correspondence = write_correspondence(delivery, ttp_dir)
    if min(matched, unmatched, duplicated, invalid) < 0 or matched + duplicated > correspondence.height:
        raise InvalidInput(f"the delivery has {correspondence.height} beneficiaries: ask for fewer matched "
                           "and duplicated people, and no negative count")
    rng = np.random.default_rng(seed)
    picked = rng.choice(correspondence.height, size=matched + duplicated, replace=False)
    known = correspondence[picked]
    fresh = [_nir(int(rng.integers(1, 3)), int(rng.integers(1940, 2005)), int(rng.integers(1, 13)),
                  correspondence.height + i) for i in range(unmatched + invalid)]
    bad = [n[:13] + f"{int(n[13:]) % 97 + 1:02d}" for n in fresh[unmatched:]]  # a wrong key
    nirs = (known["NIR"].to_list()[:matched] + fresh[:unmatched]
            + known["NIR"].to_list()[matched:] * 2 + bad)
    n = len(nirs)
    # a study writes NIRs as it likes: some with spaces
    written = [f"{x[0]} {x[1:3]} {x[3:5]} {x[5:7]} {x[7:10]} {x[10:13]} {x[13:]}" if i % 3 == 0 else x
               for i, x in enumerate(nirs)]
    order = rng.permutation(n)
    frame = pl.DataFrame({
        "NIR": [written[i] for i in order],
        "study_id": [f"S{i + 1:05d}" for i in range(n)],
        "arm": [("A", "B")[int(i) % 2] for i in order],
        "inclusion": [f"2023-{int(i) % 12 + 1:02d}-15" for i in order],
    })
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out_csv)
    return CohortList(out_csv, Path(ttp_dir) / CORRESPONDENCE_FILE, n, matched, unmatched, 2 * duplicated,
                      invalid, tuple(known["BEN_NIR_PSA"].to_list()[:matched]))
