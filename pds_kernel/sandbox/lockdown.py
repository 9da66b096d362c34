"""Server-side lockdown of the notebook server: the airlock is the only way out of a workspace.

A jupyter_server extension, enabled on the command line by :mod:`.notebook_server`, the launcher
both spawners run (the local sandbox and the Kubernetes pod). It refuses, on the server (hiding buttons in JupyterLab would not stop a direct request):

* file downloads: ``/files/`` (also serves JupyterLab's "Download" and ``?download=1``), ``/view/``;
* nbconvert downloads and exports: ``/nbconvert/`` and ``/api/nbconvert``;
* contents-API reads of data: a file whose name or first bytes say it is data (Parquet, CSV,
  Excel, Arrow, SQLite, archives, ..., and delimited text under any name: a CSV renamed ``.txt``
  or ``.ipynb``) above :attr:`Lockdown.max_data_read_bytes`, any other file
  above :attr:`Lockdown.max_read_bytes`, a notebook above :attr:`Lockdown.max_notebook_bytes`
  (metadata-only requests, ``content=0``, stay allowed so the file browser works);
* uploads above :attr:`Lockdown.max_upload_bytes`, counting every chunk of a chunked upload;
* jupyter-server-proxy to any port but :attr:`Lockdown.allowed_proxy_ports` (the Dask dashboard),
  and to any other host; a proxied response that looks like a data file;
* anything past the workspace's budget of bytes shown in the browser: every HTTP body and
  WebSocket message but the platform's static assets is counted against a budget the hub keeps
  (:mod:`.budget`, :mod:`pds_kernel.hub.budget`), so scripted reads are bounded however the
  data is disguised (base64 parts, notebook outputs, kernel messages, terminals, the proxy).

The server must be started by :mod:`.notebook_server` (isolated Python, the platform's Jupyter
configuration only): at load time :func:`check_platform_config` stops it otherwise, and when a
server extension the platform does not know is enabled.

The refusals are installed as the first routing rules of the Tornado application, so they win over
the server's own handlers and over handlers other extensions add later. What stays possible (what a
person can read on screen, what the kernel prints) is described in ``docs/isolation.md``.
Settings are traits of the ``Lockdown`` section (``--Lockdown.max_upload_bytes=...``), given on
the command line by :mod:`.notebook_server` only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.contents.handlers import ContentsHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.routing import Matcher, PathMatches, Rule
from traitlets import Int, List, Set, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from . import budget
from .inside import DASK_DASHBOARD_PORT
from .notebook_server import ALLOWED_SERVER_EXTENSIONS, PLATFORM_CONFIG_DIR, is_undumpable

log = logging.getLogger(__name__)

#: File name endings treated as data whatever their content.
DATA_EXTENSIONS = frozenset({
    ".parquet", ".pq", ".csv", ".tsv", ".txt.gz", ".csv.gz", ".xlsx", ".xls", ".xlsm", ".ods",
    ".arrow", ".feather", ".ipc", ".sas7bdat", ".xpt", ".dta", ".sav", ".rds", ".rdata", ".pkl",
    ".pickle", ".h5", ".hdf5", ".sqlite", ".db", ".duckdb", ".npy", ".npz", ".zip", ".gz", ".bz2",
    ".xz", ".zst", ".tar", ".7z", ".json", ".jsonl", ".ndjson", ".orc", ".avro",
})
#: First bytes of binary data formats (caught even when renamed to ``.txt``).
DATA_MAGIC = (b"PAR1", b"PK\x03\x04", b"SQLite format 3", b"ARROW1", b"\x1f\x8b", b"BZh",
              b"\xfd7zXZ", b"\x28\xb5\x2f\xfd", b"\x93NUMPY", b"\x89HDF", b"ORC", b"Obj\x01",
              b"\xd0\xcf\x11\xe0", b"\x80\x04", b"\x80\x05")
#: How much of a file is read to recognise data by its content.
SNIFF_BYTES = 8192
_SEPARATORS = (b";", b",", b"\t", b"|")


def looks_tabular(head: bytes, min_lines: int = 4) -> bool:
    """True when ``head`` reads like delimited records: at least ``min_lines`` complete lines with
    the same number (at least one) of one separator. One JSON record per line counts too."""
    lines = [line for line in head.split(b"\n")[:-1] if line.strip()]  # the last one may be cut
    if len(lines) < min_lines:
        return False
    return any(len({line.count(sep) for line in lines}) == 1 and lines[0].count(sep) >= 1
               for sep in _SEPARATORS)


class Lockdown(Configurable):
    """Limits of the notebook server of a workspace (units in the help of each setting)."""

    max_data_read_bytes = Int(64 * 1024, config=True, help=(
        "Largest data file (Parquet, CSV, Excel, ... by name or content) the contents API returns, "
        "in bytes. Default 65536: enough to look at a small result table, not to carry data out."))
    max_read_bytes = Int(2 * 1024 * 1024, config=True, help=(
        "Largest other file (not a notebook) the contents API returns, in bytes. Default 2 MiB."))
    max_notebook_bytes = Int(20 * 1024 * 1024, config=True, help=(
        "Largest notebook the contents API returns, in bytes. Default 20 MiB (plots are embedded)."))
    max_upload_bytes = Int(10 * 1024 * 1024, config=True, help=(
        "Largest file that can be uploaded or saved, in bytes, all chunks counted. Default 10 MiB."))
    allowed_proxy_ports = List(default_value=[DASK_DASHBOARD_PORT], config=True, help=(
        "Loopback ports jupyter-server-proxy may reach (``/proxy/<port>/``). Default: the Dask "
        "dashboard (8787). Other ports and hosts are refused."))
    data_extensions = Set(Unicode(), default_value=set(DATA_EXTENSIONS), config=True, help=(
        "File name endings treated as data files (lower case, with the dot)."))
    budget_url = Unicode(config=True, help=(
        "URL of this workspace's reservation endpoint in the hub's budget ledger. Default: "
        "$JUPYTERHUB_API_URL/pds/served-bytes/$JUPYTERHUB_USER/$JUPYTERHUB_SERVER_NAME. Empty: "
        "every counted byte is refused."))
    budget_reservation_bytes = Int(4 * 1024 * 1024, config=True, help=(
        "Largest reservation of bytes from the hub (a killed server loses at most its last one); "
        "reservations start at 64 KiB and double up to this. Default 4 MiB."))

    budget_retry_seconds = Int(60, config=True, help=(
        "After the hub refused a reservation, seconds during which it is not asked again for more "
        "than it said was left. Default 60."))

    @default("budget_url")
    def _budget_url(self) -> str:
        api, user = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_USER")
        server = os.environ.get("JUPYTERHUB_SERVER_NAME")
        if not (api and user and server):
            return ""
        return budget.BudgetClient.for_hub(api, user, server, None, 1).url

    @validate("allowed_proxy_ports")
    def _ports(self, proposal):
        # On the command line of the notebook server this section is not a known class, so its
        # values arrive as text ("8787" or "[8787, 8788]"): parse them, refuse anything else.
        value = proposal["value"]
        items = value if isinstance(value, (list, tuple)) else [value]
        ports: list[int] = []
        for item in items:
            for part in str(item).strip("[]").split(","):
                if part.strip():
                    port = int(part)
                    if not 0 < port < 65536:
                        raise TraitError(f"not a port: {port}")
                    ports.append(port)
        return ports

    # ---- decisions (pure but for reading a file's size and first bytes) -----------------------
    def is_data(self, name: str, head: bytes) -> bool:
        lower = name.lower()
        return (any(lower.endswith(ext) for ext in self.data_extensions) or head.startswith(DATA_MAGIC)
                or looks_tabular(head))

    def read_refusal(self, os_path: str | None, name: str) -> str | None:
        """Why the content of the file at ``os_path`` must not be returned, or None."""
        if os_path is None:  # not a file-backed contents manager: decide on the name alone
            return "reading data files is disabled in workspaces" if self.is_data(name, b"") else None
        try:
            info = os.stat(os_path)
        except OSError:
            return None  # let the contents manager answer 404
        if not os.path.isfile(os_path):
            return None
        with open(os_path, "rb") as f:
            head = f.read(SNIFF_BYTES)
        size = info.st_size
        if self.is_data(name, head) and size > self.max_data_read_bytes:
            return (f"{name} is a data file of {size} bytes: data leaves a workspace only through an "
                    "export request (pds_kernel.workspace.request_export)")
        limit = self.max_notebook_bytes if name.lower().endswith(".ipynb") else self.max_read_bytes
        if size > limit:
            return f"{name} is {size} bytes, more than the {limit} a workspace may show"
        return None

    def upload_refusal(self, model: dict, existing_bytes: int) -> str | None:
        """Why a PUT of ``model`` must be refused (chunk > 1 of a chunked upload adds to the file)."""
        content = model.get("content")
        if content is None:
            return None
        if model.get("format") == "base64" and isinstance(content, str):
            size = len(content) * 3 // 4
        elif isinstance(content, str):
            size = len(content.encode("utf-8", "replace"))
        else:
            size = len(json.dumps(content))
        chunk = model.get("chunk")
        total = size + (existing_bytes if isinstance(chunk, int) and chunk not in (0, 1) else 0)
        if total > self.max_upload_bytes:
            return f"uploads are limited to {self.max_upload_bytes} bytes in a workspace"
        return None

    def proxy_allowed(self, rest: str) -> bool:
        """``rest`` is the path after ``/proxy/``: ``<port>/...`` or ``absolute/<port>/...``."""
        match = re.fullmatch(r"(?:absolute/)?(\d+)(?:/.*)?", rest)
        return bool(match) and int(match.group(1)) in self.allowed_proxy_ports


class BlockedHandler(JupyterHandler):
    """Answers 403 to every method, with the reason given at routing time."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    def _refuse(self, *args, **kwargs) -> None:
        self.log.warning("lockdown: refused %s %s", self.request.method, self.request.path)
        raise web.HTTPError(403, self.reason)

    get = post = put = patch = delete = head = options = _refuse

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": self.reason, "reason": "pds-lockdown"}))


