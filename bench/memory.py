"""How the ingestion benchmarks measure a side's memory, the same way for ours and DuckDB.

Each side runs as the child of a small wrapper (:data:`WRAPPER`), which reports its wall time, the
CPU time of all its threads (user and system: on a machine of two cores both sides keep the cores
busy most of the run, so this says what each costs whatever the scheduling), and three peaks:

* ``peak_kib``: the child's peak resident set (``getrusage``'s ``ru_maxrss``), exact, the figure
  the issue's goal was set in;
* ``peak_private_kib``: the highest *private* (anonymous) resident memory read in
  ``/proc/PID/status`` (``RssAnon``) every :data:`SAMPLE_SECONDS`: what the process allocated
  (Python objects, the engines' buffers and allocators' free lists), sampled, so a spike shorter
  than a sample can be missed;
* ``peak_library_kib``: the highest ``RssFile``: pages of files the process maps, mostly the code
  of its libraries. They are shared with every process that maps the same library and the kernel
  can drop them at any time (they are read again from the file).

The library pages' share of the RSS depends on the kernel and on how the library files came into
the page cache, not on the program. Measured on 2026-12-06 (Linux 6.18, ext4) on the whole delivery,
the same run of ours: 141 MiB of library pages right after ``uv`` wrote the virtualenv (its writes
filled the cache with large folios, and this kernel maps a whole large folio around a fault), 92–95
MiB once those files had been read through a mapping instead; polars' library alone 70 against 47
MiB, deltalake's 50 against 27. So :func:`settle_library_pages` first reads every shared library of
the virtualenv through a mapping, after asking the kernel to drop its cached pages, which gives
both sides the page cache a machine that has loaded its libraries before would have. Pages a
running process maps are not dropped; on an idle machine none is.
"""

from __future__ import annotations

import mmap
import os
import sysconfig
from pathlib import Path

#: Seconds between two readings of the child's ``/proc/PID/status``.
SAMPLE_SECONDS = 0.005

#: Runs ``argv`` as a child and prints, as JSON on its last line, the child's exit code, wall
#: time, CPU time and its three peaks in KiB (see the module docstring).
WRAPPER = f"""
import json, resource, subprocess, sys, time

def resident(pid):
    try:
        with open(f"/proc/{{pid}}/status") as status:
            lines = status.read().splitlines()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in lines if line.startswith(("RssAnon:", "RssFile:")))
    return tuple(int(fields.get(name, "0 kB").split()[0]) for name in ("RssAnon", "RssFile"))

t = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
private = library = 0
while child.poll() is None:
    anon, files = resident(child.pid)
    private, library = max(private, anon), max(library, files)
    time.sleep({SAMPLE_SECONDS})
wall = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({{"rc": child.returncode, "seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_kib": usage.ru_maxrss, "peak_private_kib": private, "peak_library_kib": library}}))
"""


def settle_library_pages(root: Path | None = None) -> int:
    """Drop the cached pages of every shared library under ``root`` (the virtualenv's
    site-packages by default) and read them again through a mapping; the bytes read."""
    root = root or Path(sysconfig.get_paths()["purelib"])
    total = 0
    for path in sorted(root.rglob("*.so*")):
        if not path.is_file() or path.is_symlink():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                continue
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
                for offset in range(0, size, mmap.PAGESIZE):
                    mapped[offset]
            total += size
        finally:
            os.close(fd)
    return total
