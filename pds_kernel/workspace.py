"""What a researcher imports in a notebook: the project's extract, a Dask cluster, the export gate.

    from pds_kernel import workspace as ws
    ws.tables()                                   # ['COHORT', 'ER_PRS_F', ...]
    prs = ws.open_table("ER_PRS_F")               # polars LazyFrame over /data/ER_PRS_F/*.parquet
    client = ws.dask_client()                     # Dask cluster inside this workspace
    ddf = ws.dask_dataframe("ER_PRS_F")           # the same table as a Dask DataFrame
    ws.check("results/table1.csv")                # the gate's checks, without submitting
    ws.request_export(["results/table1.csv"], "Table 1 of the article")
    ws.request_package("texttable", "to print tables in the logs")  # then: pip install texttable

The extract is read-only at ``$PDS_DATA_DIR`` (``/data``) with a ``manifest.json``: a table with
PERSON_ID is a directory of Parquet partitions (``ER_PRS_F/part-00000-of-00004.parquet``, split
by a hash of PERSON_ID), COHORT and referentials are one file (``COHORT.parquet``); only tables
listed there (or present as files) can be opened, so a name never becomes an arbitrary path. Inside the local sandbox the Dask cluster is a ``LocalCluster`` in the
same sandbox (same isolation, same limits), with its dashboard on loopback for
jupyter-server-proxy. On Kubernetes (``DASK_GATEWAY__ADDRESS`` set) it is a dask-gateway cluster.
Results leave only through :func:`request_export`, which hands files to the airlock.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from .errors import InvalidInput, NotFound, PdsError

DEFAULT_DATA_DIR = "/data"
MANIFEST = "manifest.json"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def data_dir() -> Path:
    """Where the extract is: ``$PDS_DATA_DIR``, default ``/data``."""
    return Path(os.environ.get("PDS_DATA_DIR") or DEFAULT_DATA_DIR)


def manifest() -> dict:
    """The extract's manifest (build id, period, tables with rows, columns and SHA-256)."""
    path = data_dir() / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def tables() -> list[str]:
    """Names of the tables of this project's extract."""
    listed = manifest().get("tables")
    if listed:
        return sorted(name for name in listed if _TABLE_NAME.fullmatch(name))
    root = data_dir()
    if not root.is_dir():
        raise NotFound(f"no extract at {root}: is this a project workspace?")
    single = {p.stem for p in root.glob("*.parquet")}
    partitioned = {p.name for p in root.iterdir() if p.is_dir() and any(p.glob("part-*.parquet"))}
    return sorted(name for name in single | partitioned if _TABLE_NAME.fullmatch(name))


def table_files(name: str) -> list[Path]:
    """The Parquet files of table ``name`` (validated against :func:`tables`): one file, or its
    partitions in order."""
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise InvalidInput(f"invalid table name {name!r}")
    known = tables()
    if name not in known:
        raise NotFound(f"table {name} is not in this project's extract (tables: {', '.join(known) or 'none'})")
    entry = manifest().get("tables", {}).get(name, {})
    if not entry and (data_dir() / name).is_dir():  # no manifest: the partitions present
        entry = {"files": [{"file": f"{name}/{p.name}"} for p in sorted((data_dir() / name).glob("part-*.parquet"))]}
    if "files" in entry:
        files = [f.get("file") for f in entry["files"]]
        pattern = re.compile(rf"^{re.escape(name)}/part-[0-9]+-of-[0-9]+\.parquet$")
    else:
        files = [entry.get("file", f"{name}.parquet")]
        pattern = re.compile(rf"^{re.escape(name)}\.parquet$")
    for file in files:
        if not isinstance(file, str) or not pattern.match(file):
            raise InvalidInput(f"the manifest names an unexpected file for {name}: {file!r}")
    return [data_dir() / file for file in files]


def table_path(name: str) -> Path:
    """Where table ``name`` is: its file, or the directory of its partitions."""
    files = table_files(name)
    return files[0] if len(files) == 1 and files[0].name == f"{name}.parquet" else data_dir() / name


def open_table(name: str) -> pl.LazyFrame:
    """Table ``name`` as a polars LazyFrame over all its files (nothing is read until ``collect()``)."""
    return pl.scan_parquet(table_files(name), hive_partitioning=False)


