"""``pds extract``: validate a cohort spec, build, check, verify and show a project's extract."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import permissions
from ..errors import DisclosureRisk, InvalidInput
from ..registry.models import Role
from ..registry.names import check_project_id
from .app import console

app = typer.Typer(help="Per-project pseudonymised extracts: spec, build, conformity check.",
                  no_args_is_help=True)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


@app.command("validate")
def validate(ctx: typer.Context, spec_file: Path = typer.Argument(..., help="The extract spec (YAML).")) -> None:
    """Check a spec: syntax, tables, columns, code patterns, and (when the lake exists) its years."""
    from ..extract.build import build_plan
    from ..extract.spec import check_against_lake, load_spec
    from ..lake import has_lake

    spec = load_spec(spec_file)
    lake = ctx.obj.settings.paths.lake
    if has_lake(lake):
        check_against_lake(spec, lake)
        where = f"valid against the lake at {lake}"
    else:
        where = "valid (no lake yet: years not checked)"
    console.print(f"spec for project [bold]{spec.project}[/] is {where}: "
                  f"{len(spec.include)} inclusion and {len(spec.exclude)} exclusion criteria, "
                  f"{len(spec.tables)} table(s), period {spec.start} to {spec.end}")
    for number, step in enumerate(build_plan(spec), 1):
        console.print(f"  {number:2d}. {step}")
    _withheld(spec)


def _withheld(spec) -> None:
    """Say which requested columns the spec's generalisation keeps out, and why."""
    for table, column, why in spec.withheld_columns():
        console.print(f"not copied: {table}.{column}: {why}")


@app.command("build")
def build(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    spec_file: Path | None = typer.Option(None, "--spec", help="Spec file (default: the project's kept spec.yaml)."),
    dask: str | None = typer.Option(None, "--dask", metavar="ADDR",
                                       help="Run on the Dask scheduler at ADDR (e.g. tcp://10.0.0.5:8786); its workers "
                                            "write the extract's files, so they must see the lake and the "
                                            "projects directory at the same paths."),
    same_lake_version: bool = typer.Option(
        False, "--same-lake-version",
        help="Read the lake's tables at the versions the published extract was built from (same spec: "
             "same bytes), not at their latest versions."),
) -> None:
    """Select the cohort, re-key identifiers, write the extract, check it and publish it read-only.

    The extract records the version of each lake table it read; built on newer versions than the
    published extract, it says what changed in the tables it writes (rows added, changed, removed)."""
    from ..extract.build import SPEC_COPY, build_plan, project_dir, run_build
    from ..extract.dask_backend import DaskBackend
    from ..extract.pinning import check_pin_available, previous_versions
    from ..extract.spec import load_spec

    state = ctx.obj
    check_project_id(project)
    pin = (check_pin_available(previous_versions(state.settings, project), project)
           if same_lake_version else None)
    spec_path = spec_file or project_dir(state.settings, project) / SPEC_COPY
    if spec_file is None and not spec_path.is_file():
        raise InvalidInput(f"project {project} has no kept spec: give one with --spec FILE")
    spec = load_spec(spec_path)
    backend = DaskBackend(state.settings.paths.lake, dask) if dask else None
    plan = build_plan(spec)
    with _progress() as progress:
        task = progress.add_task(f"building {project}", total=len(plan))

        def on_step(name: str) -> None:
            progress.update(task, advance=1, description=f"{project}: {name}")

        try:
            result = run_build(state.runtime, project, spec, actor=state.actor, backend=backend, on_step=on_step,
                               pin=pin)
        finally:
            if backend is not None:
                backend.close()
    manifest = result.manifest
    console.print(f"extract {manifest['build_id']} of [bold]{project}[/] published at {result.path.parent.parent / 'extract'}: "
                  f"{manifest['persons']} persons, k-anonymity {result.report.k_status}")
    for note in result.report.notes:
        console.print(f"note: {note}")
    _withheld(spec)
    _tables(manifest)
    _lake_changes(manifest)


