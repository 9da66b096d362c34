"""The whole Helm release's chart for the Kubernetes red teams (``test_redteam20_k8s.py``,
``test_redteam21_pods.py``): the umbrella chart with both upstream charts in its ``charts/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.conftest import chart_with_upstream, upstream_charts_available


@pytest.fixture(name="chart", scope="module")
def release_chart_fixture(tmp_path_factory) -> Path:
    """:func:`tests.k8s.conftest.chart_with_upstream`, once per test file; skips without the
    upstream charts (``PDS_UPSTREAM_CHARTS``)."""
    if not upstream_charts_available():
        pytest.skip("upstream charts missing (PDS_UPSTREAM_CHARTS)")
    return chart_with_upstream(tmp_path_factory.mktemp("release"))