def dask_dataframe(name: str, **read_parquet_options: Any):
    """Table ``name`` as a Dask DataFrame (computed on the cluster of :func:`dask_client` if any),
    one Dask partition per file at least."""
    import dask.dataframe as dd

    return dd.read_parquet([str(f) for f in table_files(name)], **read_parquet_options)


def _dashboard_link() -> str:
    """The dashboard as the browser reaches it: through jupyter-server-proxy under the server's
    prefix (``/user/<name>/<project>/proxy/<port>/status``). ``{port}`` is left for distributed
    to fill with the port the scheduler really has, so the link never points elsewhere."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return f"{prefix.rstrip('/')}/proxy/{{port}}/status"


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def dask_client(workers: int | None = None, wait: float | None = None):
    """A Dask client on this workspace's cluster, started on first use and reused afterwards.

    Workers default to ``$PDS_DASK_WORKERS`` (the project's setting in the registry); memory is
    shared out of ``$PDS_MEM_LIMIT_MB`` (one share kept for the notebook's own kernel).

    On Kubernetes the cluster has no dashboard (``client.dashboard_link`` is None): follow progress
    with ``distributed.progress`` or the futures' status instead. It waits for the cluster's first
    worker at most ``wait`` seconds (default ``$PDS_DASK_WORKER_WAIT_SECONDS``, 120 s), saying so;
    when none joined it shuts the cluster down and raises
    :class:`~pds_kernel.dask_workers.NoDaskWorker`, saying whether the worker pods refused the
    project's extract (the hub recorded it) or what else to check (:mod:`pds_kernel.dask_workers`).
    A workspace runs one cluster at a time there, and it stops with the workspace: while another
    notebook's cluster runs, the gateway refuses a new one and names it (close it there, or stop it
    with ``dask_gateway.Gateway().stop_cluster(name)``).

    Locally the cluster belongs to the client: ``client.close()`` shuts the cluster down too, so
    the next notebook's cluster gets the dashboard port again (8787, the only one the workspace's
    proxy serves). While another notebook's cluster still holds it, this refuses with what to do
    rather than start a cluster whose dashboard nobody could open."""
    import dask
    from distributed import Client, default_client

    try:
        return default_client()
    except ValueError:
        pass
    workers = workers or int(os.environ.get("PDS_DASK_WORKERS") or 2)
    if workers < 1:
        raise InvalidInput(f"a Dask cluster needs at least one worker, not {workers}")
    port = int(os.environ.get("PDS_DASK_DASHBOARD_PORT") or 8787)
    dask.config.set({
        "distributed.dashboard.link": _dashboard_link(),
        # the workspace's data fit a task-based shuffle; the peer-to-peer one logs a WARNING for
        # every shuffle ("... initialized by task ... executed on worker ...") that reads as an error
        "dataframe.shuffle.method": "tasks",
    })
    if os.environ.get("DASK_GATEWAY__ADDRESS"):
        from dask_gateway import GatewayCluster

        from .dask_workers import wait_for_first_worker, wait_seconds

        # what Gateway().new_cluster() makes, without a second Gateway left open on the same loop
        cluster = GatewayCluster(shutdown_on_close=True)
        # No dashboard on Kubernetes: the gateway proxy refuses its route (it would serve the
        # browser outside the workspace's served-bytes budget, docs/isolation.md); the link the
        # gateway reports would only lead to that refusal.
        cluster.dashboard_link = None
        cluster.scale(workers)
        client = cluster.get_client()
        wait_for_first_worker(client, cluster, timeout=wait if wait is not None else wait_seconds(os.environ))
        return client
    if _port_in_use(port):
        raise InvalidInput(f"another notebook's Dask cluster is running (it holds the dashboard port "
                           f"{port}): run client.close() there, or shut that notebook's kernel down, "
                           "then call dask_client() again")
    mem_limit_mb = int(os.environ.get("PDS_MEM_LIMIT_MB") or 0)
    memory_limit = f"{mem_limit_mb // (workers + 1)}MiB" if mem_limit_mb else "auto"
    # Client(**cluster options) starts a LocalCluster that the client owns: close() stops both
    return Client(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=f"127.0.0.1:{port}", memory_limit=memory_limit,
        local_directory=os.environ.get("TMPDIR") or "/tmp",
    )


def _export_files(files: Iterable[str | os.PathLike]) -> list[Path]:
    """Resolve the files to export: each must be a file inside the home (never the extract)."""
    home = Path(os.environ.get("HOME") or Path.home()).resolve()
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    resolved = []
    for item in files:
        path = Path(item)
        path = (path if path.is_absolute() else Path.cwd() / path).resolve()
        if not path.is_relative_to(home):
            raise InvalidInput(f"{item} is not in your home ({home}): only your own results can be exported")
        if not path.is_file():
            raise NotFound(f"{item} is not a file")
        resolved.append(path)
    if not resolved:
        raise InvalidInput("give at least one file to export")
    return resolved


def _sdc_records(paths: list[Path]) -> dict[str, dict]:
    """ACRO records that :mod:`pds_kernel.sdc` sessions of this kernel made for ``paths``.

    Only looked up when the notebook imported ``pds_kernel.sdc`` (no session, no record: importing
    it here would load ACRO for nothing)."""
    sdc = sys.modules.get("pds_kernel.sdc")
    return sdc.evidence_for(paths) if sdc is not None else {}


def _resubmission_records(paths: list[Path]) -> dict[str, dict]:
    """Every sdc record of ``paths`` (ACRO's and sdc's own, each with its declaration)."""
    sdc = sys.modules.get("pds_kernel.sdc")
    return sdc.records_for(paths) if sdc is not None else {}


def _sdc_declarations(paths: list[Path]) -> dict[str, dict]:
    """Declarations (which column is what, contributions) that :mod:`pds_kernel.sdc` saved for ``paths``."""
    sdc = sys.modules.get("pds_kernel.sdc")
    return sdc.declarations_for(paths) if sdc is not None else {}


def _with_sdc_records(context: Mapping | None, paths: list[Path]) -> dict:
    """``context`` with the sdc records of ``paths`` under ``"acro"`` and their declarations under
    ``"tables"``; what is given explicitly wins."""
    context = dict(context or {})
    records = _sdc_records(paths)
    if records:
        explicit = context.get("acro") if isinstance(context.get("acro"), Mapping) else {}
        context["acro"] = {**records, **explicit}
    declarations = _sdc_declarations(paths)
    if declarations:
        explicit = context.get("tables") if isinstance(context.get("tables"), Mapping) else {}
        context["tables"] = {**declarations, **explicit}
    return context


def check(files: Iterable[str | os.PathLike] | str, context: Mapping | None = None, *, quiet: bool = False) -> dict:
    """Run the gate's checks on ``files`` here, before submitting: ``{"files": [{"name", "verdict",
    "findings"...}]}``, and a line per file unless ``quiet``. Files saved with :mod:`pds_kernel.sdc`
    carry their declaration, as with :func:`request_export`. The thresholds are the platform's
    defaults (``$PDS_MIN_CELL``, ``$PDS_MAX_TABLE_ROWS`` override them); the gate judges again on
    submission with the project's own, its PERSON_IDs and its released tables. A model's numbers
    are compared with the extract at :func:`data_dir`, as the gate compares them with the project's."""
    from .airlock.checks import DEFAULT_MAX_BYTES, Thresholds
    from .airlock.checks.model_reference import reference_at
    from .airlock.gate import ProjectGate, check_paths

    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = [Path(f).resolve() for f in files]
    for path in paths:
        if not path.is_file():
            raise NotFound(f"{path} is not a file")
    overrides = {"min_cell": os.environ.get("PDS_MIN_CELL"), "max_table_rows": os.environ.get("PDS_MAX_TABLE_ROWS")}
    thresholds = Thresholds(**{k: int(v) for k, v in overrides.items() if v})
    gate = ProjectGate(thresholds, DEFAULT_MAX_BYTES, reference=lambda: reference_at(data_dir()))
    report = check_paths(gate, paths, _with_sdc_records(context, paths))
    if not quiet:
        for f in report["files"]:
            rules = sorted({x["rule"] for x in f["findings"] if x["status"] != "pass"})
            print(f"{f['name']}: {f['verdict']}" + (f" ({', '.join(rules)})" if rules else "")
                  + (" - would leave as the gate's copy, rebuilt from its cells or pixels" if f.get("rebuilt") else ""))
    return report


