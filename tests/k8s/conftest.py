"""Fixtures of the Kubernetes tests: a registry with two projects, a dummy kubeconfig, the chart."""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml
from published import record_publication
from traitlets.config import Config

from pds_kernel.registry import Registry

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "pds-workspace"
DATA = REPO / "tests" / "data"
HELM = REPO / ".tools" / "bin" / "helm"
#: the value every release must set (the hub's own host name): the first values file of every render
HUB_HOST_VALUES = REPO / "tests" / "k8s" / "values" / "hub-host.yaml"
HUB_HOST = "https://pds.example.org"
TODAY = date(2026, 3, 1)
#: the manifest SHA-256 recorded for each project's published extract
PUBLISHED_MANIFEST = {"alpha-study": "a" * 64, "beta-study": "b" * 64}


@pytest.fixture
def registry(runtime) -> Registry:
    return two_projects(Registry.from_runtime(runtime))


def two_projects(reg: Registry) -> Registry:
    """Two projects; alice in both, bob in alpha only, carol expired in alpha, dave in nothing."""
    for name in ("alice", "bob", "carol", "dave", "olga"):
        reg.upsert_user("admin", name, email=f"{name}@example.org")
    reg.upsert_project("admin", "alpha-study", title="Alpha", start_date=date(2025, 1, 1),
                       end_date=date(2030, 12, 31), cpu_limit=2.0, mem_limit_mb=4096, dask_workers=3)
    reg.upsert_project("admin", "beta-study", title="Beta", start_date=date(2025, 1, 1),
                       end_date=date(2030, 12, 31), cpu_limit=4.0, mem_limit_mb=8192, dask_workers=2,
                       gpu=True)
    far = date(2030, 6, 30)
    reg.add_member("admin", "alpha-study", "alice", "researcher", far)
    reg.add_member("admin", "beta-study", "alice", "researcher", far)
    reg.add_member("admin", "alpha-study", "bob", "researcher", far)
    reg.add_member("admin", "alpha-study", "carol", "researcher", date(2020, 1, 1))
    reg.add_member("admin", "alpha-study", "olga", "output-checker", far)
    for project in ("alpha-study", "beta-study"):  # what the hub reads of a published extract
        record_publication(reg._audit, project, manifest_sha256=PUBLISHED_MANIFEST[project])
    return reg


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch) -> Path:
    return use_dummy_kubeconfig(tmp_path, monkeypatch)


def use_dummy_kubeconfig(tmp_path: Path, monkeypatch) -> Path:
    """A kubeconfig naming an unroutable API server: clients can be built, nothing is contacted."""
    return use_kubeconfig(tmp_path, monkeypatch, "https://127.0.0.1:1")


def use_kubeconfig(tmp_path: Path, monkeypatch, server: str) -> Path:
    """A kubeconfig naming the API server ``server``, used by every client built afterwards."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "pds"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))
    # kubernetes_asyncio reads $KUBECONFIG at import time
    from kubernetes_asyncio.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


def z2jh_hub_config() -> Config:
    """``c`` as z2jh hands it to our ``configure`` (hub.extraConfig): ``hub.config`` loaded, here
    the one value the chart requires, the hub's host name, and the auth state's encryption key that
    z2jh always generates (``hub.config.CryptKeeper.keys``)."""
    from jupyterhub.crypto import CryptKeeper

    c = Config()
    c.JupyterHub.subdomain_host = HUB_HOST
    keys = [secrets.token_hex(32)]
    c.CryptKeeper["keys"] = keys  # (a Config's attribute ``keys`` is the dict's method)
    # CryptKeeper reads the config of JupyterHub.instance(), the chart's hub; a test's hub is not it
    keeper = CryptKeeper.instance()
    if not keeper.keys:
        keeper.keys = keys
    return c


def chart_without_dependencies(dest: Path) -> Path:
    """A copy of the umbrella chart under ``dest`` without its upstream dependencies: our templates alone."""
    chart = dest / "pds-workspace"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return chart


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    """:func:`chart_without_dependencies`, once per test file; skips without helm."""
    if not helm_available():
        pytest.skip("helm binary missing: run `make helm`")
    return chart_without_dependencies(tmp_path_factory.mktemp("chart"))


def helm_available() -> bool:
    return HELM.exists() or shutil.which("helm") is not None


def helm_bin() -> str:
    return str(HELM) if HELM.exists() else shutil.which("helm")


#: The upstream charts (Zero to JupyterHub 4.4.0, dask-gateway 2026.3.0) as their releases publish
#: them. Third-party code: never committed here; CI lays the steering repository's shared/ folder
#: beside the checkout, and PDS_UPSTREAM_CHARTS can point elsewhere.
UPSTREAM_CHARTS = Path(os.environ.get("PDS_UPSTREAM_CHARTS", REPO.parent / "shared" / "upstream" / "charts"))


def upstream_charts_available() -> bool:
    return all((UPSTREAM_CHARTS / name / "Chart.yaml").is_file() for name in ("jupyterhub", "dask-gateway"))


def chart_with_upstream(dest: Path) -> Path:
    """A copy of the umbrella chart with both upstream charts in its ``charts/``: the whole release."""
    chart = dest / "pds-workspace"
    shutil.copytree(CHART, chart)
    for name in ("jupyterhub", "dask-gateway"):
        shutil.copytree(UPSTREAM_CHARTS / name, chart / "charts" / name)
    return chart


def write_fingerprint_record(data: Path, record: Path) -> None:
    """Write the fingerprint of the tree at ``data`` to ``record``, as ``verify-extract`` does."""
    from pds_kernel.extract.tree import fingerprint

    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    try:
        record.write_text(fingerprint(fd))
    finally:
        os.close(fd)
