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


R_CHECK = r"""
debian <- commandArgs(trailingOnly = TRUE)
installed <- rownames(installed.packages())
for (name in sub("^r-cran-", "", grep("^r-cran-", debian, value = TRUE))) {
  found <- installed[tolower(installed) == name]
  if (length(found) != 1) stop("no R package for r-cran-", name)
  suppressPackageStartupMessages(library(found, character.only = TRUE))
  cat("loaded", found, "\n")
}
# a SAS transport file written and read back (haven), reshaped (tidyr), summarised (dplyr)
wide <- tibble::tibble(person = 1:3, y2022 = c(2, 0, 5), y2023 = c(1, 4, 0))
haven::write_xpt(wide, "claims.xpt")
long <- tidyr::pivot_longer(haven::read_xpt("claims.xpt"), starts_with("y"), names_to = "year", values_to = "n")
total <- dplyr::summarise(dplyr::group_by(long, year), n = sum(n))
cat("totals", paste(total$year, total$n, sep = "=", collapse = " "), "\n")
"""


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed (make system-deps)")
def test_every_r_package_of_the_makefile_loads_in_the_sandbox(world):
    """The Makefile's R packages (the notebook image installs the same list) load in a real
    sandbox (``library(tidyverse)`` included), and the tidyverse works offline on a SAS file."""
    from makefile_values import variable

    packages = variable("R_APT_PACKAGES")
    home = world.runtime.settings.paths.homes / "proj-a" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    (home / "check.R").write_text(R_CHECK)
    code = run_in_sandbox(world.runtime, "alice", "proj-a",
                          ["/bin/bash", "-c", f"Rscript check.R {' '.join(packages)} > r.txt 2>&1"],
                          actor="test", timeout=120)
    out = (home / "r.txt").read_text()
    assert code == 0, out
    assert out.count("loaded ") == sum(p.startswith("r-cran-") for p in packages) == 14, out
    assert "loaded IRkernel" in out and "loaded haven" in out and "loaded tidyverse" in out
    assert "totals y2022=7 y2023=5" in out, out
