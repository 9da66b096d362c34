"""The images' Python environments: pinned, equal to what the tests run, notebook = worker."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

import pytest
import yaml

from .conftest import CHART, REPO

IMAGES = REPO / "images"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(\[[a-z,]+\])?==([0-9][A-Za-z0-9.]*)$")


def requirements(name: str) -> dict[str, str]:
    """Resolved pins of ``requirements-<name>.txt`` (following ``-r`` includes)."""
    pins: dict[str, str] = {}
    for line in (IMAGES / f"requirements-{name}.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins.update(requirements(line[3:].removeprefix("requirements-").removesuffix(".txt")))
            continue
        match = PIN.match(line)
        assert match, f"requirements-{name}.txt: {line!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(3)
    return pins


@pytest.mark.parametrize("name", ["platform", "hub", "notebook", "worker", "gateway"])
def test_pins_equal_the_tested_versions(name):
    for package, pinned in requirements(name).items():
        assert version(package) == pinned, f"{package}: image pins {pinned}, tests run {version(package)}"


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


@pytest.mark.parametrize("image", ["hub", "notebook", "dask-worker", "gateway"])
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
