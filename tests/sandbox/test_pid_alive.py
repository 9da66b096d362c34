"""Whether a sandbox's process still runs (:func:`pds_kernel.sandbox.scratch.pid_alive`): an ended
process that its parent has not reaped yet (a zombie) has ended. A hub killed with its sandboxes
leaves them as zombies until init reaps them; the restarted hub took them for running workspaces
and reattached to them, until a later poll."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pds_kernel.sandbox.scratch import pid_alive


def test_a_running_process_an_ended_unreaped_one_and_a_reaped_one():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(child.pid):
            time.sleep(0.01)
        assert not pid_alive(child.pid)  # a zombie: ended, not reaped
        with open(f"/proc/{child.pid}/stat", "rb") as stat:  # it is still there, as one
            assert stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)
    assert pid_alive(1)  # another user's process (init) counts
    assert not pid_alive(0) and not pid_alive(-5)
