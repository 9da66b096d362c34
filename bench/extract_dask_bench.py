"""The extract build on Dask (workers write the partitions) against the single-machine build.

The synthetic lake of ``extract_bench`` (5 million claim rows; 600,000 in quick mode) and its
cohort A (users of ATC A10 drugs, all their claims in 2022-2023). The same ``run_build``, with the
same number of partitions (a few per worker), once with the polars backend on this machine and once
on a ``distributed.LocalCluster`` of worker processes (one thread each) through ``DaskBackend``;
the files are checked byte-identical. Measured: wall time, extract rows per second (per worker on
Dask), and the peak resident memory of the client process (this one) above its level at the start
of the build, sampled every 10 ms. For contrast, the peak of the client when it gathers the claims
table's rows the old way (``DaskBackend.run``, what the Dask build did before the workers wrote the
files). The Dask runs come first, so that the allocator does not already hold memory freed by a
single-machine build (which would hide the client's growth).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

WORKERS = 2


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*.parquet")}


def run(out_dir: Path, quick: bool) -> dict:
    from distributed import LocalCluster

    from bench.extract_bench import COHORTS, FULL_BUILD_COHORT, _bench_runtime, _PeakRSS, make_lake
    from pds_kernel.extract.build import run_build
    from pds_kernel.extract.cohort import select_persons
    from pds_kernel.extract.dask_backend import DaskBackend
    from pds_kernel.extract.linkage import person_map
    from pds_kernel.extract.record_keys import record_key
    from pds_kernel.extract.select import table_rows
    from pds_kernel.extract.spec import parse_spec
    from pds_kernel.pseudo import KeyStore

    claims = 600_000 if quick else 5_000_000
    repeats = 1 if quick else 2
    spec = parse_spec(COHORTS[FULL_BUILD_COHORT][0])
    with tempfile.TemporaryDirectory(dir=out_dir if out_dir.exists() else None) as tmp:
        lake = Path(tmp) / "lake"
        shape = make_lake(lake, claims)
        runtime = _bench_runtime(Path(tmp) / "pds", lake, spec.project)
        try:
            best = {"polars": float("inf"), "dask": float("inf")}
            peak = {"polars": 0.0, "dask": 0.0, "gather": 0.0}
            with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None,
                              host="127.0.0.1") as cluster:
                backend = DaskBackend(lake, cluster.scheduler_address)
                try:
                    # the client's own work first (key, cohort): nothing of a build held before the Dask runs
                    key = KeyStore.from_runtime(runtime).ensure(spec.project, "root")
                    persons = person_map(key, select_persons(backend, spec))
                    numbers_key = record_key(key)
                    del key
                    per_partition = max(1, persons.height // (4 * WORKERS))  # 4 partitions per worker
                    for _ in range(repeats):
                        with _PeakRSS() as m:
                            dask = run_build(runtime, spec.project, spec, actor="root", backend=backend,
                                             persons_per_partition=per_partition)
                        best["dask"] = min(best["dask"], m.seconds)
                        peak["dask"] = max(peak["dask"], m.mib)
                    dask_files = _files(dask.path)
                    with _PeakRSS() as m:
                        gathered = backend.run(table_rows, "ER_PRS_F", spec, persons, None, numbers_key,
                                              partitioned=True)
                    peak["gather"] = m.mib
                    gathered_mib = gathered.estimated_size() / 2**20
                    del gathered
                finally:
                    backend.close()
            for _ in range(repeats):
                with _PeakRSS() as m:
                    single = run_build(runtime, spec.project, spec, actor="root", persons_per_partition=per_partition)
                best["polars"] = min(best["polars"], m.seconds)
                peak["polars"] = max(peak["polars"], m.mib)
            if _files(single.path) != dask_files:
                raise AssertionError("the Dask and single-machine builds wrote different files")
        finally:
            runtime.close()
    rows_out = dask.manifest["tables"]["ER_PRS_F"]["rows"] + dask.manifest["tables"]["COHORT"]["rows"]
    partitions = dask.manifest["partitions"]
    single_rate = rows_out / best["polars"]
    dask_rate = rows_out / best["dask"] / WORKERS
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = [
        dict(name=f"cohort A build on Dask ({WORKERS} worker processes): extract rows/s per worker",
             value=round(dask_rate), unit="rows/s", peer="single-machine build (polars, all threads)",
             peer_value=round(single_rate), ratio=round(dask_rate / single_rate, 2),
             note=f"{rows_out:,} rows in {partitions} partitions; {best['dask']:.1f} s vs {best['polars']:.1f} s; "
                  f"same bytes; ratio = per-worker rate / single-machine rate; best of {repeats}"),
        dict(name="cohort A build on Dask: peak RSS of the client", value=round(peak["dask"]), unit="MiB",
             peer="single-machine build (the whole build in one process)", peer_value=round(peak["polars"]),
             ratio=round(peak["polars"] / peak["dask"], 2) if peak["dask"] > 0 else None,
             note="above the process's level at the start of the build; ratio = peer / ours"),
        dict(name="the old Dask path for contrast: gather ER_PRS_F's rows onto the client", value=round(peak["gather"]),
             unit="MiB", peer="the Dask build's client (above)", peer_value=round(peak["dask"]),
             ratio=round(peak["gather"] / peak["dask"], 2) if peak["dask"] > 0 else None,
             note=f"{gathered_mib:.0f} MiB of rows gathered; ratio = old / new client peak"),
    ]
    markdown = (f"Synthetic lake of `extract_bench`: {shape['claims']:,} claim rows, {shape['persons']:,} persons. "
                f"Cohort A ({spec.project}: ATC A10 users, ER_PRS_F), {partitions} partitions by a hash of "
                f"PERSON_ID on both paths. Dask: a `LocalCluster` of {WORKERS} worker processes with one thread "
                f"each on the same machine (load average {load} at the end; the machine is shared), so the "
                "per-worker rate compares one Dask worker with the single-machine build using every thread; "
                "on a real cluster the workers are on other machines and the client does only the cohort "
                "selection's bookkeeping, the person map and the manifest.")
    return {"title": "Extract build on Dask (workers write the partitions)", "rows": rows, "markdown": markdown}


if __name__ == "__main__":  # pragma: no cover
    import sys

    result = run(Path(tempfile.gettempdir()), quick="--quick" in sys.argv)
    for row in result["rows"]:
        print(row)
    print(result["markdown"])
