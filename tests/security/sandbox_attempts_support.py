"""Support shared by the sandbox red teams (test_sandbox_redteam.py, test_redteam20_sandbox.py): a
program of attempts run in a real workspace sandbox, each attempt printing one line
``ATTEMPT <name> <result>``, and what those lines say."""

from __future__ import annotations

from collections.abc import Sequence

from pds_kernel.sandbox.exec import run_in_sandbox

#: Part of an attempts program (which imports ``os`` and ``time``): ``sibling()`` forks a process
#: that sleeps for 30 s, the other process an attempt aims at (the attempt kills it), and returns its pid.
SIBLING = r"""
def sibling():
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    return pid
"""


def attempt_results(out: str) -> dict[str, str]:
    """name -> result of every ``ATTEMPT <name> <result>`` line of ``out``."""
    return dict(line.split(" ", 2)[1:] for line in out.splitlines() if line.startswith("ATTEMPT "))


def run_attempts(world, program: str, names: Sequence[str], capfd, user: str = "alice",
                 project: str = "proj-a") -> dict[str, str]:
    """Run ``program`` with the attempts ``names`` as its arguments in one sandbox of (user,
    project): name -> result, every attempt's."""
    run_in_sandbox(world.runtime, user, project, ["python", "-c", program, *names], actor="red-team", timeout=60)
    out = capfd.readouterr().out
    results = attempt_results(out)
    assert set(results) == set(names), out  # every attempt ran
    return results
