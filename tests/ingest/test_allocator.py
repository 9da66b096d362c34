"""The memory settings of ``pds ingest`` (``pds_kernel.allocator``) reach polars' allocator.

jemalloc prints its options at exit when ``stats_print:true`` is among them: each test reads
``opt.narenas`` from what the real allocator of a fresh process says it runs with.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from delivery_factory import make_rows, write_delivery

from pds_kernel.allocator import CORES_PER_ARENA, CSV_CHUNK_BYTES

ARENAS = max(1, (os.cpu_count() or 1) // CORES_PER_ARENA)


#: What the tests set themselves, removed from the inherited environment: OpenBLAS also reads OMP_ and
#: GOTO_NUM_THREADS, and distributed sets OMP_, MKL_ and OPENBLAS_NUM_THREADS=1 in a process that has
#: started a local cluster (another test of the same worker may have).
_SETTINGS = ("_RJEM_MALLOC_CONF", "POLARS_CSV_CHUNK_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
             "GOTO_NUM_THREADS")


def _run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -c code args`` in a fresh process whose allocator prints its options at exit."""
    environment = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, env={**environment, "_RJEM_MALLOC_CONF": "stats_print:true", **env})


def _arenas(stderr: str) -> int:
    return int(re.search(r"opt\.narenas: (\d+)", stderr).group(1))


def test_applied_before_polars_loads_the_allocator_uses_them():
    done = _run("from pds_kernel.allocator import for_large_files\n"
                "assert for_large_files()\n"
                "import os, polars as pl\n"
                "pl.DataFrame({'a': range(1000)}).sum()\n"
                "print(os.environ['POLARS_CSV_CHUNK_SIZE'])")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _arenas(done.stderr) == ARENAS
    assert done.stdout.strip() == str(CSV_CHUNK_BYTES)
    assert "opt.tcache: false" in done.stderr  # no per-thread cache of freed blocks
    assert "opt.dirty_decay_ms: 500" in done.stderr  # polars' own defaults are kept


def test_once_polars_is_loaded_it_is_too_late_and_says_so():
    done = _run("import polars\n"
                "from pds_kernel.allocator import for_large_files\n"
                "assert not for_large_files()")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _arenas(done.stderr) > ARENAS  # jemalloc's default (four per CPU it sees): untouched


def test_settings_of_the_environment_win():
    done = _run("from pds_kernel.allocator import for_large_files\n"
                "for_large_files()\n"
                "import os, polars\n"
                "print(os.environ['POLARS_CSV_CHUNK_SIZE'])",
                _RJEM_MALLOC_CONF="stats_print:true,narenas:3,tcache:true", POLARS_CSV_CHUNK_SIZE="123456")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _arenas(done.stderr) == 3 and done.stdout.strip() == "123456"
    assert "opt.tcache: true" in done.stderr


def test_pds_ingest_applies_them(tmp_path: Path):
    config = tmp_path / "pds.yaml"
    config.write_text("paths:\n  lake: lake\n  reports: reports\n  state: state\n"
                      f"cli:\n  identities:\n    {json.dumps(getpass.getuser())}: alice\n")
    delivery = write_delivery(tmp_path / "d", make_rows(months=("202301",)))
    # what the process is left with when it ends: read by an exit hook, after the command
    done = _run("import atexit, gc, sys\n"
                "atexit.register(lambda: print('gc', gc.isenabled(), gc.get_freeze_count() > 1000, file=sys.stderr))\n"
                "from pds_kernel.cli import main; main()", "--config", str(config), "ingest",
                str(delivery), COLUMNS="200")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert _arenas(done.stderr) == ARENAS and "opt.tcache: false" in done.stderr
    assert "gc False True" in done.stderr  # collector off; the objects frozen before the exit


def _threads() -> str:
    return "import os; print(len(os.listdir('/proc/self/task')))"


def test_numpy_starts_no_openblas_thread_and_the_collector_is_off():
    done = _run("from pds_kernel.allocator import for_large_files\n"
                "for_large_files()\n"
                "import gc, numpy\n"
                f"{_threads()}\n"
                "print(gc.isenabled(), gc.get_freeze_count())")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "False", "0"]  # one thread: the interpreter's own
    default = _run(f"import numpy\n{_threads()}")  # without the settings, for comparison
    assert int(default.stdout) == len(os.sched_getaffinity(0))  # OpenBLAS: one thread per core


def test_the_environment_openblas_setting_wins():
    done = _run("from pds_kernel.allocator import for_large_files\n"
                f"for_large_files()\nimport numpy\n{_threads()}", OPENBLAS_NUM_THREADS="2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "2"


def test_before_exit_freezes_what_exists():
    done = _run("import gc\n"
                "from pds_kernel.allocator import before_exit\n"
                "held = [[i] for i in range(10_000)]\n"
                "before_exit()\n"
                "print(gc.get_freeze_count() >= 10_000, gc.collect())")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "0"]