class LockedContentsHandler(ContentsHandler):
    """The contents API with the lockdown's read and upload limits."""

    def initialize(self, lockdown: Lockdown) -> None:
        self.lockdown = lockdown

    def _os_path(self, path: str) -> str | None:
        getter = getattr(self.contents_manager, "_get_os_path", None)
        if getter is None:
            return None
        try:
            return getter(path.strip("/"))
        except web.HTTPError:
            return None

    @web.authenticated
    @authorized
    async def get(self, path: str = "") -> None:
        if self.get_query_argument("content", default="1") != "0":
            reason = self.lockdown.read_refusal(self._os_path(path), path.rsplit("/", 1)[-1])
            if reason:
                self.log.warning("lockdown: refused to read %s: %s", path, reason)
                raise web.HTTPError(403, reason)
        await super().get(path)

    @web.authenticated
    @authorized
    async def put(self, path: str = "") -> None:
        model = self.get_json_body() or {}
        os_path = self._os_path(path)
        existing = os.path.getsize(os_path) if os_path and os.path.isfile(os_path) else 0
        reason = self.lockdown.upload_refusal(model, existing)
        if reason:
            self.log.warning("lockdown: refused upload to %s: %s", path, reason)
            raise web.HTTPError(413, reason)
        await super().put(path)


