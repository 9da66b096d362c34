"""The registry the Kubernetes restart red teams start alice's workspace on: shared by
test_k8s_notebook_restarts.py, test_redteam10_k8s_restarts.py and test_redteam11_forged_change_report.py
(each binds it by name: ``registry = k8s_restarts_support.registry``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def registry(runtime, tmp_path, monkeypatch):
    """tests/k8s's registry (two projects, published) and a kubeconfig naming no reachable cluster."""
    from pds_kernel.registry import Registry
    from tests.k8s.conftest import two_projects, use_dummy_kubeconfig

    use_dummy_kubeconfig(tmp_path, monkeypatch)
    return two_projects(Registry.from_runtime(runtime))
