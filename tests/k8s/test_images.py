"""The images' Python environments: pinned, equal to what the tests run, notebook = worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest
import yaml
from makefile_values import variable
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import CHART, REPO

IMAGES = REPO / "images"
UV = REPO / ".tools" / "uv" / "bin" / "uv"
# The export command of each generated file (the Makefile's image-requirements target).
def makefile_exports() -> dict[str, list[str]]:
    """The export arguments of each image file, read from the Makefile's ``image-requirements``
    recipe (``$(EXPORT) ARGS... -o images/requirements-NAME.txt``): one list, in the Makefile."""
    recipe = (REPO / "Makefile").read_text().split("\nimage-requirements:", 1)[1].split("\n\n", 1)[0]
    exports = {}
    for line in recipe.splitlines()[1:]:
        words = line.split()
        assert words[0] == "$(EXPORT)" and words[-2] == "-o", line
        name = words[-1].removeprefix("images/requirements-").removesuffix(".txt")
        exports[name] = words[1:-2]
    return exports


EXPORTS = makefile_exports()


def requirements(name: str) -> dict[str, str]:
    """Pins of ``requirements-<name>.txt`` that apply to this interpreter (following ``-r``).

    Every line must pin one version with ``==`` and carry hashes; a pin whose environment
    marker does not hold here (e.g. another Python version) is skipped.
    """
    pins: dict[str, str] = {}
    text = (IMAGES / f"requirements-{name}.txt").read_text()
    for entry in text.replace("\\\n", " ").splitlines():
        entry = entry.split(" #")[0].strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("-r "):
            pins.update(requirements(entry[3:].removeprefix("requirements-").removesuffix(".txt")))
            continue
        spec, _, hashes = entry.partition(" --hash=")
        assert hashes, f"requirements-{name}.txt: {spec!r} has no hash"
        req = Requirement(spec)
        (pin,) = req.specifier
        assert pin.operator == "==", f"requirements-{name}.txt: {spec!r} is not pinned with =="
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = pin.version
    return pins


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_image_requirements_are_exported_from_the_lock(name):
    """Each file is exactly what uv exports from uv.lock: the images install the lock."""
    cmd = [str(UV), "export", "--frozen", "--no-emit-project", "--no-default-groups",
           "--format", "requirements-txt", "--quiet", *EXPORTS[name],
           "-o", f"images/requirements-{name}.txt"]
    out = subprocess.run([*cmd[:-2]], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"}).stdout
    body = lambda text: [line for line in text.splitlines() if not line.startswith("#")]  # noqa: E731
    assert body(out) == body((IMAGES / f"requirements-{name}.txt").read_text()), (
        f"images/requirements-{name}.txt is not the lock's export: run `make image-requirements`")


@pytest.mark.parametrize("name", ["hub", "notebook", "worker", "gateway"])
def test_pins_equal_the_tested_versions(name):
    pins = requirements(name)
    assert len(pins) > 5
    for package, pinned in pins.items():
        assert version(package) == pinned, f"{package}: image pins {pinned}, tests run {version(package)}"


def test_the_environment_is_exactly_the_lock():
    """`uv sync --frozen --check` finds nothing to change: no package was resolved at install."""
    result = subprocess.run([str(UV), "sync", "--frozen", "--all-extras", "--check"], cwd=REPO,
                            capture_output=True, text=True,
                            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never",
                                 "UV_PROJECT_ENVIRONMENT": sys.prefix})
    assert result.returncode == 0, result.stderr


def test_worker_runs_the_notebook_environment():
    notebook, worker = requirements("notebook"), requirements("worker")
    assert worker == notebook
    for package in ("dask", "distributed", "dask-gateway", "polars", "pyarrow", "acro", "jupyterlab",
                    "jupyter-server-proxy", "bokeh"):
        assert package in notebook


def test_hub_and_gateway_match_the_chart():
    deps = {d["name"]: d["version"] for d in yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]}
    hub = (IMAGES / "hub" / "Dockerfile").read_text()
    assert f"quay.io/jupyterhub/k8s-hub:{deps['jupyterhub']}" in hub
    assert requirements("hub")["jupyterhub"] == "5.5.0"
    gateway = (IMAGES / "gateway" / "Dockerfile").read_text()
    assert f"dask-gateway-server:{deps['dask-gateway']}" in gateway
    assert requirements("gateway")["dask-gateway-server"] == deps["dask-gateway"]
    assert requirements("notebook")["dask-gateway"] == deps["dask-gateway"]


@pytest.mark.parametrize("image", ["hub", "notebook", "dask-worker", "gateway", "notebook-gpu"])
def test_dockerfiles_pin_bases_and_drop_root(image):
    text = (IMAGES / image / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] == "1000"


def test_notebook_environment_imports():
    code = ("import polars, pyarrow, dask, distributed, dask_gateway, acro, jupyterlab, "
            "jupyter_server_proxy, pds_kernel.k8s.pods")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_gateway_handler_needs_no_hub_or_data_libraries():
    """The gateway image has no JupyterHub, polars or tornado-based hub code."""
    code = ("import sys, pds_kernel.k8s.gateway; bad = {'jupyterhub', 'polars', 'kubespawner', 'pyarrow'}"
            " & set(m.split('.')[0] for m in sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _names(name: str) -> set[str]:
    text = (IMAGES / f"requirements-{name}.txt").read_text()
    return {canonicalize_name(m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==", text, re.M)}


def test_cuda_only_in_the_gpu_image():
    """The notebook/worker environment (and so .venv and every sandbox) has no CUDA library and no
    torch; the GPU image adds torch and XGBoost's CUDA build, and installs xgboost in place of
    xgboost-cpu (both provide the ``xgboost`` module)."""
    notebook, gpu = _names("notebook"), _names("gpu")
    cuda = {n for n in notebook if n.startswith(("nvidia-", "cuda-")) or n in {"torch", "triton", "xgboost"}}
    assert not cuda, cuda
    assert {"xgboost-cpu", "scikit-learn", "lightgbm", "skops"} <= notebook
    assert {"torch", "xgboost", "nvidia-nccl-cu12"} <= gpu and "xgboost-cpu" not in gpu
    dockerfile = (IMAGES / "notebook-gpu" / "Dockerfile").read_text()
    steps = [dockerfile.index(s) for s in ("-r /tmp/req/requirements-notebook.txt", "pip uninstall -y xgboost-cpu",
                                           "-r /tmp/req/requirements-gpu.txt")]
    assert steps == sorted(steps) and dockerfile.count("--require-hashes") == 2


def test_notebook_image_has_the_local_r_packages_and_the_platform_pip_conf():
    """The image installs exactly the Makefile's R packages (what the local sandbox tests run) and
    uses only the platform's package index."""
    local = variable("R_APT_PACKAGES")
    dockerfile = (IMAGES / "notebook" / "Dockerfile").read_text()
    assert len(local) == 15 and {"r-cran-haven", "r-cran-tidyverse"} <= set(local)
    assert all(f" {p}" in dockerfile for p in local) and "--no-install-recommends" in dockerfile
    assert "COPY images/notebook/pip.conf /etc/pip.conf" in dockerfile
    conf = (IMAGES / "notebook" / "pip.conf").read_text()
    indexes = re.findall(r"^(?:extra-)?index-url\s*=\s*(\S+)", conf, re.M)
    assert indexes == ["http://pds-packages:8080/simple/"]
