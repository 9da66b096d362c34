"""What the gate logs of a request: its method, status, time and route, never the address a client
chose beyond the forms the gate serves.

Code in a workspace reaches the gate (its socket, or its address on Kubernetes) and chooses the
address it asks for. Tornado logs each request's whole address (path and query string, up to the
head's limit) in its access log and in the warning of an error answer, and the gate's log is read by
operators, who do not see project data, and often shipped further: it was a way out of the
workspace beside the airlock, about 8 KiB a request (tests/security/test_redteam12_logs.py). So
every line the gate writes about a request names it by :func:`summary`: the path when it is an
address the gate serves (routes hold only request ids, file numbers and fixed words), else the
length of the address; a query string by its length only.
"""

from __future__ import annotations

import logging

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from .headers import set_gate_headers

access_log = logging.getLogger("tornado.access")

#: the longest path a log line shows (every address the gate serves is shorter)
MAX_LOGGED_PATH = 200


class SafeSummary:
    """Mixin of every handler of the gate: Tornado's own warnings (an error answer) name the request
    by :func:`summary` too. ``known_address`` is False on the handlers of addresses the gate does not serve."""

    known_address = True

    def _request_summary(self) -> str:
        return summary(self)


def _known(handler: RequestHandler) -> bool:
    known = getattr(handler, "known_address", False)
    return bool(known() if callable(known) else known)


def safe_path(handler: RequestHandler) -> str:
    """The request's path when it is an address the gate serves, else its length (for logs and the
    audit trail alike)."""
    path = handler.request.path
    if _known(handler) and len(path) <= MAX_LOGGED_PATH:
        return path
    return f"(an address the gate does not serve, {len(path)} characters)"


def summary(handler: RequestHandler) -> str:
    """``METHOD path (ip)``, the path only when it is an address the gate serves (:func:`safe_path`),
    the query string by its length only."""
    request = handler.request
    path = safe_path(handler)
    query = f"?({len(request.query)} characters)" if request.query else ""
    return f"{request.method} {path}{query} ({request.remote_ip})"


def log_request(handler: RequestHandler) -> None:
    """The application's ``log_function``: Tornado's levels (info, warning from 400, error from
    500), the gate's summary."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(level, "%d %s %.2fms", status, summary(handler), 1000.0 * handler.request.request_time())


class StaticFiles(SafeSummary, StaticFileHandler):
    """The gate's static files; the address of one it does not have is not logged."""

    def known_address(self) -> bool:  # type: ignore[override]
        return self.get_status() < 400

    def set_default_headers(self) -> None:  # the gate's headers, its own 404 included
        set_gate_headers(self, cacheable=True)

    def parse_url_path(self, url_path: str) -> str:
        """The style sheet's name; a name with a control character (a NUL made the file system
        raise: a 500, and Tornado logged the whole request, headers and all) is no file of the gate."""
        if not url_path.isprintable():
            raise HTTPError(404)
        return super().parse_url_path(url_path)
