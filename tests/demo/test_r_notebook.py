"""The R example notebook (03) runs unchanged with the R kernel in a real sandbox on a demo extract.

The demo's own steps make a one-year extract of the diabetes cohort; the notebook is executed
through ``pds sandbox exec`` in alice's ``diabetes-t2`` sandbox (IRkernel from Debian, the
platform's R site profile, tables read offline through ``pds_read``). The test then recomputes,
outside the sandbox and with polars, the table the notebook saved: persons, first hospital stays
after entry (censored at death or the end of the data) and mean age, by sex."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from demo_support import build_demo, execute_example

from pds_kernel.extract.layout import read_table

pytestmark = [pytest.mark.slow, pytest.mark.functional,
              pytest.mark.skipif(shutil.which("R") is None, reason="R is not installed (make system-deps)")]

NOTEBOOK = "03-r-hospital-stays-survival.ipynb"
PROJECT, USER = "diabetes-t2", "alice"


@pytest.fixture(scope="module")
def demo_extract(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("r") / "demo", patients=800, years=(2023, 2023), seed=5)


def expected_by_sex(extract: Path) -> list[dict]:
    """The notebook's table, recomputed with polars from the extract's Parquet files."""
    ben = read_table(extract, "IR_BEN_R")
    prs = read_table(extract, "ER_PRS_F")
    stays = read_table(extract, "T_MCOaaC").select("PERSON_ID", "EXE_SOI_DTD")
    deaths = read_table(extract, "KI_CCI_R").select("PERSON_ID", "BEN_DCD_DTE")
    end_of_data = prs["EXE_SOI_DTD"].max()
    entry = prs.group_by("PERSON_ID").agg(pl.col("EXE_SOI_DTD").min().alias("entry"))
    first = (stays.join(entry, on="PERSON_ID").filter(pl.col("EXE_SOI_DTD") >= pl.col("entry"))
             .group_by("PERSON_ID").agg(pl.col("EXE_SOI_DTD").min().alias("stay")))
    cohort = (ben.join(entry, on="PERSON_ID").join(first, on="PERSON_ID", how="left")
              .join(deaths, on="PERSON_ID", how="left")
              .with_columns(end=pl.min_horizontal(pl.lit(end_of_data), pl.col("BEN_DCD_DTE")))
              .with_columns(event=(pl.col("stay").is_not_null() & (pl.col("stay") <= pl.col("end"))).cast(pl.Int64),
                            age=pl.col("entry").dt.year() - pl.col("BEN_NAI_ANN").cast(pl.Int32),
                            sex=pl.col("BEN_SEX_COD").replace_strict({1: "men", 2: "women"})))
    table = (cohort.group_by("sex").agg(persons=pl.len(), stays=pl.col("event").sum(),
                                         mean_age=pl.col("age").mean().round(1))
             .filter(pl.col("persons") >= 10).sort("sex"))
    return table.to_dicts()


def test_r_notebook_runs_in_the_sandbox_and_its_table_is_right(demo_extract):
    root, config = demo_extract
    home, executed = execute_example(root, config, PROJECT, USER, NOTEBOOK)
    assert executed["metadata"]["kernelspec"]["name"] == "ir"
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    printed = "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")
    assert "survfit(formula = Surv(time, event) ~ sex" in printed and "sexwomen" in printed

    saved = pl.read_csv(home / "examples" / "results" / "r_stays_by_sex.csv").sort("sex").to_dicts()
    expected = expected_by_sex(root / "projects" / PROJECT / "extract")
    assert saved == expected and expected
