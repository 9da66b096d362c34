"""Loopback ports for the servers the tests start in other processes (hubs, gateways, proxies).

A port found free and then handed to another process can be taken in between. The kernel hands
out ports of its ephemeral range (``net.ipv4.ip_local_port_range``, 32768-60999 by default) to
every ``bind(0)`` and outgoing connection on the machine, and the other test workers are busy doing
exactly that. So ports come from below that range, from a slice of its own for each pytest-xdist
worker (the room below the range shared by the main process and every worker), and each process
walks its slice forward (a block handed out is not handed out again by the same process, even if its
server has not bound it yet).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

FIRST = 12000
#: the widest slice a process gets (fewer workers do not need more)
SLICE = 4000
_cursor: int | None = None


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def worker_slice() -> tuple[int, int]:
    """[low, high) of this process: one slice without workers, one per worker ``gwN``."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    processes = int(count) + 1 if count.isdigit() else index + 1
    width = min(SLICE, (_ephemeral_low() - FIRST) // max(processes, index + 1))
    low = FIRST + index * width
    high = min(low + width, _ephemeral_low())
    if high - low < 100:
        raise RuntimeError(f"no room for worker {worker or 'main'} below the ephemeral ports ({high})")
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int = 4) -> int:
    """A port P such that P..P+size-1 are free on loopback now (and not handed out before)."""
    global _cursor
    low, high = worker_slice()
    if _cursor is None or not low <= _cursor < high:
        _cursor = random.randrange(low, high)  # a fresh start: not the ports of a run just ended
    for _ in range(high - low):
        base = _cursor if _cursor + size <= high else low
        _cursor = base + size
        if all(_bindable(port) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no free block of {size} ports in {low}-{high}")


def free_port() -> int:
    return free_port_block(1)