def declare_model(data: str | os.PathLike, target: str, train: str | os.PathLike, test: str | os.PathLike,
                  features: Iterable[str] | None = None) -> dict:
    """The declaration of a model's training and test rows for :func:`request_export`'s ``models``.

    ``data`` is a table (.parquet or .csv) in your home with one row per person: the features, the
    ``target`` column and, to declare persons, ``PERSON_ID``. ``train`` and ``test`` are tables with a
    ``PERSON_ID`` column (or a ``row`` column: row numbers of ``data``). Paths may be relative to the
    current directory; they are sent relative to your home. The platform rebuilds these rows in a
    fresh sandbox and attacks the model with them (docs/ai.md)."""
    home = Path(os.environ.get("HOME") or Path.home()).resolve()
    out: dict = {"target": str(target)}
    for key, item in (("data", data), ("train", train), ("test", test)):
        path = Path(item)
        path = (path if path.is_absolute() else Path.cwd() / path).resolve()
        if not path.is_relative_to(home) or not path.is_file():
            raise InvalidInput(f"{item} is not a file in your home ({home}): declare your own tables")
        out[key] = path.relative_to(home).as_posix()
    if features is not None:
        out["features"] = [str(c) for c in features]
    return out


def request_export(files: Iterable[str | os.PathLike] | str, justification: str,
                   context: str | Mapping | None = None, *, models: Mapping[str, Mapping] | None = None):
    """Ask for ``files`` to leave the workspace: they go to the airlock for checks and review.

    ``justification`` says what the files are and why they are needed (reviewers read it);
    ``context`` can describe how they were produced and declare tables (``{"tables": {name:
    {"labels": [...], "counts": [...], "magnitudes": {...}}}}``). Files saved with
    :mod:`pds_kernel.sdc` carry their declaration and ACRO record automatically (``context``
    still adds or overrides them). ``models`` maps each model file's name to the declaration of its
    training and test rows (:func:`declare_model`): the platform attacks the model with them.
    Returns what the airlock answers (the request and its automatic check results)."""
    if not justification or not justification.strip():
        raise InvalidInput("say why these files must leave the workspace (justification)")
    paths = _export_files(files)
    from .airlock.client import submit  # the airlock may be deployed without this module

    if isinstance(context, str):
        context = {"description": context}
    if models:
        from .modelcheck.inputs import check_models_context

        context = {**(context or {}), "models": check_models_context(models)}
    answer = submit([str(p) for p in paths], justification.strip(), _with_sdc_records(context, paths))
    return ExportAnswer(answer) if isinstance(answer, dict) else answer


