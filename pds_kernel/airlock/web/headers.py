"""The headers of every answer of the gate: its pages, its API, its files, its API description and
its style sheet alike (tests/security/test_redteam21_web.py: the last two had none of them).

No frame at all, not even of the same origin; no content sniffing; no script; a window another page
opened on the gate keeps no handle to it (COOP); a page of another origin cannot even load the
gate's answers as an image or a script (CORP); no address of the gate in a referrer to another
site; nothing kept by a cache but the style sheet. The gate has its own host
(pds_kernel.hub.origins). An answer that serves a file narrows the policy further (``sandbox``).
"""

from __future__ import annotations

from tornado.web import RequestHandler

POLICY = ("default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; object-src 'none'; "
          "script-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": POLICY,
}


def set_gate_headers(handler: RequestHandler, *, cacheable: bool = False) -> None:
    """Set :data:`HEADERS` on ``handler``'s answer, and ``Cache-Control: no-store`` unless
    ``cacheable`` (the static files: a style sheet, the same for everyone)."""
    for name, value in HEADERS.items():
        handler.set_header(name, value)
    if not cacheable:
        handler.set_header("Cache-Control", "no-store")
