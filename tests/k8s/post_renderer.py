"""The release as an operator installs it: rendered by the real ``helm`` through the chart's
post-renderer ``pds-harden`` (``helm/plugins/pds-harden``, ADR 18), installed with
``helm plugin install`` into a Helm home of the test's own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from .conftest import HUB_HOST_VALUES, REPO, helm_bin

PLUGIN = REPO / "helm" / "plugins" / "pds-harden"
#: the kind of the chart's marker (templates/post-renderer.yaml), which only pds-harden takes out
MARKER_KIND = "PostRendererRequired"


def helm_home(home: Path) -> dict[str, str]:
    """An environment whose Helm keeps its plugins, config and cache under ``home``, with the
    plugin installed as the operator docs say; ``helm`` is on its PATH (the plugin runs it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update(HELM_DATA_HOME=str(home / "data"), HELM_CONFIG_HOME=str(home / "config"),
               HELM_CACHE_HOME=str(home / "cache"),
               PATH=f"{Path(helm_bin()).parent}{os.pathsep}{env.get('PATH', '')}")
    result = subprocess.run([helm_bin(), "plugin", "install", str(PLUGIN)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return env


def template(env: dict[str, str], chart: Path, values: list[Path], *extra: str) -> subprocess.CompletedProcess:
    """``helm template`` of the release with the post-renderer (the hub's host first, as every render)."""
    args = [helm_bin(), "template", "pds", str(chart), "--namespace", "pds", "-f", str(HUB_HOST_VALUES)]
    for v in values:
        args += ["-f", str(v)]
    return subprocess.run([*args, "--post-renderer", "pds-harden", *extra], env=env, capture_output=True,
                          text=True, timeout=120)


def render_hardened(env: dict[str, str], chart: Path, values: list[Path]) -> list[dict]:
    result = template(env, chart, values)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def run_plugin(env: dict[str, str], manifests: str) -> subprocess.CompletedProcess:
    """The post-renderer's own command on ``manifests``, as Helm runs it (stdin to stdout)."""
    plugin_dir = Path(env["HELM_DATA_HOME"]) / "plugins" / "pds-harden"
    return subprocess.run([str(plugin_dir / "pds-harden.sh")], input=manifests, capture_output=True, text=True,
                          env={**env, "HELM_PLUGIN_DIR": str(plugin_dir)}, timeout=60)