#: Where the gate's pages are below its address (the JupyterHub service ``airlock``).
AIRLOCK_PAGES = "services/airlock/requests"


def airlock_pages() -> str:
    """The gate's request pages as a browser reaches them: on the gate's own host, which the hub
    gives the workspace as ``$PDS_AIRLOCK_PAGES`` (pds_kernel.hub.origins); a path on the hub's
    host where it does not."""
    pages = os.environ.get("PDS_AIRLOCK_PAGES", "")
    if pages.startswith(("http://", "https://")):
        return pages.rstrip("/") + "/requests"
    base = os.environ.get("JUPYTERHUB_BASE_URL") or "/"
    return f"{base.rstrip('/')}/{AIRLOCK_PAGES}"


class ExportAnswer(dict):
    """The gate's answer to an export request (a plain ``dict``), shown in a notebook with a link
    to the request's page, where the author follows its state and downloads it once released."""

    @property
    def url(self) -> str:
        return f"{airlock_pages()}/{self.get('id', '')}"

    def _repr_html_(self) -> str:
        from html import escape

        files = "".join(f"<li>{escape(str(f.get('name', '')))}: {escape(str(f.get('check_status', '')))}"
                        f"{_findings_html(f)}</li>" for f in self.get("files", []) if isinstance(f, dict))
        failed = any(isinstance(f, dict) and f.get("check_status") == "fail" for f in self.get("files", []))
        advice = ("<p class=\"pds-check-advice\">A file failed the automatic checks: output checkers "
                  "usually ask for changes. To fix it now, withdraw the request on its page, change the "
                  f"file (suppress or merge the cells under the threshold of {escape(str(self.get('min_cell', '')))}, "
                  "or what the findings name) and ask again; <code>ws.check(files)</code> runs the same "
                  "checks before you ask.</p>") if failed else ""
        return (f"<p>Export request <code>{escape(str(self.get('id', ''))[:8])}</code> is "
                f"<strong>{escape(str(self.get('state', '')))}</strong>. "
                f'<a href="{escape(self.url)}" target="_blank" class="pds-request-link">'
                f"Follow it on the airlock page</a> (state, reviews, download once released).</p>"
                f"<ul>{files}</ul>{advice}")


