"""The root options of ``pds`` are accepted anywhere on the line (#15): pure argv rewriting."""

from __future__ import annotations

import pytest

from pds_kernel.cli.app import hoist_global_options


@pytest.mark.parametrize("argv, expected", [
    (["audit", "verify", "--config", "f.yaml"], ["--config", "f.yaml", "audit", "verify"]),
    (["audit", "verify", "--config=f.yaml"], ["--config=f.yaml", "audit", "verify"]),
    (["-c", "f.yaml", "audit", "verify"], ["-c", "f.yaml", "audit", "verify"]),
    (["audit", "show", "--limit", "5", "-v", "--as", "root"], ["-v", "--as", "root", "audit", "show", "--limit", "5"]),
    # after "--" nothing moves; an option without its value is left for click to report
    (["sandbox", "run", "p", "--", "python", "--config", "x"], ["sandbox", "run", "p", "--", "python", "--config", "x"]),
    (["audit", "verify", "--config"], ["audit", "verify", "--config"]),
])
def test_global_options_move_before_the_command(argv, expected):
    assert hoist_global_options(argv) == expected
