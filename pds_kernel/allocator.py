"""Memory and start-up settings of a process that streams large files through polars (``pds
ingest``), set by its entry point.

polars allocates with jemalloc. By default jemalloc gives each thread one of four arenas per core,
and memory freed in one arena is not reused by a thread of another: the parse threads, polars'
pool and its streaming executor each kept their own freed pages. polars reads the CSV in chunks
whose size it derives from the file. Measured on the ingest bench (twelve 72 MB claims files, two
cores), whole runs, peak RSS: default 503–512 MiB in 4.51–4.53 s; one arena 449–456 MiB in
4.37–4.41 s; one arena and 4 MiB CSV chunks 414–418 MiB in 4.40–4.46 s. Freeing pages at once
instead (``dirty_decay_ms:0``) held 393 MiB but took 6.6 s: every block faulted its pages in again.
Each thread's cache of freed blocks (jemalloc's tcache) is turned off too: with one arena, the
memory those caches held for polars' threads, the parse threads and the streaming executor's was
kept out of reuse by the others. Measured on two cores, same CPU time (user + system) with and
without: the whole-delivery bench 246-270 MiB → 231-235 MiB, the twelve claims files 327-334 MiB →
310-315 MiB.

jemalloc reads its options once, when polars is imported (polars appends ``_RJEM_MALLOC_CONF`` to its
own), so :func:`for_large_files` must run before anything imports polars; the chunk size is read
at each query. Settings already in the environment win. Importing this module changes nothing.

The same entry point turns off what costs a short batch process time without use to it, measured
on the twelve claims files (4.3 s runs): OpenBLAS, loaded with NumPy, starts a thread per core
that spins waiting for matrix work an ingest never gives it (~1 % of the run's CPU); Python's cyclic
garbage collector walks every object dozens of times while polars, deltalake and SQLAlchemy load
(~60 ms before the first file; the run itself pauses it, see ``pipeline._cyclic_gc_paused``); and
at exit the interpreter walks every object once more (0.17 s; 0.03 s when they are frozen first,
:func:`before_exit`). A ``pds ingest`` process makes few reference cycles: memory is freed by
reference counting as before.
"""

from __future__ import annotations

import gc
import os
import sys

#: Bytes of CSV text polars' streaming reader takes at a time.
CSV_CHUNK_BYTES = 4 << 20
#: Cores per jemalloc arena: one arena on a small machine, where reuse matters most; more on a
#: large one, so that many threads do not wait on one arena's lock (measured on two cores only).
CORES_PER_ARENA = 8


def for_large_files() -> bool:
    """Apply the settings to this process; False when polars is already loaded (the arenas are
    then fixed: only the chunk size applies). The cyclic garbage collector stays off for the rest
    of the process."""
    gc.disable()
    os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", str(CSV_CHUNK_BYTES))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read when NumPy loads
    if "polars" in sys.modules:
        return False
    current = os.environ.get("_RJEM_MALLOC_CONF", "")
    settings = [] if not current else [current]
    if "narenas" not in current:
        settings.append(f"narenas:{max(1, (os.cpu_count() or 1) // CORES_PER_ARENA)}")
    if "tcache" not in current:
        settings.append("tcache:false")
    os.environ["_RJEM_MALLOC_CONF"] = ",".join(settings)
    return True


def before_exit() -> None:
    """Spare the interpreter's exit a walk over every object of the process: the objects that exist
    now are moved out of the collector's sight (``gc.freeze``). Called by an entry point that
    ends its process once its work is done; what was written has been closed and flushed by then."""
    gc.freeze()
