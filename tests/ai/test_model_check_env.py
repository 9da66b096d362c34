"""The model check's environment (images/model-check): its own lock, installed by make into
.venv-modelcheck, without CUDA and without PyTorch, loading models with the libraries workspaces
save them with."""

from __future__ import annotations

import os
import subprocess
import tomllib
from importlib.util import find_spec
from pathlib import Path

from pds_kernel.modelcheck import ATTACKED_FORMATS
from pds_kernel.modelcheck.sandbox import default_python

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "images" / "model-check"
UV = REPO / ".tools" / "uv" / "bin" / "uv"
#: the libraries a model is saved with in a workspace and loaded with in the check
SHARED = ("scikit-learn", "xgboost-cpu", "lightgbm", "skops", "numpy", "pandas", "pyarrow")


def _versions(lock: Path) -> dict[str, str]:
    return {p["name"]: p.get("version", "") for p in tomllib.loads(lock.read_text())["package"]}


def test_check_lock_loads_models_with_the_workspace_versions():
    """The check pins what workspaces run (``.venv`` is exactly the main lock: tests/k8s)."""
    from importlib.metadata import version

    check = _versions(CHECK / "uv.lock")
    for name in SHARED:
        assert check[name] == version(name), f"{name}: check {check[name]}, workspaces {version(name)}"
    assert check["sacroml"] == "2.0.1"


def test_check_lock_has_no_cuda_and_no_real_torch():
    lock = tomllib.loads((CHECK / "uv.lock").read_text())
    names = {p["name"] for p in lock["package"]}
    assert not {n for n in names if n.startswith(("nvidia-", "cuda-"))} and "xgboost" not in names
    torch = next(p for p in lock["package"] if p["name"] == "torch")
    assert torch["source"] == {"directory": "torch-stub"}


def test_check_environment_is_exactly_its_lock_and_workspaces_do_not_carry_it():
    result = subprocess.run([str(UV), "sync", "--frozen", "--check", "--project", str(CHECK)], cwd=REPO,
                            capture_output=True, text=True,
                            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never",
                                 "UV_PROJECT_ENVIRONMENT": str(REPO / ".venv-modelcheck")})
    assert result.returncode == 0, result.stderr
    assert find_spec("sacroml") is None and find_spec("torch") is None  # not in .venv


def test_sacroml_imports_over_the_torch_stand_in_which_refuses_any_use():
    code = ("import torch, sacroml.attacks.target as t, sacroml.attacks.likelihood_attack\n"
            "from pds_kernel.modelcheck.loaders import LOADERS\n"
            "print(torch.STUB, torch.cuda.is_available(), sorted(LOADERS))\n"
            "try:\n    torch.from_numpy(None)\nexcept torch.StubUsed:\n    print('refused')\n")
    done = subprocess.run([str(default_python()), "-I", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == f"True False {sorted(ATTACKED_FORMATS)}" and second == "refused"
