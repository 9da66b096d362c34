"""The tools of a workspace terminal, in a real sandbox: bash (JupyterLab's terminals run it),
less, grep and git for local repositories; pip configured by the platform only."""

from __future__ import annotations

import shutil

import pytest

from pds_kernel.sandbox.exec import run_in_sandbox
from pds_kernel.sandbox.notebook_server import TERMINAL_SHELL, platform_args

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]


def test_terminals_run_bash_whatever_the_environment_says():
    assert TERMINAL_SHELL == "/bin/bash"
    assert "--ServerApp.terminado_settings={'shell_command': ['/bin/bash']}" in platform_args("/home/jovyan")


def test_bash_less_grep_git_and_the_platform_pip_in_the_sandbox(world):
    script = (
        'echo "shell=$SHELL"; less --version | head -1; grep --version | head -1; '
        "mkdir -p repo && cd repo && git init -q && echo hello > notes.txt && git add notes.txt && "
        "git -c user.name=alice -c user.email=alice@example.org commit -qm first && git log --format=%s; "
        'cd ..; python -m pip config list; echo "pythonpath=$PYTHONPATH"; '
        "for c in curl wget ssh; do [ -e /usr/bin/$c ] && { /usr/bin/$c --version >/dev/null 2>&1; echo $c=$?; }; done; true"
    )
    home = world.runtime.settings.paths.homes / "proj-a" / "alice"
    code = run_in_sandbox(world.runtime, "alice", "proj-a",
                          ["/bin/bash", "-c", f"( {script} ) > $HOME/tools.txt 2>&1"], actor="test", timeout=120)
    out = (home / "tools.txt").read_text()
    assert code == 0, out
    assert "shell=/bin/bash" in out and out.count("\n") >= 5
    assert "less " in out and "grep (GNU grep)" in out and "\nfirst\n" in out
    assert "global.index-url='http://127.0.0.1:8083/simple/'" in out
    assert "install.prefix='/home/jovyan/.local/pds-packages'" in out
    assert "pythonpath=/home/jovyan/.local/pds-packages/lib/python3." in out
    # the host's network clients, when it has some, are masked: they cannot even start
    for client in ("curl", "wget", "ssh"):
        if shutil.which(client) == f"/usr/bin/{client}":
            assert f"{client}=126" in out, out
