"""``pds airlock``: everything the review pages do, with the same rules and the same audit.

The acting identity is ``--as`` (or ``$PDS_ACTOR``) and must be a registry user: the CLI is not a
way around the roles.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from ..errors import InvalidInput
from ..validate import is_digits
from .app import console

app = typer.Typer(help="Export and import requests: list, show, submit, import, review, release, download.",
                  no_args_is_help=True)


def _service(ctx: typer.Context):
    from ..airlock.service import AirlockService

    return AirlockService(ctx.obj.runtime)


def _show(view) -> None:
    console.print(f"request [bold]{view.id}[/] · project {view.project} · author {view.author} · "
                  f"state [bold]{view.state}[/] · round {view.round} · "
                  f"{view.complete_reviews}/{view.reviews_required} reviews · checks {view.check_status}")
    table = Table("#", "file", "kind", "size", "check", "sha256")
    for f in view.files:
        table.add_row(str(f.index), f.name, f.kind, str(f.size), f.check_status, f.sha256[:16] or "once released")
    console.print(table)
    for f in view.files:
        _findings(f, limit=20)
    if view.reviews:
        reviews = Table("reviewer", "file", "decision", "comment", "counts")
        for r in view.reviews:
            reviews.add_row(r.reviewer, str(r.file_index), r.decision, escape(r.comment), "yes" if r.valid else "no")
        console.print(reviews)
    if view.reviews_hidden:
        console.print("other reviews are hidden until you submit yours")
    if view.actions:
        console.print("you may: " + ", ".join(view.actions))


def _findings(f, limit: int | None = None) -> None:
    """One line per finding of file ``f`` (the first ``limit``), located as in the web page."""
    found = f.check.get("findings", [])
    for finding in found[:limit]:
        where = (f"row {finding['row'] + 1} col {finding['col'] + 1}" if "row" in finding
                 else f"col {finding['col'] + 1}" if "col" in finding
                 else f"line {finding['line']}" if "line" in finding else "file")
        console.print(escape(f"  {f.name}: [{finding['status']}] {finding['rule']} at {where}: {finding['message']}"),
                      highlight=False)
    if limit is not None and len(found) > limit:
        console.print(f"  {escape(f.name)}: {len(found) - limit} more finding(s): airlock show ID --file {f.index}")


#: Extensions whose bytes are printed as they are (what the checker votes on is exactly this text).
_TEXT_EXTENSIONS = {".csv", ".tsv", ".txt", ".md", ".json", ".log", ".py", ".r", ".sql", ".sh", ".ipynb", ".qmd", ".rmd"}
_CELL_STYLE = {"fail": "bold red", "review": "yellow"}
_CELL_MARK = {"fail": " (!)", "review": " (?)"}


def _print_file(f, path: Path) -> None:
    """Show a staged file to a checker: text as it is, other tables as a table with the flagged
    cells marked (like the web page), figures and models by the path of their read-only copy."""
    from ..airlock.web.render import MAX_TEXT, render_file

    console.print(f"file {f.index}: [bold]{escape(f.name)}[/] · {f.kind} · {f.size} bytes · "
                  f"checks {f.check_status} · SHA-256 {f.sha256}", highlight=False)
    if Path(f.name).suffix.lower() in _TEXT_EXTENSIONS and f.check.get("rules", {}).get("file-type") != "fail":
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)
        console.rule()
        console.out(terminal_text(data[:MAX_TEXT].decode("utf-8", "replace")), highlight=False, end="")
        console.rule()
        if len(data) > MAX_TEXT:
            console.print(f"showing the first {MAX_TEXT} bytes")
    else:
        rendered = render_file(f, path)
        if rendered.mode == "table":
            table = Table(*[escape(h) for h in rendered.header])
            for row in rendered.rows:
                table.add_row(*[f"[{_CELL_STYLE[cls]}]{escape(v + _CELL_MARK[cls])}[/]" if cls in _CELL_STYLE
                                else escape(v) for v, cls, _ in row])
            console.print(table)
            console.print("(!) fails a check, (?) needs review: see the findings below")
        elif rendered.mode == "text":
            console.out(terminal_text(rendered.text), highlight=False)
        else:
            console.print(f"no terminal preview for a {f.kind}: the read-only staged copy is {path}", highlight=False)
        if rendered.note:
            console.print(escape(rendered.note), highlight=False)
    _findings(f)


def terminal_text(text: str) -> str:
    """A researcher's text as a checker's terminal shows it: every character no one sees written
    ``<U+XXXX>`` (escape sequences that hide, move, recolour or copy text among them; look-alike
    letters, blanks ending a line), and a carriage return that would overwrite its line ends it
    instead, shown."""
    from ..airlock.checks.content import visible_text

    return visible_text(text).replace("\r\n", "\n").replace("\r", "<U+000D>\n")


def _parse_verdict(raw: str, files: dict[int, str]) -> tuple[int, dict]:
    """``FILE=DECISION[:COMMENT]`` (FILE: number or name) -> (index, {decision, comment})."""
    target, sep, rest = raw.partition("=")
    if not sep or not rest:
        raise InvalidInput(f"--verdict {raw!r}: write FILE=DECISION[:COMMENT], e.g. 1=request_changes:round to 5")
    target = target.strip()
    by_name = {name: index for index, name in files.items()}
    if is_digits(target, 9) and int(target) in files:
        index = int(target)
    elif target in by_name:
        index = by_name[target]
    else:
        raise InvalidInput(f"--verdict {raw!r}: no file {target!r} in this request "
                           f"(files: {', '.join(f'{i}={n}' for i, n in files.items())})")
    decision, _, comment = rest.partition(":")
    return index, {"decision": decision.strip(), "comment": comment.strip()}


def collect_verdicts(files: dict[int, str], verdict: list[str], decision: str | None, comment: str,
                     only: list[int]) -> dict[int, dict]:
    """Per-file verdicts from ``--verdict`` options, then ``--decision`` for the other files (or only
    for ``--file`` numbers)."""
    out: dict[int, dict] = {}
    for raw in verdict:
        index, given = _parse_verdict(raw, files)
        if index in out:
            raise InvalidInput(f"two verdicts for file {index} ({files[index]})")
        out[index] = given
    if only and decision is None:
        raise InvalidInput("--file chooses the files --decision applies to: give --decision too")
    if decision is not None:
        for index in only or list(files):
            if index not in files:
                raise InvalidInput(f"no file number {index} in this request")
            out.setdefault(index, {"decision": decision, "comment": comment})
    if not out:
        raise InvalidInput("give --decision (same verdict on every file) or --verdict FILE=DECISION[:COMMENT]")
    return out


@app.command("list")
def list_(ctx: typer.Context,
          scope: str = typer.Option("mine", help="mine | queue (what you may review) | all | others (all but "
                                                 "your own)"),
          project: str | None = typer.Option(None, help="Only this project."),
          state: str | None = typer.Option(None, help="Only requests in this state."),
          author: str | None = typer.Option(None, help="Only requests by this user."),
          page: int = typer.Option(1, min=1, help="Page to show (newest requests first)."),
          per_page: int = typer.Option(50, min=1, help="Requests per page (at most 500).")) -> None:
    """List export requests you may see, newest first, one page at a time."""
    result = _service(ctx).list_page(ctx.obj.actor, scope=scope, project=project, state=state, author=author,
                                     page=page, per_page=per_page)
    table = Table("request", "project", "author", "state", "checks", "files", "updated")
    for r in result.items:
        table.add_row(r.id, r.project, r.author, r.state, r.check_status, str(r.files), r.updated_at[:16])
    console.print(table)
    console.print(f"page {result.page} of {result.pages} ({result.total} requests)"
                  + (f"; next: --page {result.page + 1}" if result.has_next else ""))


@app.command("show")
def show(ctx: typer.Context, request_id: str = typer.Argument(..., help="Request id."),
         as_json: bool = typer.Option(False, "--json", help="Print the request as JSON."),
         file: int | None = typer.Option(None, "--file", help="Show this file (by number): text and CSV as "
                                            "they are, other tables with flagged cells marked, figures and "
                                            "models by path; audited as a file view.")) -> None:
    """Show a request: files, check results, reviews you may see, what you may do."""
    service = _service(ctx)
    if file is not None:
        f, path = service.open_staged(ctx.obj.actor, request_id, file)
        _print_file(f, path)
        return
    view = service.get_request(ctx.obj.actor, request_id)
    if as_json:
        console.print_json(json.dumps(view.to_dict(), default=str))
    else:
        _show(view)


@app.command("submit")
def submit(ctx: typer.Context,
           project: str = typer.Option(..., help="Project id."),
           files: list[Path] = typer.Argument(..., help="Files to export."),
           justification: str = typer.Option(..., "--why", help="Why these outputs must leave."),
           author: str | None = typer.Option(None, help="Admins: submit on behalf of this researcher."),
           context: Path | None = typer.Option(None, help="JSON file with the request context (ACRO records...)."),
           draft: bool = typer.Option(False, help="Stage and check, but do not submit yet.")) -> None:
    """Stage files, check them and submit them for review (admins and tests; researchers use their workspace)."""
    data = {}
    if context is not None:
        try:
            data = json.loads(context.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"context file {context}: {exc}") from None
    for path in files:
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
    with ExitStack() as stack, Progress(console=console, transient=True) as progress:
        progress.add_task("staging and checking", total=None)
        streams = [(p.name, stack.enter_context(open(p, "rb"))) for p in files]
        view = _service(ctx).create(ctx.obj.actor, project, streams, justification, data,
                                    author=author, submit=not draft)
    _show(view)


@app.command("import")
def import_(ctx: typer.Context,
            project: str = typer.Argument(..., help="Project id."),
            files: list[Path] = typer.Argument(..., help="Files to bring in (code, reference data, .zip/.tar.gz)."),
            justification: str = typer.Option(..., "--justification", "--why", help="Why these files are needed."),
            kind: str = typer.Option("files", help="files, or cohort: one CSV with a NIR column, linked at intake.")
            ) -> None:
    """Import files into a project's workspaces: scanned, reviewed by its output checkers, then
    read-only under /imports/<request>/ (the same as the gate's page 'Import files')."""
    from ..airlock.imports import ImportService

    for path in files:
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
    with ExitStack() as stack, Progress(console=console, transient=True) as progress:
        progress.add_task("staging and scanning", total=None)
        streams = [(p.name, stack.enter_context(open(p, "rb"))) for p in files]
        view = ImportService(_service(ctx)).create(ctx.obj.actor, project, streams, justification, kind=kind)
    _show(view)


def _context_option(raw: str | None) -> dict:
    """``--context``: a JSON object, or the path of a file holding one."""
    if not raw:
        return {}
    text = raw
    if not raw.lstrip().startswith("{"):
        try:
            text = Path(raw).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"--context: neither JSON nor a readable file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--context: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput("--context: a JSON object is expected, e.g. {\"tables\": {...}}")
    return data


@app.command("check")
def check(ctx: typer.Context, files: list[Path] = typer.Argument(..., help="Files to check."),
          project: str | None = typer.Option(None, help="Use this project's thresholds, PERSON_IDs and "
                                                        "released tables (you must be a member)."),
          context: str | None = typer.Option(None, help="Declarations as JSON, or a JSON file: "
                                                        "{\"tables\": {\"t.csv\": {\"counts\": [\"n\"]}}}."),
          as_json: bool = typer.Option(False, "--json", help="Print {\"files\": [{name, verdict, findings}]}.")) -> None:
    """Run every check the gate runs on submission, without submitting. Exit 0 when every file
    passes, 6 otherwise (review, fail or refused)."""
    from ..airlock import permissions
    from ..airlock.checks import DEFAULT_MAX_BYTES, Thresholds
    from ..airlock.gate import ProjectGate, check_paths, project_gate
    from ..airlock.limits import load_limits
    from ..errors import PermissionDenied

    for path in files:
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
    data = _context_option(context)
    settings = ctx.obj.settings
    if project:
        from ..registry import Registry

        runtime = ctx.obj.runtime
        registry = Registry.from_runtime(runtime)
        actor = ctx.obj.actor
        if not (permissions.can_research(registry, actor, project) or permissions.can_check(registry, actor, project)):
            raise PermissionDenied(f"{actor} is not a member of project {project}")
        info = registry.get_project(project)
        thresholds = Thresholds.for_project(settings.disclosure, info.min_cell, info.max_table_rows)
        gate = project_gate(settings, runtime.sessions, load_limits(settings), project, thresholds,
                            audit=runtime.audit)
    else:
        gate = ProjectGate(Thresholds.for_project(settings.disclosure), DEFAULT_MAX_BYTES)
    report = check_paths(gate, list(files), data)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for f in report["files"]:
            console.print(f"{escape(f['name'])}: [bold]{f['verdict']}[/] ({f['kind']})", highlight=False)
            _print_findings(f["name"], f["findings"])
            if f.get("rebuilt"):
                console.print(f"  {escape(f['name'])}: would leave as the gate's copy, rebuilt from its cells or "
                              "pixels (docs/output-checking.md)", highlight=False)
    if any(f["verdict"] != "pass" for f in report["files"]):
        raise typer.Exit(6)


def _print_findings(name: str, found: list[dict]) -> None:
    for finding in found:
        where = finding.get("cell") or (f"row {finding['row'] + 1} col {finding['col'] + 1}" if "row" in finding
                                        else f"col {finding['col'] + 1}" if "col" in finding
                                        else f"line {finding['line']}" if "line" in finding else "file")
        console.print(escape(f"  {name}: [{finding['status']}] {finding['rule']} at {where}: {finding['message']}"),
                      highlight=False)


@app.command("review")
def review(ctx: typer.Context, request_id: str = typer.Argument(..., help="Request id."),
           verdict: list[str] | None = typer.Option(
               None, "--verdict", help="FILE=DECISION[:COMMENT] for one file (FILE: its number or name; "
                                       "DECISION: approve | request_changes | reject). Repeat for each file."),
           decision: str | None = typer.Option(
               None, help="approve | request_changes | reject for every file without a --verdict."),
           comment: str = typer.Option("", help="The comment going with --decision."),
           file: list[int] | None = typer.Option(None, help="Apply --decision only to these file numbers."),
           ) -> None:
    """Give your verdict on the files of a request: one per file, each with its comment.

    A comment is required to request changes or reject, and to approve a file whose automatic
    checks failed (say why the finding is acceptable)."""
    service = _service(ctx)
    view = service.get_request(ctx.obj.actor, request_id)
    verdicts = collect_verdicts({f.index: f.name for f in view.files}, verdict or [], decision, comment, file or [])
    shas = {f.index: f.sha256 for f in view.files}
    for index, given in verdicts.items():
        given["sha256"] = shas[index]  # bound to the bytes listed above: a file changed since is refused
    _show(service.review(ctx.obj.actor, request_id, verdicts))


@app.command("resubmit")
def resubmit(ctx: typer.Context, request_id: str = typer.Argument(..., help="Request id."),
             files: list[Path] | None = typer.Argument(None, help="New versions (same name) or new files."),
             remove: list[str] | None = typer.Option(None, help="Drop this file (by name) from the request."),
             justification: str | None = typer.Option(None, "--why", help="New justification.")) -> None:
    """Answer a request for changes: replace, add or remove files, and submit again."""
    for path in files or []:
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
    with ExitStack() as stack:
        streams = [(p.name, stack.enter_context(open(p, "rb"))) for p in files or []]
        view = _service(ctx).resubmit(ctx.obj.actor, request_id, streams, remove or [], justification)
    _show(view)


@app.command("release")
def release(ctx: typer.Context, request_id: str = typer.Argument(..., help="Request id.")) -> None:
    """Copy the reviewed bytes of an approved request to the outbox."""
    with Progress(console=console, transient=True) as progress:
        progress.add_task("releasing (verifying every SHA-256)", total=None)
        view = _service(ctx).release(ctx.obj.actor, request_id)
    _show(view)


@app.command("withdraw")
def withdraw(ctx: typer.Context, request_id: str = typer.Argument(...),
             reason: str = typer.Option("", help="Why.")) -> None:
    """Withdraw your request."""
    _show(_service(ctx).withdraw(ctx.obj.actor, request_id, reason))


@app.command("revoke")
def revoke(ctx: typer.Context, request_id: str = typer.Argument(...),
           reason: str = typer.Option(..., help="Why.")) -> None:
    """Revoke an approval (checkers) or a release (admins)."""
    _show(_service(ctx).revoke(ctx.obj.actor, request_id, reason))


@app.command("download")
def download(ctx: typer.Context, request_id: str = typer.Argument(...),
             dest: Path = typer.Option(Path("."), help="Folder to write the files to.")) -> None:
    """Download the released files of your request (checked against their SHA-256)."""
    service = _service(ctx)
    view = service.get_request(ctx.obj.actor, request_id)
    dest.mkdir(parents=True, exist_ok=True)
    with Progress(console=console) as progress:
        task = progress.add_task("downloading", total=len(view.files))
        for f in view.files:
            name, path = service.download(ctx.obj.actor, request_id, f.index)
            target = dest / name
            if target.exists():
                raise InvalidInput(f"{target} exists: choose another --dest")
            shutil.copyfile(path, target)
            progress.advance(task)
    console.print(f"{len(view.files)} file(s) written to {dest}")


@app.command("diagram")
def diagram(out: Path = typer.Option(Path("docs/reference/request-states.md"), help="Where to write it.")) -> None:
    """Write the request-state reference page from the transition table."""
    from ..airlock.states import render_diagram

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_diagram(), encoding="utf-8")
    console.print(f"wrote {out}")


@app.command("serve")
def serve() -> None:
    """Run the web service (as JupyterHub starts it: reads the JUPYTERHUB_SERVICE_* environment)."""
    from ..airlock.web import run_service

    run_service()
