"""``flask skileez …`` commands: admins, demo data, the dev server and workers."""

from __future__ import annotations

import threading

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from skileez.auth.forms import PASSWORD_MIN, email_address_problem
from skileez.auth.models import User
from skileez.auth.operations import create_user
from skileez.core.errors import DomainError
from skileez.core.queue import get_queue, redis_connection
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.jobs.runner import start_inprocess_sweeper, start_sweep_ticker
from skileez.jobs.sweep import sweep
from skileez.seed import DEMO_ACCOUNTS, seed, wipe_demo

group = AppGroup("skileez", help="Skileez administration commands.")


def init_app(app: Flask) -> None:
    app.cli.add_command(group)


@group.command("create-admin")
@click.argument("email")
@click.option("--name", default="Administrator", show_default=True)
@click.password_option(prompt="Password for the new admin",
                       confirmation_prompt="Repeat the password")
def create_admin(email: str, name: str, password: str) -> None:
    """Create an admin account (the only way admins come to exist)."""
    problem = email_address_problem(email)
    if problem:
        raise click.BadParameter(problem, param_hint="EMAIL")
    if len(password) < PASSWORD_MIN:
        raise click.BadParameter(f"Use at least {PASSWORD_MIN} characters.",
                                 param_hint="password")
    try:
        with transaction():
            user = create_user(name=name, email=email, password=password, role="admin",
                               welcome=False)
    except DomainError as exc:
        # A command's answer to a broken rule, as submit() answers a form's: rolled back
        # already, the message shown as it is (and a non-zero exit).
        raise click.ClickException(exc.message) from None
    click.echo(f"Admin {user.email} created.")


@group.command("seed")
@click.option("--if-empty", is_flag=True, help="Only seed when there are no users yet.")
@click.option("--refresh-demo", is_flag=True,
              help="Load the demo into an empty database, or load it again (timed from now) "
                   "when the database holds only demo accounts; leave any other data alone.")
def seed_command(if_empty: bool, refresh_demo: bool) -> None:
    """Load the demo accounts and data, all in one transaction."""
    emails = set(db.session.scalars(select(func.lower(User.email))))
    others = emails - {account["email"] for account in DEMO_ACCOUNTS}
    if refresh_demo and others:
        click.echo(f"The database has {len(others)} account(s) that are not demo accounts; "
                   "it is left as it is (demo data not reloaded).")
    elif if_empty and not refresh_demo and emails:
        click.echo("Database already has data; demo data not loaded.")
    else:
        # Serialized: on SQLite the driver starts no transaction before the first
        # SAVEPOINT, so releasing it would commit the first account on its own.
        with transaction(serialized=True):
            if emails and refresh_demo:
                wipe_demo()
            seed()
        click.echo("Demo data reloaded, timed from now." if emails else "Demo data loaded.")
    print_demo_accounts(DEMO_ACCOUNTS)


def print_demo_accounts(accounts) -> None:
    click.echo("")
    click.echo(f"Demo accounts (password for all: {accounts[0]['password']})")
    for account in accounts:
        click.echo(f"  {account['role']:<8} {account['email']:<32} {account['name']}")
    click.echo("")


@group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
def serve(host: str, port: int) -> None:
    """Development server, with the sweep on a background thread when there is no Redis."""
    app = current_app._get_current_object()
    if app.config["JOBS_BACKEND"] == "inprocess":
        start_inprocess_sweeper(app)
        click.echo("Background jobs run in this process; the sweep runs every "
                   f"{app.config['SWEEP_INTERVAL_SECONDS']} seconds.")
    else:
        click.echo("Jobs go to Redis at REDIS_URL: start a worker with `make worker`.")
    click.echo(f"Skileez is running at http://{host}:{port}")
    # app.run() refuses to start inside a `flask` command; call Werkzeug directly.
    from werkzeug.serving import run_simple

    run_simple(host, port, app, use_reloader=False, use_debugger=False, threaded=True)


@group.command("worker")
@click.option("--queue", "queues", multiple=True,
              help="Queues to listen on (default: all, highest priority first).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--no-sweep", is_flag=True, help="Do not enqueue the periodic sweep.")
def worker(queues: tuple[str, ...], burst: bool, no_sweep: bool) -> None:
    """An RQ worker with scheduling, plus the once-a-minute sweep ticker."""
    from skileez.core.queue import Worker

    app = current_app._get_current_object()
    if not app.config["REDIS_URL"]:
        raise click.ClickException("REDIS_URL is not set; without Redis, jobs run inside "
                                   "`make run` and no worker is needed.")
    names = queues or app.config["RQ_QUEUES"]
    stop = threading.Event()
    if not no_sweep and not burst:
        start_sweep_ticker(app, stop)
    rq_worker = Worker([get_queue(name) for name in names], connection=redis_connection())
    try:
        rq_worker.work(burst=burst, with_scheduler=True)
    finally:
        stop.set()


@group.command("sweep")
def sweep_command() -> None:
    """Run every deadline handler once, now."""
    for name, count in sweep().items():
        click.echo(f"{name}: {count}")
