"""The Dask path (a real local cluster of two worker processes) gives byte-identical files.

The Parquet files are byte for byte the same; the manifests differ only by the run's own metadata
(``backend``, ``build_id``, ``built_at``)."""

from __future__ import annotations

import pytest
from extract_lake import DIABETES_SPEC, write_spec

from pds_kernel.extract.build import run_build
from pds_kernel.extract.dask_backend import DaskBackend
from pds_kernel.extract.layout import entry_files
from pds_kernel.extract.spec import load_spec, parse_spec

pytestmark = pytest.mark.slow

#: What a build writes in the manifest about itself rather than about the extract.
RUN_METADATA = ("backend", "build_id", "built_at")

MI_LINKED_SPEC = """
project: mi-study
years: [2022, 2023]
include: [{diagnosis: {icd10: [I21], where: [principal, related]}}]
tables:
  IR_BEN_R: [BEN_NAI_ANN, BEN_SEX_COD, BEN_RES_DPT]
  ER_PRS_F: [DCT_ORD_NUM, EXE_SOI_DTD, PRS_PAI_MNT, DPN_QLF]
  T_MCOaaB: all
  T_MCOaaC: all
  T_MCOaaD: all
  KI_CCI_R: all
quasi_identifiers: [BEN_NAI_ANN, BEN_SEX_COD]
linkage: {file: cohort.csv, source_id: BEN_IDT_ANO, subject_id: SUBJECT}
"""


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as local, Client(local) as client:
        yield local, client


def extract_bytes(path):
    """Every Parquet file of a built extract, by its path inside the extract."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*.parquet")}


def file_hashes(manifest):
    return {f["file"]: f["sha256"] for entry in manifest["tables"].values() for f in entry_files(entry)}


def _both_ways(runtime, project, spec, lake, address, persons_per_partition=None):
    """Build with polars, then with Dask through the scheduler's address (as the CLI does)."""
    with_polars = run_build(runtime, project, spec, actor="root", persons_per_partition=persons_per_partition)
    polars_bytes = extract_bytes(with_polars.path)
    backend = DaskBackend(lake, address)
    try:
        with_dask = run_build(runtime, project, spec, actor="root", backend=backend,
                              persons_per_partition=persons_per_partition)
    finally:
        backend.close()
    dask_bytes = extract_bytes(with_dask.path)
    return with_polars, polars_bytes, with_dask, dask_bytes


def _without_run_metadata(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in RUN_METADATA}


def test_polars_and_dask_give_the_same_bytes(runtime, registry, small_lake, cluster):
    """With several partitions per table (a few persons each), so that the workers' split, spill
    and per-partition writing are exercised, not only the one-partition case."""
    local, _client = cluster
    with_polars, polars_bytes, with_dask, dask_bytes = _both_ways(
        runtime, "diab-study", parse_spec(DIABETES_SPEC), small_lake.path, local.scheduler_address,
        persons_per_partition=3)
    assert (with_polars.manifest["backend"], with_dask.manifest["backend"]) == ("polars", "dask")
    partitions = with_polars.manifest["partitions"]
    assert partitions >= 3 and with_polars.manifest["tables"]["ER_PRS_F"]["partitioning"]["partitions"] == partitions
    assert sum(1 for f in polars_bytes if f.startswith("ER_PRS_F/")) == partitions
    hashes = file_hashes(with_polars.manifest)
    assert file_hashes(with_dask.manifest) == hashes and set(hashes) == set(polars_bytes)
    assert with_dask.manifest["persons"] == with_polars.manifest["persons"] > 0
    assert dask_bytes == polars_bytes
    assert _without_run_metadata(with_dask.manifest) == _without_run_metadata(with_polars.manifest)


def test_diagnosis_cohort_with_a_linkage_file_same_bytes(runtime, registry, small_lake, cluster, tmp_path):
    """MI-like cohort (I21, principal or related) restricted by a linkage file keyed by BEN_IDT_ANO,
    which both paths resolve through IR_BEN_R; deaths linked through the referential too."""
    local, _client = cluster
    people = small_lake.rows["IR_BEN_R"]
    (tmp_path / "cohort.csv").write_text("BEN_IDT_ANO,SUBJECT\n" + "".join(
        f"{p['BEN_IDT_ANO']},MI-{n:03d}\n" for n, p in enumerate(people) if n % 3))  # two thirds of the lake
    spec = load_spec(write_spec(tmp_path, MI_LINKED_SPEC))
    with_polars, polars_bytes, with_dask, dask_bytes = _both_ways(
        runtime, "mi-study", spec, small_lake.path, local.scheduler_address)
    assert {f.split("/")[0].removesuffix(".parquet") for f in polars_bytes} == set(spec.output_tables())
    rows = with_polars.manifest["tables"]
    assert with_polars.manifest["persons"] > 0 and rows["COHORT"]["columns"] == ["PERSON_ID", "SUBJECT"]
    assert all(rows[t]["rows"] > 0 for t in ("ER_PRS_F", "T_MCOaaB", "T_MCOaaC", "T_MCOaaD"))
    assert dask_bytes == polars_bytes
    assert _without_run_metadata(with_dask.manifest) == _without_run_metadata(with_polars.manifest)
