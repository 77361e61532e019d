"""Fixtures: apps on a schema built by the migrations, real services, frozen time.

The database is SQLite unless TEST_DATABASE_URL points at PostgreSQL. The
schema is built once per run by applying the Alembic migrations (so the
migrations are tested too). Each test runs in one transaction that is rolled
back at its end (the code's own commits release savepoints inside it); tests
marked ``real_commits`` (threads, live servers, worker processes, a second
connection) commit for real and empty every table afterwards.
Services (PostgreSQL, Redis, SMTP, Chromium) skip their tests with a reason
when missing, except under CI=true where a missing service fails the run.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from skileez import clock as clock_module
from skileez import create_app
from skileez.core.unit_of_work import transaction
from skileez.extensions import db, limiter

CI = os.environ.get("CI", "").lower() == "true"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_PASSWORD = "correct horse battery"


def pytest_collection_modifyitems(items):
    """What runs outside the test's own thread or process sees only committed rows."""
    for item in items:
        if any(item.get_closest_marker(name) for name in ("browser", "redis", "stripe")) \
                or "live" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_commits)


def require_service(name: str, available: bool, reason: str) -> None:
    """Skip locally, fail under CI: CI must never pass by skipping."""
    if available:
        return
    if CI:
        pytest.fail(f"{name} is required when CI=true but is unavailable: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- database ---------------------------------------------------------------

@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    """A database of this run's own.

    On PostgreSQL a fresh database is created next to TEST_DATABASE_URL's (and
    dropped afterwards), so two runs on one server — CI and a developer, or two
    branches — never drop each other's tables.
    """
    if not TEST_DATABASE_URL:
        yield "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")
        return
    import uuid

    from sqlalchemy.engine import make_url

    from skileez.config import normalise_database_url

    server_url = make_url(normalise_database_url(TEST_DATABASE_URL))
    name = f"skileez_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        require_service("PostgreSQL", False, str(exc))
    yield server_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def base_config(database_url: str, **overrides) -> dict:
    config = {
        "SKILEEZ_ENV": "testing",
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": None,
        "MAIL_SERVER": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        # Cheap hashing keeps the suite fast; test_security checks the real defaults.
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
        "PUBLIC_BASE_URL": "http://skileez.test",
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def migrated(database_url) -> str:
    """Apply every migration once; the schema tests use is the migrations' schema."""
    from flask_migrate import upgrade

    app = create_app(base_config(database_url))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return database_url


def _empty_all_tables(app) -> None:
    with app.app_context():
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                names = ", ".join(f'"{t}"' for t in tables)
                connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    connection.execute(text(f'DELETE FROM "{table}"'))
        db.session.remove()


# Sessions join the test's own transaction through a savepoint, so a commit in the
# code under test releases a savepoint and the test's rollback undoes everything.
db.session.session_factory.configure(join_transaction_mode="create_savepoint")


def _join_one_transaction(app, connection) -> None:
    """Make every session of ``app`` use ``connection`` (inside its open transaction).

    Flask-SQLAlchemy picks a session's bind from its table of engines; putting the
    test's connection there makes every request, job and fixture of the test share
    one transaction, which the test rolls back at the end.
    """
    db._app_engines[app][None] = connection


@pytest.fixture
def make_app(migrated, request) -> Iterator:
    """Build apps with config overrides; everything they write is rolled back afterwards.

    Tests marked ``real_commits`` (threads, live servers, worker processes, a second
    connection) really commit instead, and their tables are emptied afterwards.
    """
    apps = []
    real_commits = request.node.get_closest_marker("real_commits") is not None
    outer = {}

    def factory(**overrides):
        app = create_app(base_config(migrated, **overrides))
        apps.append(app)
        limiter.reset()
        if not real_commits:
            with app.app_context():
                outer.setdefault("engines", []).append(db.engine)
                if "connection" not in outer:
                    outer["connection"] = db.engine.connect()
                    outer["transaction"] = outer["connection"].begin()
            _join_one_transaction(app, outer["connection"])
        return app

    factory.apps = apps
    factory.real_commits = real_commits
    yield factory
    if outer:
        for app in apps:
            with app.app_context():
                db.session.remove()
        outer["transaction"].rollback()
        outer["connection"].close()
        for engine in outer["engines"]:
            engine.dispose()
        return
    if apps:
        _empty_all_tables(apps[0])
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def ledger_checked_after_each_test(make_app):
    """Money tests end with a healthy ledger, whatever they asserted themselves.

    A module opts in with ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    yield
    from skileez.payments.ledger import check_invariants

    for each in make_app.apps:
        with each.app_context():
            assert check_invariants() == []


# --- time -------------------------------------------------------------------

@pytest.fixture
def clock():
    """Frozen at a fixed instant; move it with ``clock.advance(timedelta)``."""
    clock_module.freeze(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    yield clock_module
    clock_module.unfreeze()


@pytest.fixture(autouse=True)
def _never_leave_time_frozen():
    yield
    clock_module.unfreeze()


# --- signals ----------------------------------------------------------------

# An RQ worker's work() installs its own SIGINT/SIGTERM handlers and leaves them in
# place when it returns; without this, a Ctrl-C or a CI timeout's SIGTERM later in the
# run would land in the handler of a worker that finished long ago.
WORKER_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signal_handlers_restored() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in WORKER_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """Every test gives the process back the signal handlers it found."""
    with signal_handlers_restored():
        yield


# --- people -----------------------------------------------------------------

@pytest.fixture
def make_user(app, make_app):
    """Create a user in the most recently built app (the default one unless the test built
    its own with ``make_app``)."""
    from skileez.auth.operations import create_user

    counter = {"n": 0}

    def factory(role="student", *, email=None, name=None, password=TEST_PASSWORD,
                timezone="Europe/Berlin", welcome=False):
        counter["n"] += 1
        with make_app.apps[-1].app_context():
            user = create_user(
                name=name or f"{role.title()} {counter['n']}",
                email=email or f"{role}{counter['n']}@example.com",
                password=password, role=role, timezone=timezone, welcome=welcome,
            )
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
        return user

    return factory


class Client:
    """The Flask test client plus what a browser does: send the CSRF token, sign in."""

    CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|'
                      r'"X-CSRFToken": "([^"]+)"')

    def __init__(self, app):
        self.app = app
        self.http = app.test_client()

    def get(self, url, **kwargs):
        return self.http.get(url, **kwargs)

    def csrf_token(self, page: str = "/login") -> str:
        body = self.http.get(page).get_data(as_text=True)
        match = self.CSRF.search(body)
        assert match, f"no CSRF token on {page}"
        return match.group(1) or match.group(2)

    def post(self, url, data=None, *, csrf=True, htmx=False, token_page="/login", **kwargs):
        data = dict(data or {})
        headers = dict(kwargs.pop("headers", {}) or {})
        if csrf and "csrf_token" not in data:
            data["csrf_token"] = self.csrf_token(token_page)
        if htmx:
            headers["HX-Request"] = "true"
        return self.http.post(url, data=data, headers=headers, **kwargs)

    def login(self, email, password=TEST_PASSWORD, remember=False):
        data = {"email": email, "password": password}
        if remember:
            data["remember"] = "y"
        response = self.post("/login", data)
        assert response.status_code == 303, response.get_data(as_text=True)
        return response

    def logout(self):
        return self.post("/logout", token_page="/dashboard")


@pytest.fixture
def client(app) -> Client:
    return Client(app)


@pytest.fixture
def make_client():
    return Client


# --- services ---------------------------------------------------------------

@contextmanager
def redis_database_to_ourselves(url: str) -> Iterator[None]:
    """One test at a time on a Redis database, across processes.

    Redis tests empty their database before and after; two pytest-xdist workers (or two
    runs given the same TEST_REDIS_URL) would otherwise empty each other's queues.
    """
    digest = hashlib.sha1(url.encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"skileez-test-redis-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def redis_url() -> Iterator[str]:
    from redis import Redis

    try:
        connection = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
        connection.ping()
    except Exception as exc:
        require_service("Redis", False, str(exc))
    with redis_database_to_ourselves(TEST_REDIS_URL):
        connection.flushdb()
        yield TEST_REDIS_URL
        connection.flushdb()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                from email import message_from_bytes, policy

                sink.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def smtp_config(sink: SmtpSink) -> dict:
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAIL_USE_TLS": False,
            "MAIL_USE_SSL": False, "MAIL_TIMEOUT": 5}


# --- coaching ----------------------------------------------------------------

def _in_app(make_app, fn, *, serialized=False):
    """Run ``fn`` as one unit of work in the newest app, the way a route or a job does."""
    with make_app.apps[-1].app_context():
        with transaction(serialized=serialized):
            result = fn()
        if result is not None:
            db.session.refresh(result)
            db.session.expunge(result)
        return result


def _load(model, obj_id):
    return db.session.get(model, obj_id)


@pytest.fixture
def make_offering(make_app):
    from skileez.auth.models import User
    from skileez.coaches.operations import create_offering

    def factory(coach, *, title="Conversation practice", duration=60, price=5000,
                currency="EUR", description=""):
        return _in_app(make_app, lambda: create_offering(
            _load(User, coach.id), title=title, description=description,
            duration_minutes=duration, price_minor=price, currency=currency))

    return factory


@pytest.fixture
def add_hours(make_app):
    """Weekly availability: add_hours(coach, [0, 1, 2], "09:00", "12:00")."""
    from skileez.auth.models import User
    from skileez.coaches.operations import add_rule

    def factory(coach, weekdays, start="09:00", end="17:00"):
        def run():
            for weekday in weekdays:
                add_rule(_load(User, coach.id), weekday=weekday,
                         start_minute=int(start[:2]) * 60 + int(start[3:]),
                         end_minute=int(end[:2]) * 60 + int(end[3:]))
        _in_app(make_app, run)

    return factory


@pytest.fixture
def make_proposal(make_app):
    from skileez.auth.models import User
    from skileez.coaches.models import Offering
    from skileez.contracts.operations import propose

    def factory(student, offering, *, sessions=5, message="Hello!"):
        return _in_app(make_app, lambda: propose(
            _load(User, student.id), _load(Offering, offering.id), sessions_count=sessions,
            message=message))

    return factory


@pytest.fixture
def make_contract(make_app, make_proposal):
    from skileez.auth.models import User
    from skileez.contracts.models import Proposal
    from skileez.contracts.operations import accept

    def factory(student, offering, *, sessions=5):
        proposal = make_proposal(student, offering, sessions=sessions)
        return _in_app(make_app, lambda: accept(
            _load(Proposal, proposal.id), _load(User, offering.coach_id)))

    return factory


@pytest.fixture
def coaching(make_user, make_offering, add_hours, make_contract):
    """A coach in Berlin free Mon–Fri 09:00–17:00, a student in New York, one contract."""
    coach = make_user("coach", name="Clara Schmidt", email="clara@example.com",
                      timezone="Europe/Berlin")
    student = make_user(name="Sam Rivera", email="sam@example.com", timezone="America/New_York")
    offering = make_offering(coach, title="Conversation practice", duration=60, price=4990,
                             currency="EUR")
    add_hours(coach, [0, 1, 2, 3, 4], "09:00", "17:00")
    contract = make_contract(student, offering, sessions=5)
    return {"coach": coach, "student": student, "offering": offering, "contract": contract}


@pytest.fixture
def book_session(make_app):
    """Book through the real operation: book_session(student, contract, starts_at)."""
    from skileez.auth.models import User
    from skileez.sessions.operations import book

    def factory(student, contract, starts_at):
        # Serialized like the booking route: on SQLite the check for a free slot and the
        # insert hold the write lock together.
        return _in_app(make_app, lambda: book(_load(User, student.id), contract.id, starts_at),
                       serialized=True)

    return factory


@pytest.fixture
def paid_session(make_app, book_session):
    """A booked and paid (scheduled) session: paid_session(student, contract, starts_at)."""
    from skileez.payments.operations import ensure_payment_intent, payment_succeeded
    from skileez.sessions.models import Session as SessionModel

    def factory(student, contract, starts_at):
        session = book_session(student, contract, starts_at)

        def pay():
            payment = _load(SessionModel, session.id).payment
            ensure_payment_intent(payment)
            payment_succeeded(payment.payment_intent_id, charge_id=f"ch_test_{payment.id}")
            return _load(SessionModel, session.id)

        return _in_app(make_app, pay)

    return factory
