"""``*.localhost`` names resolved to the loopback address in the test process, as browsers do.

The hub gives every user's workspaces and the gate their own host name below its own
(``alice.localhost:<port>``, ``airlock--service.localhost:<port>``: pds_kernel.hub.origins). Chromium and
Firefox resolve every name under ``localhost`` to the loopback address themselves (RFC 6761); the
C library of a Debian machine does not, and the tests' HTTP clients (requests, urllib) ask it. So
the test process answers those names itself, with the loopback address and nothing else: no
request of a test ever leaves the machine by one of them.
"""

from __future__ import annotations

import socket

_getaddrinfo = socket.getaddrinfo


def _loopback_for_localhost_names(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.getaddrinfo = _loopback_for_localhost_names

