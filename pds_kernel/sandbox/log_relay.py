"""The workspace's log is written by a process outside its sandbox: the sandbox gets a pipe.

The local spawner keeps each workspace's output in a host file (``paths.state/logs``: the hub's
quota watcher counts it with the home, administrators read it, the lockdown logs its refusals
there). Given that file as its output, every process of the sandbox held a descriptor of it, and
a descriptor of a regular file lets its holder do more than append: clear ``O_APPEND`` and write
anywhere, or truncate it, erasing or forging what the server logged. Keeping the file in the
notebook server (non-dumpable) was not enough either: bubblewrap (PID 1 inside) and the
``inside`` launcher hold the sandbox's output too, and a kernel may write into their memory
through ``/proc/<pid>/mem`` (red team 20A).

:func:`start_log_relay` starts ``cat`` in the hub's namespaces (no sandbox process sees it),
reading a new pipe and appending to the log, in a session of its own so that it outlives a hub
restart as the sandbox does; it ends when the sandbox's last process has closed the pipe. Its file
size limit is the sandbox's own (``spec.max_file_mb``), as when the sandbox wrote the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

CAT = "/bin/cat"
PRLIMIT = "/usr/bin/prlimit"
MIB = 1024 * 1024


async def start_log_relay(log_path: Path, max_file_mb: int | None = None) -> tuple[asyncio.subprocess.Process, int]:
    """Start the relay appending to ``log_path``: (its process, the pipe's write end to give the
    sandbox as its output; the caller closes it once the sandbox has started)."""
    read_end, write_end = os.pipe()
    limit = [PRLIMIT, f"--fsize={int(max_file_mb) * MIB}", "--"] if max_file_mb else []
    try:
        with open(log_path, "ab") as log_file:
            relay = await asyncio.create_subprocess_exec(
                *limit, CAT, stdin=read_end, stdout=log_file, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return relay, write_end


async def wait_for_relay(relay: asyncio.subprocess.Process | None, seconds: float = 5.0) -> None:
    """Wait (at most ``seconds``) until the relay has written what the ended sandbox left in the pipe."""
    if relay is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(relay.wait(), seconds)
