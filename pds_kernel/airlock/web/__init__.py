"""The airlock web service: JSON API (OpenAPI 3) and HTML pages, run as a JupyterHub service.

``make_app(runtime, identity=...)`` builds the Tornado application; ``run_service()`` (also
``python -m pds_kernel.airlock.web``) reads the JupyterHub service environment and serves it.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

import jinja2
from tornado.web import Application

from ...settings import Gate
from ..checks.content import visible
from ..service import AirlockService
from . import handlers as h
from . import pages
from .connections import check_descriptors, make_server, server_options
from .logs import StaticFiles, log_request
from .openapi import build_openapi
from .packages_api import PackageRequestsApi

log = logging.getLogger(__name__)
__all__ = ["make_app", "make_server", "run_service", "server_options"]

_ID = r"([a-f0-9]{32})"
_INDEX = r"([0-9]{1,6})"


def make_app(runtime, identity, *, prefix: str = "/", service: AirlockService | None = None,
             cookie_secret: bytes | None = None, hub_prefix: str = "/hub/") -> Application:
    """The Tornado application. ``identity`` resolves users (production: :class:`HubIdentity`);
    ``hub_prefix`` is where the pages link back to (the hub's home and logout). The handlers pace
    bodies by the ``gate`` settings of ``runtime`` (:mod:`.connections`)."""
    if not prefix.endswith("/"):
        prefix += "/"
    service = service or AirlockService(runtime)
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True)
    templates.globals["hub"] = hub_prefix if hub_prefix.endswith("/") else hub_prefix + "/"
    templates.filters["visible"] = visible  # a researcher's text, its hidden characters shown
    common = dict(service=service, identity=identity, templates=templates, prefix=prefix)
    p = prefix
    routes = [
        (p + "api/openapi.json", h.OpenApiHandler, dict(document=build_openapi(prefix))),
        (p + "api/me", h.MeHandler, common),
        (p + "api/requests", h.RequestsApi, common),
        (p + f"api/requests/{_ID}", h.RequestApi, common),
        (p + f"api/requests/{_ID}/(submit|withdraw|revoke|release|reviews)", h.ActionApi, common),
        (p + f"api/requests/{_ID}/resubmit", h.ResubmitApi, common),
        (p + f"api/requests/{_ID}/files/{_INDEX}", h.StagedFileApi, common),
        (p + f"api/requests/{_ID}/download/{_INDEX}", h.DownloadApi, common),
        (p + "api/imports", h.ImportsApi, common),
        (p + "api/packages/requests", PackageRequestsApi, common),
        (p + "api/.*", h.NotFoundApi, common),
        (p, pages.HomePage, common),
        (p + "requests", pages.ListPage, common),
        (p + "imports/new", pages.ImportPage, common),
        (p + f"requests/{_ID}", pages.RequestPage, common),
        (p + f"requests/{_ID}/files/{_INDEX}", pages.FilePage, common),
        (p + f"requests/{_ID}/files/{_INDEX}/model-check.png", pages.ModelPlotPage, common),
        (p + f"requests/{_ID}/files/{_INDEX}/outputs/{_INDEX}/{_INDEX}", pages.NotebookFigurePage, common),
        (p + f"requests/{_ID}/download/{_INDEX}", pages.DownloadPage, common),
        (p + f"requests/{_ID}/review", pages.ReviewForm, common),
        (p + f"requests/{_ID}/(withdraw|revoke|release|submit)", pages.ActionForm, common),
    ]
    routes += identity.handlers(prefix)
    routes.append((p + ".*", pages.NotFoundPage, common))  # last: a page with the way back, not a bare 404
    return Application(
        routes,
        cookie_secret=cookie_secret or secrets.token_bytes(32),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": False, "samesite": "Strict", "path": prefix},
        static_path=str(Path(__file__).with_name("static")),
        static_url_prefix=prefix + "static/",
        static_handler_class=StaticFiles,
        log_function=log_request,  # never the address a client chose (.logs)
        login_url=None,
        gate=runtime.settings.gate if runtime is not None else Gate(),
    )


def hub_pages(environ) -> str:
    """Where the gate's pages link back to the hub: on the hub's own host, which JupyterHub gives
    a service as ``$JUPYTERHUB_HOST`` (its ``subdomain_host``; the chart sets it on Kubernetes).
    A bare path would stay on the gate's host (pds_kernel.hub.origins)."""
    return environ.get("JUPYTERHUB_HOST", "") + environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/"


def run_service() -> None:
    """Serve the gate as a JupyterHub service (environment set by the hub for managed services).

    Reads ``JUPYTERHUB_SERVICE_PREFIX`` (URL prefix), ``JUPYTERHUB_SERVICE_URL`` (where to listen),
    ``JUPYTERHUB_API_TOKEN``/``JUPYTERHUB_API_URL`` (used by HubOAuth), and optionally
    ``PDS_AIRLOCK_SOCKET``: a Unix socket to listen on as well (bind-mounted into sandboxes).
    The server bounds connections by the ``gate`` settings (:mod:`.connections`).
    """
    import asyncio

    from tornado.netutil import bind_unix_socket

    from ...runtime import Runtime
    from ...settings import load_settings
    from .identity import HubIdentity

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = Runtime(load_settings())
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/airlock/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    secret = os.environ.get("PDS_AIRLOCK_COOKIE_SECRET")
    hub_prefix = hub_pages(os.environ)
    app = make_app(runtime, HubIdentity(), prefix=prefix, hub_prefix=hub_prefix,
                   cookie_secret=bytes.fromhex(secret) if secret else None)

    async def main() -> None:
        check_descriptors(runtime.settings.gate)
        server = make_server(app, runtime.settings.gate)
        server.listen(url.port or 80, address=url.hostname or "127.0.0.1")
        socket_path = os.environ.get("PDS_AIRLOCK_SOCKET")
        if socket_path:
            server.add_socket(bind_unix_socket(socket_path, mode=0o666))
        log.info("airlock service on %s (prefix %s)%s", url.geturl(), prefix,
                 f" and unix socket {socket_path}" if socket_path else "")
        await asyncio.Event().wait()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # JupyterHub stops a managed service with SIGINT: a normal exit
        log.info("airlock service stopped")
    finally:
        runtime.close()
