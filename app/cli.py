"""Command-line tools: `flask --app wsgi <command>`."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import ScriptInfo, pass_script_info, with_appcontext

from app.auth.models import Role


def register(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(audit)
    app.cli.add_command(demo_group)
    app.cli.add_command(worker)
    app.cli.add_command(serve)
    _register_operations(app)
    from app.seed_scale import seed_scale_command

    app.cli.add_command(seed_scale_command)


@click.group(help="Manage accounts.")
def users() -> None:
    pass


@users.command("create", help="Create an account (staff set up their second factor at first sign-in).")
@click.option("--email", required=True)
@click.option("--name", "full_name", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role if r.is_staff]), required=True)
@click.option("--pharmacy-id", type=int, default=None, help="Required for pharmacists.")
@click.password_option(help="Prompted for when not given.")
@with_appcontext
def create_user(email: str, full_name: str, role: str, pharmacy_id: int | None, password: str) -> None:
    from app.auth import services as accounts

    try:
        user = accounts.create_user(email=email, password=password, full_name=full_name, role=Role(role),
                                    pharmacy_id=pharmacy_id)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created {user.role.value} account {user.email} (id {user.id}).")


@click.group(help="The audit trail.")
def audit() -> None:
    pass


@audit.command("verify", help="Recompute the hash chain and compare it with the signed checkpoints. Exit 0 when "
                               "intact, 1 naming the first bad entry, a truncated tail or a rewritten chain.")
@with_appcontext
def audit_verify() -> None:
    from app.audit import checkpoints
    from app.audit import services as audit_services

    result = audit_services.verify_chain()
    if result.ok:
        click.echo(f"Audit chain intact: {result.checked} entries checked.")
    else:
        click.echo(f"Audit chain broken at entry {result.bad_seq}: {result.reason} "
                   f"({result.checked} entries verified before it).", err=True)
    report = checkpoints.check()
    if report.problem:
        click.echo(report.problem, err=True)
    elif report.newest is not None:
        click.echo(checkpoints.summary(report))
    else:
        click.echo("No signed checkpoints yet: the worker signs the chain head every "
                   f"{current_app.config['AUDIT_CHECKPOINT_MINUTES']} minutes (`flask audit checkpoint` now).")
    if not (result.ok and report.ok):
        sys.exit(1)


@audit.command("checkpoint", help="Sign the chain head now and append it to the checkpoint file (the worker does "
                                   "this every VERITY_AUDIT_CHECKPOINT_MINUTES).")
@with_appcontext
def audit_checkpoint() -> None:
    from app.audit import checkpoints

    try:
        written = checkpoints.write_checkpoint(force=True)
    except checkpoints.CheckpointError as exc:
        raise click.ClickException(str(exc)) from exc
    if written is None:
        click.echo("No checkpoint written: the chain is empty, or another worker is writing one now.")
        return
    click.echo(f"Checkpoint signed: entry {written.seq} (key {written.key}), appended to "
               f"{checkpoints.file_path()}.")


@click.group("demo", help="Demo data for `make run`.")
def demo_group() -> None:
    pass


@demo_group.command("load", help="Load the demo accounts (idempotent) and print them.")
@with_appcontext
def demo_load() -> None:
    from app import demo

    created = demo.load()
    click.echo(f"Demo data ready ({len(created)} accounts created now, {len(demo.ACCOUNTS) - len(created)} "
               "already there).")
    print_demo_accounts()


def print_demo_accounts() -> None:
    from app import demo

    click.echo("")
    click.echo("Demo accounts (demo mode only):")
    click.echo(f"  {'role':<11} {'email':<30} {'password':<24} TOTP secret")
    for account in demo.ACCOUNTS:
        click.echo(f"  {account.role.value:<11} {account.email:<30} {account.password:<24} "
                   f"{account.totp_secret or '-'}")
    click.echo("")


@click.command(help="Run the background worker (outbox delivery and periodic jobs).")
@pass_script_info
def worker(info: ScriptInfo) -> None:
    from app.worker import run

    run(info.load_app())


@click.command(help="Serve web app and signaling on one port, with a worker (the embedded default).")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@click.option("--no-worker", is_flag=True, help="Do not start the background worker.")
@pass_script_info
def serve(info: ScriptInfo, host: str, port: int, no_worker: bool) -> None:
    from app.serve import serve as run_server

    app = info.load_app()
    if app.config["DEMO_MODE"]:
        print_demo_accounts()
    run_server(app, host, port, with_worker=not no_worker)


def _register_operations(app: Flask) -> None:
    """`flask db roles` (beside Flask-Migrate's commands), `flask backup` and `flask restore`."""
    from flask_migrate.cli import db as db_group

    from app import backup

    if "roles" not in db_group.commands:
        db_group.add_command(db_roles_command)
    app.cli.add_command(backup.backup_command)
    app.cli.add_command(backup.restore_command)


@click.command("roles", help="PostgreSQL: grant the app role (VERITY_DB_APP_ROLE, or --app-role) what the application "
                             "needs, with SELECT and INSERT only on the audit trail. Run as the tables' owner.")
@click.option("--app-role", default=None, help="Default: VERITY_DB_APP_ROLE.")
@click.option("--create", is_flag=True, help="Create the role (LOGIN, no password) when it does not exist.")
@with_appcontext
def db_roles_command(app_role: str | None, create: bool) -> None:
    from app.db_roles import RoleError, grant_app_role
    from app.extensions import db

    role = app_role or current_app.config.get("DB_APP_ROLE")
    if not role:
        raise click.ClickException("name the app role: --app-role NAME or VERITY_DB_APP_ROLE")
    try:
        with db.engine.begin() as conn:
            statements = grant_app_role(conn, role, create=create)
    except RoleError as exc:
        raise click.ClickException(str(exc)) from exc
    for statement in statements:
        click.echo(f"  {statement}")
    click.echo(f"Role {role}: SELECT and INSERT on the audit trail, the ordinary grants elsewhere.")
