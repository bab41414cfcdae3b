"""flask --app wsgi <group> <command>: staff, ledger, demo, wechat."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from .errors import AppError

staff_cli = AppGroup("staff", help="Merchant staff accounts.")
ledger_cli = AppGroup("ledger", help="The wallet ledger.")
demo_cli = AppGroup("demo", help="Demo data for the sandbox.")
wechat_cli = AppGroup("wechat", help="WeChat official account.")
menu_cli = AppGroup("menu", help="The official account's menu.")
wechat_cli.add_command(menu_cli)


@staff_cli.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["hq_admin", "region_manager", "store_manager", "clerk"]))
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--store", "store_code", help="Store code (store_manager, clerk).")
@click.option("--region", "region_code", help="Region code (region_manager).")
def staff_create(username: str, role: str, password: str, store_code: str | None, region_code: str | None) -> None:
    from .org.service import create_staff

    try:
        staff = create_staff(username, role, password, store_code=store_code, region_code=region_code)
    except AppError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from error
    click.echo(f"created staff {staff.username} (id {staff.id}, {staff.role})")


@ledger_cli.command("check")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(["proportional", "principal_first", "bonus_first"]),
    help="A spending policy the ledger's debits may have been made under (default: SPENDING_POLICY). "
    "Repeat it for a deployment that changed its policy.",
)
def ledger_check(policies: tuple[str, ...]) -> None:
    """Verify the ledger invariants; exit 1 naming each broken row or wallet."""
    from .ledger.check import check_ledger

    problems = check_ledger(policies=policies or None)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        click.echo(f"ledger check FAILED: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("ledger check OK")


@demo_cli.command("load")
def demo_load() -> None:
    """Load the demo merchant, stores, staff and members (twice changes nothing)."""
    from .demo import load_demo, load_recharge_demo

    for line in load_demo():
        click.echo(line)
    for line in load_recharge_demo():
        click.echo(line)


@menu_cli.command("push")
@click.option("--file", "path", default=None, help="Menu definition (default: wechat_menu.json).")
def menu_push(path: str | None) -> None:
    from .config import ROOT
    from .wechat.menu import push_menu

    push_menu(path or str(ROOT / "wechat_menu.json"))
    click.echo("menu pushed")


def register_commands(app: Flask) -> None:
    from .clients.cli import clients_cli

    for group in (staff_cli, ledger_cli, demo_cli, wechat_cli, clients_cli):
        app.cli.add_command(group)
