"""How many bookings per second one coach's calendar takes on PostgreSQL, and how slowly.

Booking is the one write that many students make against the same rows at
once: a popular coach opens a new month and everyone grabs a slot. ``book``
locks the contract row, re-checks the live calendar and relies on the
exclusion constraint to refuse double bookings, so what matters is how it
behaves under concurrency, not alone: 8 clients book the same coach at the
same time, each in its own app context and database connection, through the
real operation and a real commit. About 10% of the attempts aim at a slot
another client aims at in the same moment, so the losing path (Conflict and
rollback) is measured too and the database's refusal is exercised for real.

PostgreSQL comes from BENCH_DATABASE_URL (its own database, whose public
schema is dropped and rebuilt by the migrations on every run, so never point
it at data you want to keep). Without PostgreSQL the benchmark says so and
is skipped, so ``make bench`` still runs everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from skileez.config import normalise_database_url

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/skileez_bench"
CLIENTS = 8
ATTEMPTS_PER_CLIENT = 40
# Each shared slot is aimed at by two clients: 16 × 2 = 32 of 320 attempts (10%).
SHARED_SLOTS = 16
DURATION_MINUTES = 30  # on the 30-minute grid, so neighbouring slots never overlap
CONTRACT_SESSIONS = 50  # the policy's maximum per proposal
SEED = 20261122  # fixed: the same plan of attempts on every run
CONNECT_TIMEOUT = 3


@dataclass
class ClientResult:
    """What one client saw; filled in by its thread, read once all have finished."""

    booked: int = 0
    conflicts: int = 0
    latencies: list[float] = field(default_factory=list)
    error: BaseException | None = None


def prepare_database(url: URL) -> str | None:
    """Create the bench database if needed and empty its schema; the reason to skip, or None.

    The database may not exist yet, and a database cannot create itself, so
    the check runs from a maintenance database (``postgres``, else ``test``).
    Any failure here means the machine has no usable PostgreSQL for us, which
    is a reason to skip, not to break every other benchmark.
    """
    if url.get_backend_name() != "postgresql":
        return f"BENCH_DATABASE_URL is not a PostgreSQL URL ({url.get_backend_name()})"
    options = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    last_error = "no maintenance database answered"
    for maintenance in ("postgres", "test"):
        engine = create_engine(url.set(database=maintenance), isolation_level="AUTOCOMMIT",
                               **options)
        try:
            with engine.connect() as connection:
                exists = connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                           {"n": url.database})
                if not exists:
                    name = connection.dialect.identifier_preparer.quote(url.database)
                    connection.execute(text(f"CREATE DATABASE {name}"))
            break
        except DBAPIError as exc:
            last_error = _first_line(exc)
        finally:
            engine.dispose()
    else:
        return last_error
    engine = create_engine(url, **options)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    except DBAPIError as exc:
        return _first_line(exc)
    finally:
        engine.dispose()
    return None


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig or exc).strip().splitlines()[0]


def build_app(url: URL):
    """An app on the bench database with the schema the migrations build, as in production."""
    from flask_migrate import upgrade

    from skileez import create_app
    from skileez.extensions import db

    app = create_app({
        "SKILEEZ_ENV": "testing",
        "SECRET_KEY": "bench",
        "SQLALCHEMY_DATABASE_URI": url.render_as_string(hide_password=False),
        # One pooled connection per client (plus the set-up's): with the default
        # pool of 5, connections beyond it are closed on return and reopened,
        # and the figures would measure connecting instead of booking.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": CLIENTS + 2},
        "REDIS_URL": None,
        "MAIL_SERVER": None,
        "STRIPE_SECRET_KEY": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        # Sign-up hashing is not what is measured here.
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
    })
    with app.app_context():
        # Alembic's INFO lines about each revision would drown the figures.
        logging.disable(logging.INFO)
        try:
            upgrade()
        finally:
            logging.disable(logging.NOTSET)
        db.session.remove()
    return app


def set_up_calendar(app) -> tuple[int, list[tuple[int, list[int]]], list[datetime]]:
    """The coach, the students with their contracts, and the free slots, made the real way.

    Returns the coach's id, (student id, contract ids) per client and the open
    slots from tomorrow on (tomorrow, so no slot slips into the past mid-run).
    """
    from skileez import clock
    from skileez.auth.operations import create_user
    from skileez.coaches.availability import coach_open_slots
    from skileez.coaches.operations import add_rule, create_offering, update_profile
    from skileez.contracts.operations import accept, propose
    from skileez.extensions import db

    contracts_each = math.ceil(ATTEMPTS_PER_CLIENT / CONTRACT_SESSIONS)
    with app.app_context():
        coach = create_user(name="Bench Coach", email="coach@bench.example",
                            password="bench-password", role="coach",
                            timezone="Europe/Berlin", welcome=False)
        update_profile(coach, headline="Always available", bio="", subjects="",
                       buffer_minutes=0, min_notice_hours=0, horizon_days=365)
        for weekday in range(7):
            add_rule(coach, weekday=weekday, start_minute=8 * 60, end_minute=20 * 60)
        offering = create_offering(coach, title="Half-hour check-in", description="",
                                   duration_minutes=DURATION_MINUTES, price_minor=2500,
                                   currency="EUR")
        clients = []
        for number in range(1, CLIENTS + 1):
            student = create_user(name=f"Bench Student {number}",
                                  email=f"student{number}@bench.example",
                                  password="bench-password", role="student",
                                  timezone="Europe/Berlin", welcome=False)
            contract_ids = []
            for _ in range(contracts_each):
                proposal = propose(student, offering, sessions_count=CONTRACT_SESSIONS,
                                   message="Benchmark bookings")
                contract_ids.append(accept(proposal, coach).id)
            clients.append((student.id, contract_ids))
        db.session.commit()
        range_start = clock.now() + timedelta(days=1)
        slots = coach_open_slots(coach, timedelta(minutes=DURATION_MINUTES), range_start,
                                 range_start + timedelta(days=28))
        coach_id = coach.id
        db.session.remove()
    return coach_id, clients, slots


def plan_attempts(slots: list[datetime]) -> list[list[datetime]]:
    """Which slot each client tries, in order: mostly its own, some shared with one other.

    A shared slot sits at the same position in both clients' lists so the two
    attempts really run at about the same time rather than one long after
    the other. Exactly one of each pair can win, so the conflicts to expect
    are ``SHARED_SLOTS``.
    """
    needed = CLIENTS * ATTEMPTS_PER_CLIENT - SHARED_SLOTS
    if len(slots) < needed:
        raise RuntimeError(f"only {len(slots)} free slots, {needed} needed")
    rng = random.Random(SEED)
    pool = rng.sample(slots, needed)
    shared, own = pool[:SHARED_SLOTS], iter(pool[SHARED_SLOTS:])
    plans: list[list[datetime | None]] = [[None] * ATTEMPTS_PER_CLIENT for _ in range(CLIENTS)]
    for k, slot in enumerate(shared):
        first = k % CLIENTS
        second = (first + 1 + k // CLIENTS) % CLIENTS
        position = rng.choice([p for p in range(ATTEMPTS_PER_CLIENT)
                               if plans[first][p] is None and plans[second][p] is None])
        plans[first][position] = plans[second][position] = slot
    return [[slot if slot is not None else next(own) for slot in plan] for plan in plans]


def run_client(app, student_id: int, contract_ids: list[int], plan: list[datetime],
               start: threading.Barrier, result: ClientResult) -> None:
    """One student booking through ``plan``, timing book + commit (or rollback) each time."""
    from skileez.auth.models import User
    from skileez.core.errors import Conflict
    from skileez.extensions import db
    from skileez.sessions.operations import book

    try:
        with app.app_context():
            # Loading the student before the start opens this client's connection,
            # so the first timed booking does not pay for connecting.
            student = db.session.get(User, student_id)
            contracts = iter(contract_ids)
            contract_id, used = next(contracts), 0
            start.wait()
            for starts_at in plan:
                if used == CONTRACT_SESSIONS:
                    contract_id, used = next(contracts), 0
                began = time.perf_counter()
                try:
                    book(student, contract_id, starts_at)
                    db.session.commit()
                except Conflict:
                    db.session.rollback()
                    result.conflicts += 1
                else:
                    result.booked += 1
                    used += 1
                result.latencies.append(time.perf_counter() - began)
    except BaseException as exc:  # reported by main(); a silent thread would skew the figures
        result.error = exc
        start.abort()


def check_no_overlap(app, coach_id: int, booked: int) -> None:
    """Ask the database itself whether two live sessions of the coach overlap."""
    from skileez.extensions import db

    live = "status NOT IN ('cancelled', 'expired', 'missed')"
    with app.app_context():
        overlaps = db.session.scalar(text(
            "SELECT count(*) FROM sessions a JOIN sessions b "
            "ON a.coach_id = b.coach_id AND a.id < b.id "
            "AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at "
            f"WHERE a.coach_id = :coach AND a.{live} AND b.{live}"), {"coach": coach_id})
        stored = db.session.scalar(text(f"SELECT count(*) FROM sessions WHERE coach_id = :coach "
                                        f"AND {live}"), {"coach": coach_id})
        db.session.remove()
    if overlaps:
        raise RuntimeError(f"{overlaps} pairs of the coach's sessions overlap")
    if stored != booked:
        raise RuntimeError(f"{booked} bookings succeeded but {stored} sessions are stored")
    print("   overlap check: none")


def main() -> None:
    url = make_url(normalise_database_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)))
    where = url.render_as_string(hide_password=True)
    reason = prepare_database(url)
    if reason:
        print(f"   skipped: no usable PostgreSQL at {where} ({reason}); "
              "set BENCH_DATABASE_URL to run it")
        return

    app = build_app(url)
    coach_id, clients, slots = set_up_calendar(app)
    plans = plan_attempts(slots)

    start = threading.Barrier(CLIENTS + 1)
    results = [ClientResult() for _ in range(CLIENTS)]
    threads = [threading.Thread(target=run_client, name=f"bench-client-{number}",
                                args=(app, student_id, contract_ids, plan, start, result))
               for number, ((student_id, contract_ids), plan, result)
               in enumerate(zip(clients, plans, results, strict=True))]
    for thread in threads:
        thread.start()
    # Broken when a client failed before the start; its error is raised below.
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait(timeout=30)
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    for result in results:
        if result.error is not None:
            raise RuntimeError("a booking client failed") from result.error

    booked = sum(result.booked for result in results)
    conflicts = sum(result.conflicts for result in results)
    latencies = sorted(seconds * 1e3 for result in results for seconds in result.latencies)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    expected = "expected" if conflicts == SHARED_SLOTS else f"expected {SHARED_SLOTS}"
    print(f"   {CLIENTS} clients, same coach, PostgreSQL: {booked} bookings in {wall:.1f} s "
          f"= {booked / wall:.0f} bookings/s; p50 {cuts[49]:.0f} ms, p95 {cuts[94]:.0f} ms, "
          f"max {latencies[-1]:.0f} ms; {conflicts} conflicts ({expected})")
    check_no_overlap(app, coach_id, booked)

    from skileez.extensions import db

    with app.app_context():
        db.engine.dispose()
