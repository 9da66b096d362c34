"""One origin per user's workspaces, one for the gate, one for the hub.

A browser keeps script of one origin (scheme, host, port) out of the pages and answers of another,
and nothing else does: cookies, ``frame-ancestors``, ``Cross-Origin-Opener-Policy`` all leave two
pages of one origin free to read and drive each other. When the hub served the gate
(``/services/airlock/``) and every JupyterLab (``/user/<name>/<project>/``) from one origin, script
in an output checker's own JupyterLab (HTML output of a notebook she ran, an approved package's
JupyterLab extension) read the review queue and approved a request in her name
(tests/security/test_redteam16_origins.py). So the hub always runs with JupyterHub's
``subdomain_host``: the hub at ``settings.hub.public_url``, each user's servers at
``<user>.<host>`` and each service at ``<service>--service.<host>`` (JupyterHub's own ``idna`` hook names
them; :func:`service_url` asks it too). Each workspace runs as its own hub user
(:mod:`pds_kernel.workspace_names`), so each has its own host too, named by
:func:`workspace_host_hook` (``w--<keyed digest>.<host>``, which names neither the person nor the
project): see docs/adr/0016-one-origin-per-user.md and docs/adr/0017-a-hub-user-per-workspace.md.

Locally the default is ``http://localhost:<port>``: browsers resolve every ``*.localhost`` name to
the loopback address themselves (RFC 6761), so no DNS entry is needed. Anywhere else the operator
names the hub and points a wildcard DNS entry (``*.<name>``) at it; on Kubernetes the chart's
``jupyterhub.hub.config.JupyterHub.subdomain_host`` names it (:mod:`.kubernetes`).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlparse

from jupyterhub.utils import subdomain_hook_idna

from ..errors import InvalidInput
from ..workspace_names import parse_workspace_user

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def subdomain_host(public_url: str, ip: str, port: int) -> str:
    """JupyterHub's ``subdomain_host`` for the hub's settings (``hub.public_url``, ``hub.ip``,
    ``hub.port``): ``scheme://name[:port]``. Refused, with what to set: an address that is not
    ``http(s)://name[:port]``, an IP address (it has no names below it), "auto" on a hub that
    listens beyond loopback."""
    if public_url == "auto":
        if ip not in LOOPBACK_NAMES:
            raise InvalidInput(
                f"hub.ip is {ip}: set hub.public_url to the address browsers use for the hub (e.g. "
                "https://pds.example.org) and point a wildcard DNS name (*.pds.example.org) at this "
                "machine: each user's workspaces and the gate get their own host name below it "
                "(docs/adr/0016-one-origin-per-user.md)")
        return f"http://localhost:{port}"
    return named_host(public_url, "hub.public_url")


def named_host(url: str, setting: str) -> str:
    """``scheme://name[:port]`` of ``url``, the value of ``setting`` (said in the error): refused
    unless it is ``http(s)://name[:port]`` with nothing after it and ``name`` is not an IP address
    (an address has no names below it). The local hub's ``hub.public_url`` and the chart's
    ``subdomain_host`` (pds_kernel.hub.kubernetes) both go through here."""
    parsed = urlparse(url)
    try:
        parsed_port = parsed.port
    except ValueError:
        parsed_port = -1
    name = parsed.hostname or ""
    if (parsed.scheme not in {"http", "https"} or not name or parsed_port == -1 or parsed.path not in {"", "/"}
            or parsed.params or parsed.query or parsed.fragment or parsed.username or parsed.password):
        raise InvalidInput(f"{setting} must be http(s)://name[:port] with nothing after it, "
                           f"got {url!r}")
    if _is_ip(name):
        raise InvalidInput(f"{setting} names the hub by an IP address ({name}): workspaces and the "
                           "gate need host names below the hub's; use a DNS name with a wildcard entry "
                           "(*.name), or localhost on this machine")
    return f"{parsed.scheme}://{name}" + (f":{parsed_port}" if parsed_port else "")


def service_url(host: str, service: str) -> str:
    """The public URL of a JupyterHub service's pages under ``host`` (a ``subdomain_host``): the
    host JupyterHub's ``idna`` hook gives it, and its prefix."""
    parsed = urlparse(host)
    domain = subdomain_hook_idna(service, parsed.hostname, kind="service")
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{domain}{port}/services/{service}/"


#: The label of every workspace's host: ``w--`` and :data:`DIGEST_CHARS` characters of a keyed
#: digest of the workspace user's name. No label of JupyterHub's ``idna`` hook starts so: plain
#: names have no ``--``, IDNA ones start with ``xn--``, hashed ones with ``u-``, services' end with
#: ``--service`` (and no service of the platform starts with ``w-``).
WORKSPACE_LABEL = re.compile(r"w--[a-z2-7]{26}")
DIGEST_CHARS = 26  #: 130 bits of the keyed digest (base32): never guessed, never shared by two workspaces
KEY_BYTES = 32  #: the least key :func:`workspace_host_hook` takes


def workspace_host_hook(key: bytes) -> Callable[[str, str, str], str]:
    """JupyterHub's ``subdomain_hook`` under ``key`` (the hub's own secret: :mod:`.local`,
    :mod:`.kubernetes`): a workspace user's host reads ``w--<26 characters>.<host>``, the
    characters a keyed digest (HMAC-SHA256, base32) of its name (``alice@diabetes-t2``); every other
    name (people, services) is named by JupyterHub's own ``idna`` hook.

    The label names neither the person nor the project: when it did (``w-alice--diabetes-t2``),
    anyone who guessed both names asked that host anonymously and learnt from the answer whether
    the workspace was running (JupyterHub answers for a running server, sends everything else to the
    hub). Without the key, the host of a workspace cannot be formed; it is in the hub's redirects
    to the person who opens it, and in her browser. The same key gives the same host at every start
    of the hub (bookmarks keep working); a new key moves every workspace to a new host."""
    if not isinstance(key, bytes) or len(key) < KEY_BYTES:
        raise InvalidInput(f"the key of the workspaces' host names must be at least {KEY_BYTES} bytes")

    def subdomain_hook(name: str, domain: str, kind: str) -> str:
        if kind == "user" and parse_workspace_user(name) is not None:
            digest = hmac.digest(key, name.encode("utf-8"), "sha256")
            return f"w--{base64.b32encode(digest).decode('ascii').lower()[:DIGEST_CHARS]}.{domain}"
        return subdomain_hook_idna(name, domain, kind)

    return subdomain_hook
