"""flask --app wsgi clients create NAME [--store CODE]: a till or shop system's credentials.

Not under ``flask openapi``, which is flask-smorest's command for the API document."""

from __future__ import annotations

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