def _lake_changes(manifest: dict) -> None:
    versions = manifest.get("lake_versions") or {}
    if versions:
        console.print("lake versions read: " + ", ".join(f"{t}@{v}" for t, v in sorted(versions.items())))
    changes = manifest.get("lake_changes") or []
    if not changes:
        return
    out = Table("table", "versions", "added", "changed", "removed", "note",
                title="the lake changed since the previous extract (rows, by primary key)")
    for c in changes:
        out.add_row(c["table"], f"{c['from_version']} → {c['to_version']}", f"{c.get('added', '')}",
                    f"{c.get('changed', '')}", f"{c.get('removed', '')}", c.get("note", ""))
    console.print(out)


@app.command("check")
def check(ctx: typer.Context, project: str = typer.Argument(..., help="Project id.")) -> None:
    """Re-run the conformity check on the published extract; exit code 6 when it is refused."""
    from ..extract.build import run_check

    state = ctx.obj
    report = run_check(state.runtime, project, actor=state.actor)
    for note in report.notes:
        console.print(f"note: {note}")
    for table, k in sorted(report.k_anonymity.items()):
        console.print(f"k-anonymity of {table} on {', '.join(k['columns'])}: {k['k']}")
    if not report.ok:
        for reason in report.reasons:
            console.print(f"[red]refused[/]: {reason}")
        raise DisclosureRisk(f"the extract of {project} does not conform ({len(report.reasons)} problem(s))")
    console.print(f"extract of [bold]{project}[/] conforms")


@app.command("verify")
def verify(ctx: typer.Context, project: str = typer.Argument(..., help="Project id.")) -> None:
    """Re-hash every file of the published extract against its manifest, whatever its size, and
    record the result in the audit trail; exit code 7 when a file differs.

    Workspaces re-hash an extract up to hub.extract_hash_max_bytes at every start; a larger one must
    be in the state its publication or its last successful verification recorded, and none starts
    after a failed verification. Run it periodically, and after moving or restoring the files."""
    from ..extract.mount_check import run_verify

    state = ctx.obj
    check_project_id(project)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task(f"verifying {project}", total=None)
        checked = run_verify(state.runtime, project, actor=state.actor,
                             on_total=lambda total: progress.update(task, total=total),
                             on_bytes=lambda n: progress.update(task, advance=n))
    console.print(f"extract {checked.expected.build_id} of [bold]{project}[/] is the published one: "
                  f"{checked.total_bytes} bytes re-hashed, the files' state recorded")


@app.command("show")
def show(ctx: typer.Context, project: str = typer.Argument(..., help="Project id.")) -> None:
    """Show the manifest of a project's extract (members with a valid membership and admins)."""
    from ..extract.build import read_manifest
    from ..registry.service import Registry

    state = ctx.obj
    actor = state.actor
    registry = Registry.from_runtime(state.runtime)
    if not permissions.is_administrator(registry, actor):
        if registry.can_access(actor, project, Role.OUTPUT_CHECKER):
            registry.check_access(actor, project, Role.OUTPUT_CHECKER, action="extract.show")
        else:
            registry.check_access(actor, project, Role.RESEARCHER, action="extract.show")
    manifest = read_manifest(state.settings, project)
    console.print(f"extract {manifest['build_id']} of [bold]{project}[/], built {manifest['built_at']} by "
                  f"{manifest['builder']} ({manifest['backend']}), lake snapshot {manifest['lake_snapshot']}, "
                  f"period {manifest['period']['from']} to {manifest['period']['to']}, {manifest['persons']} persons")
    _tables(manifest)


@app.command("destroy-key")
def destroy_key(
    ctx: typer.Context,
    project: str = typer.Argument(..., help="Project id."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: the link to the lake is lost for good."),
) -> None:
    """At project end (closed or past its end date): destroy the project's key, so its pseudonyms can
    never be linked to the lake again. Administrators only; every refusal is audited."""
    from ..pseudo import KeyStore

    state = ctx.obj
    check_project_id(project)
    KeyStore.from_runtime(state.runtime).destroy(project, state.actor, confirm=yes, reason="project ended")
    console.print(f"key of project {project} destroyed: its extract can no longer be linked to the lake")


def _tables(manifest: dict) -> None:
    table = Table("table", "rows", "columns", "files", "sha256")
    for name, entry in manifest["tables"].items():
        files = entry.get("files")
        table.add_row(name, str(entry["rows"]), str(len(entry["columns"])), str(len(files) if files else 1),
                      entry["sha256"][:16] if not files else "per file, see manifest.json")
    console.print(table)
