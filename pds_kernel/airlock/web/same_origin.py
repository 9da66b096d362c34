"""A form of the gate's pages is accepted only from a page of the gate.

The gate's pages act as the signed-in checker with her cookies and a ``_xsrf`` token that
double-submits a cookie. A cookie does not keep to one host: a page on a sibling host
(``carol.localhost``, where her own JupyterLab runs: pds_kernel.hub.origins) may set one for the
parent domain, and then send a form to the gate with a token it chose
(tests/security/test_redteam16_origins.py). A browser says where a request comes from, in
``Sec-Fetch-Site`` (every current browser) and ``Origin`` (older ones, on every POST): the gate
refuses a form from anywhere but its own pages, whatever token it carries. A client that is not a
browser sends neither and is judged by its token as before (the API takes tokens only).
"""

from __future__ import annotations

from urllib.parse import urlparse

from tornado.httputil import HTTPServerRequest

REFUSED = ("this form came from a page that is not the gate's: open the request's page at the gate "
           "itself (its own address, not from a workspace or a link in a file) and send it again")


def foreign_origin(request: HTTPServerRequest) -> dict | None:
    """What the browser said when it says the request comes from a page of another origin (for the
    audit trail, bounded), else None."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    said = {"sec_fetch_site": (site or "")[:32], "origin": (origin or "")[:200]}
    if site is not None:
        return None if site == "same-origin" else said
    if origin is not None and (origin == "null" or urlparse(origin).netloc.lower() != request.host.lower()):
        return said
    return None