def _findings_html(file: dict) -> str:
    """The findings of one file that are not a pass (rule, message, where), as the gate reported
    them to the author (redacted: positions, no values); at most 10, then how many more."""
    from html import escape

    check = file.get("check") if isinstance(file.get("check"), dict) else {}
    found = [x for x in check.get("findings", []) if isinstance(x, dict) and x.get("status") != "pass"]
    items = []
    for x in found[:10]:
        where = ", ".join(f"{label} {x[key] + 1}" for key, label in (("row", "row"), ("col", "column"))
                          if isinstance(x.get(key), int))
        items.append(f"<li>{escape(str(x.get('status', '')))}: {escape(str(x.get('rule', '')))}: "
                     f"{escape(str(x.get('message', '')))}{f' ({where})' if where else ''}</li>")
    more = len(found) - len(items) + sum(v for v in check.get("omitted", {}).values() if isinstance(v, int))
    if more > 0:
        items.append(f"<li>{more} more finding(s): see the request's page</li>")
    return f"<ul class=\"pds-findings\">{''.join(items)}</ul>" if items else ""


def request_package(package: str, justification: str = "") -> dict:
    """Ask for a Python package that is not approved yet (``"NAME"`` or ``"NAME==VERSION"``).

    The request goes to the gate with this workspace's identity and project, and is audited; an
    admin approves it (``pds packages approve NAME==VERSION``), after which ``pip install NAME``
    works in every workspace. Returns the request (id, state)."""
    if not isinstance(package, str) or not package.strip():
        raise InvalidInput("name the package: ws.request_package(\"NAME\") or \"NAME==VERSION\"")
    from .airlock.client import AirlockClient

    answer = AirlockClient().request_package(package.strip(), (justification or "").strip())
    print(f"requested {package.strip()} (request {answer.get('id')}): an admin approves it, "
          "then pip install it in a terminal or with %pip")
    return answer


def resubmit_export(request_id: str, files: Iterable[str | os.PathLike] | str = (), *,
                    remove: Iterable[str] = (), justification: str | None = None):
    """Answer an output checker's request for changes: send corrected ``files`` (same names replace
    the reviewed ones, and lose their reviews), drop ``remove``, and submit the request again.
    New versions saved with :mod:`pds_kernel.sdc` carry their new ACRO record."""
    paths = _export_files(files) if files else []
    from .airlock.client import AirlockClient

    return AirlockClient().resubmit(request_id, [str(p) for p in paths], remove=list(remove),
                                    justification=justification, acro=_resubmission_records(paths) or None)


def _parse_magic_line(line: str) -> tuple[list[str], str]:
    """``FILE [FILE...] -- JUSTIFICATION`` → (files, justification); shell-like quoting for files."""
    import shlex

    head, sep, justification = line.partition("--")
    if not sep or not justification.strip():
        raise InvalidInput("usage: %request_export FILE [FILE...] -- why these files must leave")
    try:
        files = shlex.split(head)
    except ValueError as exc:
        raise InvalidInput(f"%request_export: {exc}") from None
    if not files:
        raise InvalidInput("usage: %request_export FILE [FILE...] -- why these files must leave")
    return files, justification.strip()


def _request_export_magic(line: str):
    """``%request_export results.csv figure.png -- monthly counts for the paper``"""
    files, justification = _parse_magic_line(line)
    try:
        answer = request_export(files, justification)
    except PdsError as exc:  # a researcher's mistake: one line, no traceback
        print(f"export refused: {exc}")
        return None
    request = answer.get("request", answer) if isinstance(answer, dict) else answer
    if isinstance(request, dict):
        link = answer.url if isinstance(answer, ExportAnswer) else airlock_pages()
        print(f"request {request.get('id', '?')} is {request.get('state', '?')}: "
              f"output checkers will review it; follow it at {link}")
    return answer


def load_ipython_extension(ipython) -> None:
    """``%load_ext pds_kernel.workspace`` adds the ``%request_export`` line magic."""
    ipython.register_magic_function(_request_export_magic, magic_kind="line", magic_name="request_export")


def person_features(window, *, dask: bool = False, **options):
    """One row per cohort member with age, sex, claims, drugs by ATC class and stays by ICD-10
    chapter over ``window`` (a :class:`pds_kernel.features.Window`), as a polars LazyFrame or, with
    ``dask=True``, a Dask DataFrame computed on :func:`dask_client`'s cluster. See
    :func:`pds_kernel.features.person_table` for ``options``."""
    from .features import person_table

    return person_table(dask_dataframe if dask else open_table, window, **options)
