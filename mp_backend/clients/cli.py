"""flask --app wsgi clients create NAME [--store CODE] | list | deactivate ID|NAME | reactivate ID|NAME:
a till or shop system's credentials.

Not under ``flask openapi``, which is flask-smorest's command for the API document."""

from __future__ import annotations

import getpass

import click
from flask.cli import AppGroup

from ..errors import AppError

clients_cli = AppGroup("clients", help="Open-API clients (the merchant's till and shop systems).")


@clients_cli.command("create")
@click.argument("name")
@click.option("--store", "store_code", help="Store code: the client may act in this store only.")
def clients_create(name: str, store_code: str | None) -> None:
    """Create a client; prints its client_id and secret (the secret is shown this once only)."""
    from .service import create_client

    try:
        created = create_client(name, store_code)
    except AppError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from error
    click.echo(f"client_id: {created.client.client_id}")
    click.echo(f"secret: {created.secret}")
    scope = f"store {store_code} only" if store_code else "every store"
    click.echo(f"# {created.client.name}: {scope}. Keep the secret safe; it cannot be shown again.", err=True)


@clients_cli.command("list")
def clients_list() -> None:
    """Every client: client_id, active or deactivated (since when), store scope, name, created."""
    from .service import list_clients

    for c in list_clients():
        state = "active" if c.active else f"DEACTIVATED {c.deactivated_at:%Y-%m-%d %H:%M:%S}Z"
        scope = f"store {c.store_code}" if c.store_code else "every store"
        click.echo(f"{c.client_id}  {state}  {scope}  created {c.created_at:%Y-%m-%d %H:%M:%S}Z  {c.name}")


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "shell"


def _set_active(ref: str, active: bool, by: str | None, reason: str) -> None:
    from .service import client_cache_seconds, set_active

    who = by or _login_name()
    try:
        info, changed = set_active(ref, active, by=who, reason=reason)
    except AppError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from error
    state = "active" if active else "deactivated"
    if not changed:
        click.echo(f"{info.client_id} ({info.name}) was already {state}; nothing changed")
        return
    click.echo(f"{info.client_id} ({info.name}) {state} by {who}")
    wait = client_cache_seconds()
    if active:
        click.echo(f"# workers let it in again within {wait:g} s (OPEN_CLIENT_CACHE_SECONDS)", err=True)
    else:
        click.echo(
            f"# it moves no money from now on; workers may still answer its reads for {wait:g} s "
            "(OPEN_CLIENT_CACHE_SECONDS)",
            err=True,
        )


def _activation_command(name: str, active: bool, help_text: str) -> click.Command:
    @clients_cli.command(name, help=help_text)
    @click.argument("ref", metavar="CLIENT_ID|NAME")
    @click.option("--reason", default="", help="Why (kept in the audit log).")
    @click.option("--by", help="Who does it (a staff username, or a name); default: the shell's login name.")
    def command(ref: str, reason: str, by: str | None) -> None:
        _set_active(ref, active, by, reason)

    return command


clients_deactivate = _activation_command(
    "deactivate", False, "Stop a client: its requests are refused (403 client_deactivated); audited."
)
clients_reactivate = _activation_command("reactivate", True, "Let a deactivated client in again, same secret; audited.")
