"""The hub's own host name on Kubernetes: the chart refuses a release without it, the hub refuses to
start without it, and a workspace links to the gate on the gate's own host.

With one origin for the hub, the gate and every JupyterLab, script in an output checker's own
JupyterLab could read the review page and approve requests in her name
(tests/security/test_redteam16_origins.py, pds_kernel.hub.origins). The chart's
``jupyterhub.hub.config.JupyterHub.subdomain_host`` gives JupyterHub one host per user and one for
the gate; z2jh then also starts its proxy with ``--host-routing``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from traitlets.config import Config

from pds_kernel.errors import InvalidInput
from pds_kernel.hub.kubernetes import HOST_SETTING, configure
from pds_kernel.hub.origins import WORKSPACE_LABEL, service_url
from pds_kernel.k8s.config import K8sConfig

from .conftest import HUB_HOST, HUB_HOST_VALUES, chart_with_upstream, helm_available, upstream_charts_available
from .test_chart import _notes, helm, render

pytestmark = pytest.mark.skipif(not helm_available(), reason="helm binary missing: run `make helm`")

GATE = service_url(HUB_HOST, "airlock")  # https://airlock--service.pds.example.org/services/airlock/


def _host_values(tmp_path: Path, host) -> Path:
    f = tmp_path / "host.yaml"
    f.write_text(yaml.safe_dump({"jupyterhub": {"hub": {"config": {
        "JupyterHub": {"subdomain_host": host},
        "GenericOAuthenticator": {"oauth_callback_url": f"{host}/hub/oauth_callback"}}}}}))
    return f


def test_a_release_without_the_hub_host_name_is_refused_with_what_to_set(chart):
    result = helm("template", "pds", str(chart))  # values.yaml alone: subdomain_host ""
    assert result.returncode != 0
    assert f"{HOST_SETTING} is required" in result.stderr
    assert "wildcard DNS entry (*.pds.example.org)" in result.stderr and "TLS certificate" in result.stderr


@pytest.mark.parametrize("host, said", [
    ("https://10.0.0.5", "IP address"),
    ("https://10.0.0.5:8443", "IP address"),
    ("https://[::1]", "IP address"),
    ("https://pds.example.org/hub", "no path"),
    ("https://pds.example.org/", "no path"),
    ("https://user@pds.example.org", "nothing after"),
    ("http://pds.example.org", "https://"),
    ("pds.example.org", "https://"),
    ("https://pds", "DNS name"),
    ("https://PDS.example.org", "DNS name"),
    ("https://*.example.org", "DNS name"),
])
def test_a_hub_host_that_cannot_name_hosts_below_it_is_refused(chart, tmp_path, host, said):
    result = helm("template", "pds", str(chart), "-f", str(_host_values(tmp_path, host)))
    assert result.returncode != 0, host
    assert HOST_SETTING in result.stderr and said in result.stderr, result.stderr[-600:]


def test_a_sign_in_callback_on_another_host_is_refused(chart, tmp_path):
    f = tmp_path / "callback.yaml"
    f.write_text(yaml.safe_dump({"jupyterhub": {"hub": {"config": {"GenericOAuthenticator": {
        "oauth_callback_url": "https://old.example.org/hub/oauth_callback"}}}}}))
    result = helm("template", "pds", str(chart), "-f", str(HUB_HOST_VALUES), "-f", str(f))
    assert result.returncode != 0
    assert f"is \"https://old.example.org/hub/oauth_callback\": sign-in comes back to the hub's own host, " \
           f"{HUB_HOST}/hub/oauth_callback" in result.stderr, result.stderr[-600:]


def test_the_gate_signs_in_on_its_own_host_as_the_hub_registered_it(chart, tmp_path):
    for host in (HUB_HOST, "https://pds.example.org:8443"):
        docs = render(chart, [_host_values(tmp_path, host)])
        airlock = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "pds-airlock")
        env = {e["name"]: e.get("value") for e in airlock["spec"]["template"]["spec"]["containers"][0]["env"]}
        # HubOAuth: sign-in at the hub's host, back to the callback JupyterHub registered for the
        # service (Service.oauth_redirect_uri: its host, named by the same hook as service_url)
        assert env["JUPYTERHUB_HOST"] == host
        assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == service_url(host, "airlock") + "oauth_callback"


def test_the_install_notes_name_the_hosts(chart):
    notes = _notes(chart, [])
    assert f"{HUB_HOST}/hub/home" in notes and GATE in notes and "*.pds.example.org" in notes


@pytest.mark.skipif(not upstream_charts_available(), reason="upstream charts (../shared/upstream) missing")
def test_the_whole_release_gives_the_hub_its_host_and_the_proxy_host_routing(tmp_path, settings, registry):
    docs = render(chart_with_upstream(tmp_path), [])
    proxy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "proxy")
    assert "--host-routing" in proxy["spec"]["template"]["spec"]["containers"][0]["command"]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "hub")
    values = yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))
    # what z2jh's jupyterhub_config.py does with hub.config, then hub.extraConfig: our configure
    c = Config()
    for section, cfg in values["hub"]["config"].items():
        c[section].update(cfg)
    # z2jh reads the auth-state key the chart made from the same Secret, joined by ";"
    c.CryptKeeper["keys"] = base64.b64decode(secret["data"]["hub.config.CryptKeeper.keys"]).decode().split(";")
    context = configure(c, settings=settings, k8s=K8sConfig())
    assert c.JupyterHub.subdomain_host == HUB_HOST
    # the workspaces' hosts are keyed by that key (ADR 17, amended): none names its person or project
    host = c.JupyterHub.subdomain_hook("olga@alpha-study", "pds.example.org", "user")
    assert WORKSPACE_LABEL.fullmatch(host.split(".")[0]) and "olga" not in host and "alpha" not in host
    # the hub's pages link to the gate on its own host
    assert c.JupyterHub.template_vars["pds"](SimpleNamespace(name="olga", db=None))["airlock"] == GATE
    context.runtime.close()


@pytest.mark.parametrize("host", [None, "", "http://pds.example.org", "https://10.0.0.5", "https://pds.example.org/x",
                                  "auto", 42])
def test_the_hub_refuses_to_start_without_its_own_host_name(settings, host):
    c = Config()
    if host is not None:
        c.JupyterHub.subdomain_host = host
    with pytest.raises(InvalidInput, match=HOST_SETTING.replace(".", r"\.")) as refused:
        configure(c, settings=settings, k8s=K8sConfig())
    assert "wildcard DNS" in str(refused.value) or "IP address" in str(refused.value)


@pytest.mark.parametrize("keys", [None, [], [""], ["short"], [42], "0" * 64])
def test_the_hub_refuses_to_start_without_the_key_of_the_workspaces_hosts(settings, keys):
    """Without the chart's auth-state key there is no key to name the workspaces' hosts with: the
    hub does not start (a key of the code's own would be one anyone can read)."""
    c = Config()
    c.JupyterHub.subdomain_host = HUB_HOST
    if keys is not None:
        c.CryptKeeper["keys"] = keys
    with pytest.raises(InvalidInput, match=r"CryptKeeper\.keys is not set"):
        configure(c, settings=settings, k8s=K8sConfig())