class _ContentsPath(Matcher):
    """``/api/contents/<path>`` except the ``checkpoints`` and ``trust`` sub-resources."""

    def __init__(self, base_url: str) -> None:
        self.prefix = url_path_join(base_url, "/api/contents")
        self.excluded = re.compile(r".*/(?:checkpoints(?:/[^/]+)?|trust)$")

    def match(self, request):
        path = request.path
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return None
        rest = path[len(self.prefix):]
        if self.excluded.match(rest):
            return None
        return {"path_args": [], "path_kwargs": {"path": unquote_to_bytes(rest)}}


class _ProxyRefused(Matcher):
    """``/proxy/...`` requests the lockdown does not allow."""

    def __init__(self, base_url: str, lockdown: Lockdown) -> None:
        self.prefix = url_path_join(base_url, "/proxy/")
        self.lockdown = lockdown

    def match(self, request):
        if not request.path.startswith(self.prefix):
            return None
        return None if self.lockdown.proxy_allowed(request.path[len(self.prefix):]) else {}


def lockdown_rules(base_url: str, lockdown: Lockdown) -> list[Rule]:
    """The routing rules to put first (exported for tests and for documentation)."""
    def blocked(pattern: str, reason: str) -> Rule:
        return Rule(PathMatches(url_path_join(base_url, pattern)), BlockedHandler, {"reason": reason})

    downloads = ("file downloads are disabled in workspaces: results leave only through an export "
                 "request (pds_kernel.workspace.request_export)")
    return [
        blocked(r"/files/.*", downloads),
        blocked(r"/view/.*", downloads),
        blocked(r"/nbconvert/.*", "notebook exports and downloads are disabled in workspaces"),
        blocked(r"/api/nbconvert.*", "notebook exports and downloads are disabled in workspaces"),
        Rule(_ProxyRefused(base_url, lockdown), BlockedHandler,
             {"reason": "only the Dask dashboard can be reached through the proxy in a workspace"}),
        Rule(_ContentsPath(base_url), LockedContentsHandler, {"lockdown": lockdown}),
    ]


