"""The hub's public address: one host for the hub, one per user's workspaces, one for the gate
(pds_kernel.hub.origins). The attacks these hosts stop are in tests/security/test_redteam16_origins.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pds_kernel.errors import InvalidInput
from pds_kernel.hub.origins import service_url, subdomain_host


def test_auto_is_localhost_on_a_loopback_hub():
    assert subdomain_host("auto", "127.0.0.1", 8000) == "http://localhost:8000"
    assert subdomain_host("auto", "localhost", 8123) == "http://localhost:8123"


def test_auto_on_a_hub_reached_beyond_loopback_says_what_to_set():
    with pytest.raises(InvalidInput, match=r"hub.public_url .*wildcard DNS"):
        subdomain_host("auto", "0.0.0.0", 8000)


@pytest.mark.parametrize("given, expected", [
    ("https://pds.example.org", "https://pds.example.org"),
    ("https://pds.example.org/", "https://pds.example.org"),
    ("http://pds.localhost:8000", "http://pds.localhost:8000"),
    ("HTTPS://PDS.Example.org:8443", "https://pds.example.org:8443"),
])
def test_a_named_hub(given, expected):
    assert subdomain_host(given, "0.0.0.0", 8000) == expected


@pytest.mark.parametrize("given", [
    "https://10.0.0.5", "http://127.0.0.1:8000", "http://[::1]:8000",  # an address has no names below it
    "pds.example.org", "ftp://pds.example.org", "https://pds.example.org/hub/", "https://pds.example.org?x=1",
    "https://user:pw@pds.example.org", "https://pds.example.org:99999", "https://", "",
])
def test_an_address_that_cannot_name_hosts_below_it_is_refused(given):
    with pytest.raises(InvalidInput, match="hub.public_url"):
        subdomain_host(given, "0.0.0.0", 8000)


def test_the_gate_is_on_its_own_host_as_jupyterhub_names_it():
    assert service_url("http://localhost:8000", "airlock") == "http://airlock--service.localhost:8000/services/airlock/"
    assert service_url("https://pds.example.org", "airlock") == "https://airlock--service.pds.example.org/services/airlock/"


def test_pds_hub_run_beyond_loopback_without_a_name_stops_before_starting_anything(tmp_path):
    """The operator's view: `pds hub run` on a hub listening on every address, without a name, says
    what to set and starts nothing (no JupyterHub, no state directory)."""
    config = tmp_path / "pds.yaml"
    config.write_text(yaml.safe_dump({"paths": {"state": str(tmp_path / "state")}, "hub": {"ip": "0.0.0.0"}}))
    result = subprocess.run([sys.executable, "-c", "from pds_kernel.cli import main; main()",
                             "--config", str(config), "hub", "run"], capture_output=True, text=True, timeout=120)
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "Traceback" not in said, said
    assert "error: hub.ip is 0.0.0.0: set hub.public_url" in said and "wildcard DNS" in said, said
    assert not (tmp_path / "state" / "hub").exists()
