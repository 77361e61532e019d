"""Skileez: a coaching portal.

``create_app`` is the only place an app is built; nothing is created at import
time, so the web server, the CLI, RQ workers and tests each build their own.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from skileez.config import build_config

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(config_override: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False,
                instance_path=os.environ.get("SKILEEZ_INSTANCE_PATH")
                or os.path.join(os.getcwd(), "instance"))
    app.config.update(build_config(app.instance_path, config_override))
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.logger.handlers or app.config["SKILEEZ_ENV"] != "testing":
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    from skileez.policy import Policy

    app.extensions["skileez_policy"] = Policy.from_mapping(
        {**Policy.from_environment(), **app.config["POLICY"]}
    )

    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    _init_extensions(app)
    _warn_about_per_process_throttling(app)
    _bound_integer_urls(app)
    _register_blueprints(app)
    _connect_listeners()

    from skileez.core import web

    web.init_app(app)

    from skileez import cli

    cli.init_app(app)
    return app


def _init_extensions(app: Flask) -> None:
    from skileez.extensions import bootstrap, csrf, db, limiter, login_manager, migrate

    db.init_app(app)
    _configure_sqlite(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "..",
                                                     "migrations"),
                     compare_type=True, render_as_batch=True)
    csrf.init_app(app)
    bootstrap.init_app(app)
    limiter.init_app(app)

    from skileez.auth import session as auth_session

    auth_session.init_login(app, login_manager)

    # Import every model so metadata (and Alembic autogenerate) sees all tables.
    from skileez import models  # noqa: F401


def _warn_about_per_process_throttling(app: Flask) -> None:
    """Throttle counters kept in memory are per process: N workers allow N times the limit."""
    if app.config["SKILEEZ_ENV"] != "production":
        return
    if str(app.config["RATELIMIT_STORAGE_URI"]).startswith("memory://"):
        log.warning("REDIS_URL is not set: login and sign-up throttling is per process, so "
                    "with several web processes each allows the full limit. Set REDIS_URL "
                    "(or RATELIMIT_STORAGE_URI) to share the counters.")


def _configure_sqlite(app: Flask) -> None:
    """WAL, foreign keys, and a busy timeout so writers queue instead of failing."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from sqlalchemy import event

    from skileez.extensions import db

    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "savepoint")
    def _savepoints_nest_in_the_unit_of_work(connection, _name):
        """pysqlite begins a transaction before an INSERT/UPDATE but not before a SAVEPOINT,
        so SQLite takes a first savepoint as a transaction of its own and releasing it
        commits: an error later in the request would not undo what was written inside
        it. Beginning here keeps "all or nothing" as on PostgreSQL. ``IMMEDIATE``,
        because a savepoint is opened to write, and a deferred transaction that reads
        first can fail to become a writer when another one committed meanwhile."""
        dbapi_connection = connection.connection.dbapi_connection
        if not dbapi_connection.in_transaction:
            dbapi_connection.execute("BEGIN IMMEDIATE")


def _bound_integer_urls(app: Flask) -> None:
    """``/sessions/99999999999999999999`` is a 404, not a database overflow error (500)."""
    from werkzeug.routing import IntegerConverter

    class DatabaseInteger(IntegerConverter):
        def __init__(self, url_map, fixed_digits=0, min=None, max=2**31 - 1, signed=False):
            super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max,
                             signed=signed)

    app.url_map.converters["int"] = DatabaseInteger


def _register_blueprints(app: Flask) -> None:
    # Two blueprints have their views in several modules, and importing a module is what
    # registers its views: admin (users, mail and jobs; money) and sessions (three).
    from skileez.admin import money as admin_overview  # noqa: F401
    from skileez.admin import payments as admin_money  # noqa: F401
    from skileez.admin.routes import bp as admin_bp
    from skileez.auth.routes import bp as auth_bp
    from skileez.coaches.routes import bp as coaches_bp
    from skileez.contracts.routes import bp as contracts_bp
    from skileez.core.routes import bp as core_bp
    from skileez.core.vendor import bp as vendor_bp
    from skileez.dashboard.routes import bp as dashboard_bp
    from skileez.notifications.routes import bp as notifications_bp
    from skileez.payments.routes import bp as payments_bp
    from skileez.sessions import history_routes, lifecycle_routes, routes  # noqa: F401
    from skileez.sessions.blueprint import bp as sessions_bp
    from skileez.sessions.contract_end_routes import bp as contract_end_bp

    for blueprint in (core_bp, dashboard_bp, vendor_bp, auth_bp, coaches_bp, contracts_bp,
                      contract_end_bp, sessions_bp, payments_bp, notifications_bp, admin_bp):
        app.register_blueprint(blueprint)


def _connect_listeners() -> None:
    """Register what higher packages do when a lower one announces (``core.events``).

    Booking a session opens its payment, closing it settles the escrow, a coach's
    calendar is busy while a session is booked, a new coach gets a profile. The
    blueprints import most of these modules anyway; importing them here says so.
    """
    from skileez.coaches import listeners as _coaches  # noqa: F401
    from skileez.payments import listeners as _payments  # noqa: F401
    from skileez.sessions import listeners as _sessions  # noqa: F401