def check_platform_config(serverapp) -> None:
    """Raise RuntimeError unless the server runs as :mod:`.notebook_server` starts it: isolated
    Python, the platform's configuration directories only, known server extensions only."""
    from jupyter_core.paths import SYSTEM_CONFIG_PATH

    if not sys.flags.isolated:
        raise RuntimeError("the notebook server must run in isolated Python (python -I)")
    if not is_undumpable():
        raise RuntimeError("the notebook server must be non-dumpable (its kernels could ptrace it)")
    platform = str(PLATFORM_CONFIG_DIR)
    if os.environ.get("JUPYTER_CONFIG_DIR") != platform or serverapp.config_dir != platform:
        raise RuntimeError(f"the Jupyter configuration directory is not the platform's {platform}")
    allowed = {platform, *SYSTEM_CONFIG_PATH}
    prefix = Path(sys.prefix).resolve()
    for path in serverapp.config_file_paths:
        if path not in allowed and not Path(path).resolve().is_relative_to(prefix):
            raise RuntimeError(f"Jupyter configuration path {path} is not the platform's")
    enabled = {name for name, on in serverapp.jpserver_extensions.items() if on}
    unknown = enabled - ALLOWED_SERVER_EXTENSIONS
    if unknown:
        raise RuntimeError(f"server extension(s) {', '.join(sorted(unknown))} are not allowed in a workspace")
    if not serverapp.jpserver_extensions.get("pds_kernel.sandbox.lockdown"):
        raise RuntimeError("the lockdown extension is not enabled on the command line")


def exempt_static_prefixes(base_url: str) -> list[str]:
    """Paths served from the platform's read-only static directories only (not counted)."""
    return [url_path_join(base_url, p) for p in ("/static/", "/lab/static/", "/lab/extensions/", "/lab/api/themes/")]


def dashboard_static_dirs() -> list[str]:
    """The read-only static directories of the Dask dashboard (Bokeh's and distributed's)."""
    import importlib.util

    found = []
    for package, sub in (("bokeh", ("server", "static")), ("distributed", ("http", "static"))):
        spec = importlib.util.find_spec(package)
        if spec and spec.origin:
            path = Path(spec.origin).parent.joinpath(*sub)
            if path.is_dir() and path.resolve().is_relative_to(Path(sys.prefix).resolve()):
                found.append(str(path))
    return found


class SameOriginReferrer(web.OutputTransform):
    """Every answer of the workspace's server (its pages, its APIs, a redirect, an error, a response
    relayed from a port of the workspace, whatever header that one set) says ``Referrer-Policy:
    same-origin``: a link followed from JupyterLab to another site does not send the workspace's
    address. The address is a keyed name (pds_kernel.hub.origins), and a site that learnt it could
    ask it, without signing in, whether the workspace runs."""

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        headers["Referrer-Policy"] = "same-origin"
        return status_code, headers, chunk


def _jupyter_server_extension_points():
    return [{"module": "pds_kernel.sandbox.lockdown"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Install the rules, or stop the server: jupyter_server only logs a warning when an extension
    fails to load and would then serve without the lockdown (fail open), so exit instead."""
    try:
        check_platform_config(serverapp)
        lockdown = Lockdown(parent=serverapp)
        rules = serverapp.web_app.default_router.rules
        for index, rule in enumerate(lockdown_rules(serverapp.base_url, lockdown)):
            rules.insert(index, rule)
        client = budget.BudgetClient(lockdown.budget_url or None, os.environ.get("JUPYTERHUB_API_TOKEN"),
                                     lockdown.budget_reservation_bytes,
                                     retry_seconds=lockdown.budget_retry_seconds)
        budget.install(serverapp.web_app, client, exempt_static_prefixes(serverapp.base_url),
                       lambda chunk: lockdown.is_data("", chunk[:SNIFF_BYTES]),
                       url_path_join(serverapp.base_url, "/proxy/"), budget.PlatformFiles(dashboard_static_dirs))
        serverapp.web_app.transforms.append(SameOriginReferrer)  # last: over a relayed response's own
        from .notebook_server import project_page_config  # the page title names the project
        serverapp.web_app.settings["page_config_hook"] = project_page_config(
            serverapp.web_app.settings.get("page_config_hook"))
    except Exception as exc:
        serverapp.log.critical("PDS lockdown could not be installed, stopping the server: %r", exc)
        raise SystemExit(3) from exc
    serverapp.log.info("PDS lockdown active: downloads, exports and data reads are refused; "
                       "bytes shown are counted against %s", lockdown.budget_url or "nothing (all refused)")
