"""``pds db``: the schema of the platform database (registry, airlock, audit trail)."""

from __future__ import annotations

import typer

from .. import schema
from ..db import check_database_exists, make_engine
from .app import console

app = typer.Typer(help="Schema migrations of the platform database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Bring the database to this release's schema (idempotent; refuses to downgrade). Back the
    database up first: docs/deploy-kubernetes.md, "Upgrades"."""
    engine = make_engine(ctx.obj.settings.database_url)
    try:
        result = schema.upgrade(engine)
    finally:
        engine.dispose()
    if result.created:
        console.print(f"database created at schema revision {result.after}", highlight=False)
    elif result.changed:
        before = result.before or "no revision (created before migrations)"
        baseline = f", stamped {schema.BASELINE} first" if result.stamped_baseline else ""
        console.print(f"database upgraded from {before} to {result.after}{baseline}", highlight=False)
    else:
        console.print(f"database already at schema revision {result.after}", highlight=False)
    if not result.created:
        _seal_approvals(ctx)
    _seal_hub_accounts(ctx)


def _seal_approvals(ctx: typer.Context) -> None:
    """Seal the approvals an upgrade marked (revision 0012: pds_kernel.registry.seals), and record
    the end of the registry's bootstrap if it holds an administrator (pds_kernel.registry.bootstrap),
    now, where this process holds the audit trail's key (nothing once done); elsewhere the
    registry's next write does it."""
    from ..errors import IntegrityError, NotFound
    from ..registry import Registry

    try:
        registry = Registry.from_runtime(ctx.obj.runtime)
        sealed = registry.seal_approvals_of_upgrade(ctx.obj.actor)
        ended = registry.record_bootstrap_end(ctx.obj.actor)
    except (IntegrityError, NotFound, OSError) as exc:
        console.print(f"approvals not sealed yet ({exc}): the registry's next write seals them "
                      "(on Kubernetes, the registry-sync Job of this upgrade)", highlight=False)
        return
    if sealed is not None:
        console.print(f"sealed the approvals made before this release (memberships: {sealed['memberships']}, "
                      f"administrators: {sealed['administrators']}; audited as registry.seals.upgrade)",
                      highlight=False)
    if ended:
        console.print("recorded the end of the registry's bootstrap: it holds an administrator, and is never "
                      "bootstrapped again (audited and anchored as registry.bootstrap.end)", highlight=False)


def _seal_hub_accounts(ctx: typer.Context) -> None:
    """Seal the local hub's accounts made before their seals (pds_kernel.hub.account_seals) now,
    where this process holds the audit trail's key: once for an installation, and only where a
    local hub database exists (the hub's start does it too)."""
    settings = ctx.obj.settings
    if not (settings.paths.state / "hub" / "jupyterhub.sqlite").is_file():
        return
    try:
        from ..hub.local import seal_accounts_made_before_seals
    except ImportError:  # no hub installed here
        return
    sealed = seal_accounts_made_before_seals(settings, ctx.obj.runtime.audit, ctx.obj.actor)
    if sealed is not None:
        console.print(f"sealed the hub accounts made before this release ({len(sealed)}: "
                      f"{', '.join(sealed) or 'none'}; audited as hub.account.seals.upgrade)", highlight=False)


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Show the database's schema revision and this release's."""
    check_database_exists(ctx.obj.settings)
    engine = make_engine(ctx.obj.settings.database_url)
    try:
        with engine.connect() as connection:
            state = schema.read_state(connection)
    finally:
        engine.dispose()
    found = state.revision or ("empty" if state.empty else "no revision (created before migrations)")
    verdict = ("current" if state.current else "unknown to this release (a newer one upgraded it)"
               if state.unknown else "needs `pds db upgrade`")
    console.print(f"database: {found}; this release: {schema.head_revision()}: {verdict}", highlight=False)
