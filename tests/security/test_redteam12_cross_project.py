"""Red team 12B: linking a person across two projects through the record numbers the extract copies.

The attacker is a researcher member of two projects (alice, in diab-study and mi-study). Each
project's PERSON_ID is keyed by its own key, so the pseudonyms of one person differ; but a claim's
document number (``DCT_ORD_NUM``, with the other DCIR join keys) and a stay's number (``RSA_NUM``,
with the hospital's ``ETA_NUM``) were copied as the lake holds them. The same claim, or the same
stay, in both extracts then joins the two pseudonyms of its person: every person in both cohorts
was linked across the projects (2 attempts, both got through before the fix: record numbers are now
keyed per project, :mod:`pds_kernel.extract.record_keys`).

The third attempt checks that the keyed numbers still join the tables of one extract (a claim to
its dispensations, a stay to its diagnoses), stay integers, and are the same in a rebuild (it
passed before the fix too: a guard that the fix breaks no analysis and no reproducibility).
"""

from __future__ import annotations

import extract_attacks_support
import polars as pl
import pytest
from extract_attacks_support import SMALL_SPEC

from pds_kernel.extract.build import run_build
from pds_kernel.extract.spec import PERSON_ID, parse_spec

rows = extract_attacks_support.rows  # fixtures: the small lake's rows, the lake and the registry
world = extract_attacks_support.world

SPEC = SMALL_SPEC.replace("  IR_PHA_R: all\n", """  IR_PHA_R: all
  ER_PHA_F: all
  T_MCOaaB: [ETA_NUM, RSA_NUM, DGN_PAL]
  T_MCOaaC: [ETA_NUM, RSA_NUM, EXE_SOI_DTD]
""").replace("ER_PRS_F: [DCT_ORD_NUM,", "ER_PRS_F: [DCT_ORD_NUM, FLX_DIS_DTD, FLX_EMT_NUM, FLX_EMT_ORD, FLX_EMT_TYP, "
             "FLX_TRT_DTD, ORG_CLE_NUM, PRS_ORD_NUM, REM_TYP_AFF,")


def _spec(project: str):
    return parse_spec(SPEC.replace("project: diab-study", f"project: {project}"))


def _table(built, name: str) -> pl.DataFrame:
    path = built.path / f"{name}.parquet"
    files = [path] if path.is_file() else sorted((built.path / name).glob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files])


@pytest.fixture
def two(world):
    return run_build(world, "diab-study", _spec("diab-study"), actor="root"), \
        run_build(world, "mi-study", _spec("mi-study"), actor="root")


@pytest.mark.parametrize("table, keys", [
    ("ER_PRS_F", ["DCT_ORD_NUM", "FLX_DIS_DTD", "FLX_EMT_NUM", "FLX_EMT_ORD", "FLX_EMT_TYP", "FLX_TRT_DTD",
                  "ORG_CLE_NUM", "PRS_ORD_NUM", "REM_TYP_AFF"]),
    ("T_MCOaaC", ["ETA_NUM", "RSA_NUM"]),
])
def test_a_claim_or_a_stay_in_two_extracts_does_not_link_its_persons_pseudonyms(two, table, keys):
    diab, mi = (_table(b, table) for b in two)
    assert diab.height > 5 and mi.height > 5
    linked = (diab.select(*keys, pl.col(PERSON_ID).alias("A"))
              .join(mi.select(*keys, pl.col(PERSON_ID).alias("B")), on=keys).unique(["A", "B"]))
    assert linked.height == 0, f"{linked.height} persons linked across the two projects through {table}"


def test_keyed_record_numbers_still_join_one_extract_and_are_the_same_in_a_rebuild(world, two):
    diab, _ = two
    prs, pha = _table(diab, "ER_PRS_F"), _table(diab, "ER_PHA_F")
    b, c = _table(diab, "T_MCOaaB"), _table(diab, "T_MCOaaC")
    keys = [c for c in pha.columns if c in prs.columns and c != PERSON_ID]
    assert "DCT_ORD_NUM" in keys
    assert pha.join(prs, on=keys, how="anti").height == 0  # every dispensation finds its claim
    joined = pha.join(prs.select(*keys, pl.col(PERSON_ID).alias("P")), on=keys)
    assert joined.height == pha.height and (joined[PERSON_ID] == joined["P"]).all()
    assert b.join(c, on=["ETA_NUM", "RSA_NUM"], how="semi").height == b.height > 0
    assert prs["DCT_ORD_NUM"].dtype == pl.Int64 and prs["DCT_ORD_NUM"].n_unique() == prs.height
    again = run_build(world, "diab-study", _spec("diab-study"), actor="root")
    assert again.manifest["tables"]["ER_PRS_F"] == diab.manifest["tables"]["ER_PRS_F"]
