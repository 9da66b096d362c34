"""An extract larger than the client's memory builds on Dask: the workers write it, the client
never holds the rows.

A local distributed cluster of three worker processes; the client (``run_build``) runs in a
subprocess whose address space is capped (``RLIMIT_AS``) at what it uses once connected plus a
headroom smaller than the extract's rows in memory. The old way, gathering a table's rows onto
the client (``DaskBackend.run``, what the build did before), dies under the same cap; the build
succeeds and writes the same bytes as the single-machine build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields, replace
from datetime import date
from pathlib import Path

import pytest

from pds_kernel.extract.build import run_build
from pds_kernel.extract.layout import file_hashes, read_tables
from pds_kernel.extract.spec import parse_spec
from pds_kernel.registry import Registry
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Paths, Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SPEC = ("project: big-study\nyears: [2022, 2023]\ninclude: [{drug: {atc: [A10]}}]\n"
        "tables: {ER_PRS_F: all, ER_PHA_F: all}\n")
CLAIMS = 1_400_000
#: what the client may allocate beyond its size once connected: well below the extract's rows
HEADROOM_MIB = 128
PERSONS_PER_PARTITION = 5_000

CLIENT = r"""
import json, resource, sys
from dataclasses import fields
from pathlib import Path

args = json.loads(sys.argv[1])
import polars as pl
from distributed import Client
from pds_kernel.extract.build import run_build
from pds_kernel.extract.cohort import select_persons
from pds_kernel.extract.dask_backend import DaskBackend
from pds_kernel.extract.linkage import person_map
from pds_kernel.extract.record_keys import record_key
from pds_kernel.extract.select import table_rows
from pds_kernel.extract.spec import parse_spec
from pds_kernel.pseudo import KeyStore
from pds_kernel.runtime import Runtime
from pds_kernel.settings import Paths, Settings

paths = Paths(**{f.name: Path(args["paths"][f.name]) for f in fields(Paths)})
runtime = Runtime(Settings(paths=paths))
spec = parse_spec(args["spec"])
backend = DaskBackend(paths.lake, args["address"])
backend.client.submit(sum, [1, 2]).result()  # the connection and its buffers exist before the cap
# polars' thread pool and allocator arenas too: the cap is on what the build's data needs
warm = pl.DataFrame({"a": [str(i) for i in range(200_000)]}).sort("a").group_by("a").len()
warm.write_parquet(Path(args["paths"]["state"]) / "warm.parquet")
del warm


def vm_bytes(field="VmSize"):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


base = vm_bytes()
_soft, hard = resource.getrlimit(resource.RLIMIT_AS)
if args["headroom"]:
    resource.setrlimit(resource.RLIMIT_AS, (base + args["headroom"], hard))
steps = []
try:
    if args["mode"] == "build":
        result = run_build(runtime, spec.project, spec, actor="root", backend=backend,
                           persons_per_partition=args["per_partition"],
                           on_step=lambda name: steps.append((name, round((vm_bytes("VmPeak") - base) / 2**20))))
        out = {"path": str(result.path), "manifest": result.manifest}
    else:  # the old way: every row of ER_PRS_F gathered onto the client
        key = KeyStore.from_runtime(runtime).get(spec.project)
        persons = person_map(key, select_persons(backend, spec))
        rows = backend.run(table_rows, "ER_PRS_F", spec, persons, None, record_key(key), partitioned=True)
        out = {"rows": rows.height}
    print(json.dumps({**out, "steps": steps, "grew_mib": (vm_bytes("VmPeak") - base) / 2**20}))
finally:
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    backend.close()
"""


def _runtime(root: Path, lake: Path) -> Runtime:
    paths = replace(Paths(**{f.name: root / f.name for f in fields(Paths)}), lake=lake)
    for f in fields(Paths):
        getattr(paths, f.name).mkdir(parents=True, exist_ok=True)
    runtime = Runtime(Settings(paths=paths))
    registry = Registry.from_runtime(runtime)
    registry.upsert_user("root", "root", is_admin=True)
    registry.upsert_project("root", "big-study", title="big", start_date=date(2020, 1, 1), end_date=date(2099, 12, 31))
    return runtime


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sys.path.insert(0, str(ROOT))  # the benchmark's synthetic lake (bench/ is not a package)
    from bench.extract_bench import make_lake

    root = tmp_path_factory.mktemp("big")
    make_lake(root / "lake", CLAIMS)
    runtime = _runtime(root / "pds", root / "lake")
    yield root, runtime
    runtime.close()


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1", memory_limit="1GiB") as local:
        yield local.scheduler_address


def _client(runtime, address: str, mode: str, headroom_mib: int = HEADROOM_MIB) -> subprocess.CompletedProcess:
    paths = runtime.settings.paths
    args = {"paths": {f.name: str(getattr(paths, f.name)) for f in fields(Paths)}, "spec": SPEC,
            "address": address, "mode": mode, "headroom": headroom_mib * 2**20,
            "per_partition": PERSONS_PER_PARTITION}
    return subprocess.run([sys.executable, "-c", CLIENT, json.dumps(args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "MALLOC_ARENA_MAX": "1"})


def test_extract_larger_than_the_client_memory_builds_on_dask(world, cluster):
    root, runtime = world
    spec = parse_spec(SPEC)
    single = run_build(runtime, spec.project, spec, actor="root", persons_per_partition=PERSONS_PER_PARTITION)
    in_memory = sum(df.estimated_size() for df in read_tables(single.path).values())
    on_disk = sum(p.stat().st_size for p in single.path.rglob("*.parquet"))
    assert in_memory > HEADROOM_MIB * 2**20, f"extract only {in_memory / 2**20:.0f} MiB in memory"
    single_files = {p.relative_to(single.path).as_posix(): p.read_bytes() for p in single.path.rglob("*.parquet")}

    gathered = _client(runtime, cluster, "gather")
    assert gathered.returncode != 0, f"gathering the rows fitted under the cap: {gathered.stdout[-500:]}"
    assert "memory" in (gathered.stderr + gathered.stdout).lower(), gathered.stderr[-2000:]  # MemoryError, or polars' allocation abort

    built = _client(runtime, cluster, "build")
    assert built.returncode == 0, built.stderr[-3000:]
    out = json.loads(built.stdout.strip().splitlines()[-1])
    assert out["grew_mib"] < HEADROOM_MIB, out["steps"]
    path = Path(out["path"])
    assert out["manifest"]["backend"] == "dask" and out["manifest"]["partitions"] == single.manifest["partitions"] > 1
    assert out["manifest"]["conformity"]["ok"]
    assert file_hashes(out["manifest"]) == file_hashes(single.manifest)
    assert {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*.parquet")} == single_files
    print(f"extract {in_memory / 2**20:.0f} MiB in memory, {on_disk / 2**20:.0f} MiB on disk; client cap: "
          f"its size when connected + {HEADROOM_MIB} MiB; the build grew {out['grew_mib']:.0f} MiB ({out['steps']})")
