"""``pds hub``: run the local JupyterHub, push the registry into it, manage hub accounts."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from ..errors import InvalidInput
from .app import console

app = typer.Typer(help="The local JupyterHub: run it, sync the registry into it, manage accounts.",
                  no_args_is_help=True)
account_app = typer.Typer(help="Hub accounts (NativeAuthenticator, with a second factor): platform "
                          "administrators only, acting as themselves.",
                          no_args_is_help=True)
app.add_typer(account_app, name="account")


def hub_config_file() -> Path:
    """``hub_config/jupyterhub_config.py`` of the repository, else a generated equivalent."""
    from ..hub.local import REPO_ROOT

    path = REPO_ROOT / "hub_config" / "jupyterhub_config.py"
    if path.is_file():
        return path
    raise InvalidInput(f"{path} is missing: reinstall PDS Workspace from its repository")


def hub_environment(config: Path | None, port: int | None) -> dict[str, str]:
    """The hub's environment: ours, the config file, the port, and node/venv tools on PATH."""
    from ..hub.local import REPO_ROOT

    env = dict(os.environ)
    env.setdefault("PDS_HUB_MODE", "local")
    if config is None and not env.get("PDS_CONFIG") and Path("pds.yaml").is_file():
        config = Path("pds.yaml")  # the hub runs in its state directory: name the file we read
    if config is not None:
        env["PDS_CONFIG"] = str(config.resolve())
    if port is not None:
        env["PDS_HUB__PORT"] = str(port)
    extra = [str(REPO_ROOT / "node_modules" / ".bin"), str(Path(sys.prefix) / "bin")]
    env["PATH"] = os.pathsep.join([*extra, env.get("PATH", "")])
    return env


def hub_command() -> list[str]:
    return [sys.executable, "-m", "jupyterhub", "-f", str(hub_config_file())]


@app.command("run")
def run(
    ctx: typer.Context,
    port: int | None = typer.Option(None, "--port", "-p", help="Public port (default: hub.port, 8000)."),
) -> None:
    """Start JupyterHub in the foreground (Ctrl-C stops it and every workspace)."""
    from ..hub.local import hub_dir, public_host
    state = ctx.obj
    settings = state.settings
    if port is not None:
        settings = replace(settings, hub=replace(settings.hub, port=port))
    url = public_host(settings)  # refuses an address browsers could not use, before anything is made
    env = hub_environment(state.config, port)
    cwd = hub_dir(settings)
    console.print(f"JupyterHub on [bold]{url}[/] (state in {cwd}); Ctrl-C to stop")
    raise typer.Exit(run_hub_foreground(env, cwd))


def run_hub_foreground(env: dict[str, str], cwd: Path) -> int:
    """Run JupyterHub until it exits; Ctrl-C is passed on so it stops every workspace first."""
    proc = subprocess.Popen(hub_command(), env=env, cwd=cwd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()


@app.command("sync")
def sync(ctx: typer.Context) -> None:
    """Push the registry into the running hub: project groups, and stop revoked servers."""
    from ..hub.common import sync_hub
    from ..hub.local import api_port, sync_token
    from ..registry.service import Registry

    state = ctx.obj
    settings = state.settings
    registry = Registry.from_runtime(state.runtime)
    api = f"http://127.0.0.1:{api_port(settings)}/hub/api"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("syncing the hub", total=None)
        try:
            report = sync_hub(registry, state.runtime.audit, api, sync_token(settings), actor=state.actor,
                              progress=lambda step: bar.update(task, description=f"synced {step}"))
        except OSError as exc:
            raise InvalidInput(f"cannot reach the hub at {api}: is `pds hub run` running? ({exc})") from None
    console.print(f"groups created: {len(report.groups_created)}, members added: {len(report.added)}, "
                  f"removed: {len(report.removed)}, servers stopped: {len(report.servers_stopped)}")
    for server in report.servers_stopped:
        console.print(f"  stopped {server}")


@account_app.command("add")
def account_add(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="Registry user name."),
    reset: bool = typer.Option(False, "--reset", help="Replace the password and second factor."),
) -> None:
    """Create an account with a generated password and TOTP secret (printed once).

    The only way to create a hub account (there is no web sign-up). Works with the hub running;
    ``--reset`` gives a lost account a new password and second factor and ends its sessions. With
    registry.membership_approvals: 2 the account (created or reset) waits for a second
    administrator: pds hub account approve USER, run by another administrator."""
    from ..hub.local import provision_account
    from ..registry.service import Registry

    state = ctx.obj
    registry = Registry.from_runtime(state.runtime)
    password = secrets.token_urlsafe(12)
    secret = provision_account(state.settings, registry, user, password, actor=state.actor, reset=reset)
    console.print(f"user: {user}\npassword: {password}\nTOTP secret: {secret}\n"
                  f"otpauth://totp/PDS%20Workspace:{user}?secret={secret}&issuer=PDS%20Workspace\n"
                  "[yellow]shown once: give them to the user over a safe channel[/]", highlight=False)
    console.print(("[yellow]" if secret.pending else "") + secret.next_step, highlight=False)


@account_app.command("approve")
def account_approve(ctx: typer.Context, user: str = typer.Argument(..., help="Registry user name.")) -> None:
    """Approve a hub account: one waiting for a second administrator (created or reset by another
    administrator, registry.membership_approvals: 2), or again after a revocation (audited; never
    your own account under the two-person rule)."""
    from ..hub.local import set_account_approval
    from ..registry.service import Registry

    state = ctx.obj
    set_account_approval(state.settings, Registry.from_runtime(state.runtime), user, True, actor=state.actor)
    console.print(f"{user} approved")


@account_app.command("revoke")
def account_revoke(ctx: typer.Context, user: str = typer.Argument(..., help="Registry user name.")) -> None:
    """Disable a hub account: no login, every session cookie refused at once (audited)."""
    from ..hub.local import set_account_approval
    from ..registry.service import Registry

    state = ctx.obj
    set_account_approval(state.settings, Registry.from_runtime(state.runtime), user, False, actor=state.actor)
    console.print(f"{user} revoked: logins refused, open sessions ended")


@account_app.command("unbind")
def account_unbind(ctx: typer.Context, user: str = typer.Argument(..., help="Registry user name.")) -> None:
    """OIDC: free USER's name for another account of the identity provider (its first sign-in binds
    the name again). For an account deleted and made again at the provider; audited."""
    from ..hub.oidc_subjects import unbind
    from ..registry.service import Registry

    state = ctx.obj
    if unbind(state.runtime.audit, Registry.from_runtime(state.runtime), state.actor, user):
        console.print(f"{user}: the next account of the identity provider that signs in as {user} takes the name")
    else:
        console.print(f"{user} was bound to no account of the identity provider: nothing to free")
