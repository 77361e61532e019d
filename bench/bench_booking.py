"""Bookings per second, the way students make them: over HTTP, through gunicorn, on a
PostgreSQL database that already holds a large data set.

Booking is the one write many people make against the same rows at once: a popular coach
opens a new month and everyone grabs a slot. Two runs, each with 8 client processes, each
signed in as its own student through the login form:

* **many coaches**: every client books with its own coach, so what is measured is the
  cost of one booking request when nothing waits on anything else;
* **one coach**: all 8 book the same coach, so what is measured is how long a booking
  holds that coach's calendar (the advisory lock, the contract row) while others queue.
  About 10% of the attempts race another client for the very same slot at the same
  moment, so the losing path (409, nothing stored) runs for real too.

A client does what the browser does: it opens the booking page once (which carries the
CSRF token, as ``hx-headers`` on ``<body>``), then for every time it picks posts the
confirmation form (``csrf_token`` and the hidden ``starts_at``) and takes the 303 to the
payment page as its answer. The redirect is not followed: paying is not booking.

The database is ``skileez_bench_booking``, a fresh copy of the generated "large" data set
(``bench/dataset.py``: 200 coaches, 2,000 students, tens of thousands of sessions,
payments, ledger entries and audit rows), then the bench's own coaches, students and
contracts through the real operations, each bench coach with a calendar already holding
sessions before and after the weeks being booked (plain SQL, ``busy_calendars``).
Afterwards SQL checks that no coach's live sessions overlap and that exactly as many
sessions (and payments) were stored as bookings succeeded.

Besides bookings per second (which other work on a shared machine moves a lot), it prints
the CPU the app and the database spent per attempt, which that work moves much less.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from bench import dataset, support

SUMMARY = ("booking many coaches", "booking one coach")

CLIENTS = 8
# Sync gunicorn workers on this 2-core machine, which the 8 client processes and
# PostgreSQL share. A booking spends about 12 ms of CPU in the app and 6-8 ms waiting on
# the database (13 round trips, the commit's fsync), so one worker per core leaves a core
# idle while its worker waits; two per core keep both busy without a queue of context
# switches. Measured side by side (13:59 UTC, load 3-6 from other work): 2 workers 34/s
# many coaches and 39/s one coach, 3 workers 60/s and 22/s, 4 workers 58/s and 75/s.
WORKERS = 4
ATTEMPTS_MANY = 60  # per client, each with its own coach
ATTEMPTS_ONE = 40  # per client, all on the one coach
# Each shared slot is aimed at by two clients: 16 × 2 = 32 of 320 attempts (10%).
SHARED_SLOTS = 16
DURATION_MINUTES = 30  # on the 30-minute grid, so neighbouring slots never overlap
CONTRACT_SESSIONS = 50  # the policy's maximum per proposal
SEED = 20261122  # fixed: the same plan of attempts on every run
BOOKING_DAYS = 28  # the weeks being booked, from tomorrow
# Sessions already on each bench coach's calendar, outside the weeks being booked.
CALENDAR_PAST = 400
CALENDAR_FUTURE = 200
TOKEN = re.compile(r'"X-CSRFToken": "([^"]+)"')
LIVE = "status NOT IN ('cancelled', 'expired', 'missed')"


def database() -> URL:
    """The database the bench books in: a fresh copy of the generated "large" data set
    (``bench/dataset.py``), before the bench's own people are added."""
    return dataset.copy_of("large", "booking")


@dataclass
class Client:
    """One client process's student, what it books on and which starts it tries."""

    email: str
    contract_ids: list[int]
    plan: list[str]


def make_people(app, label: str, coaches: int, attempts: int) -> tuple[list[int], list[dict]]:
    """Coaches free every day 08:00–20:00 (Berlin) and one student per client, with enough
    contracts, through the real operations. Returns the coach ids and, per client, the
    student's email and contract ids (in the order the client uses them)."""
    from skileez.auth.operations import create_user
    from skileez.coaches.operations import add_rule, create_offering, update_profile
    from skileez.contracts.operations import accept, propose
    from skileez.core.unit_of_work import transaction

    contracts_each = -(-attempts // CONTRACT_SESSIONS)
    with app.app_context(), transaction():
        offerings, coach_ids = [], []
        for number in range(coaches):
            coach = create_user(name=f"Bench Coach {label} {number}",
                                email=f"coach-{label}-{number}@bench.example",
                                password=support.PASSWORD, role="coach",
                                timezone="Europe/Berlin", welcome=False)
            update_profile(coach, headline="Always available", bio="", subjects="",
                           buffer_minutes=0, min_notice_hours=0, horizon_days=365)
            for weekday in range(7):
                add_rule(coach, weekday=weekday, start_minute=8 * 60, end_minute=20 * 60)
            offerings.append((coach, create_offering(
                coach, title="Half-hour check-in", description="",
                duration_minutes=DURATION_MINUTES, price_minor=2500, currency="EUR")))
            coach_ids.append(coach.id)
        clients = []
        for number in range(CLIENTS):
            email = f"student-{label}-{number}@bench.example"
            student = create_user(name=f"Bench Student {label} {number}", email=email,
                                  password=support.PASSWORD, role="student",
                                  timezone="Europe/Berlin", welcome=False)
            coach, offering = offerings[number % coaches]
            contract_ids = [accept(propose(student, offering, sessions_count=CONTRACT_SESSIONS,
                                           message="Benchmark bookings"), coach).id
                            for _ in range(contracts_each)]
            clients.append({"email": email, "contract_ids": contract_ids})
    return coach_ids, clients


def busy_calendars(url: URL, coach_ids: list[int]) -> None:
    """Give each bench coach a calendar that is already full of business: sessions with a
    regular student of theirs before today and after the weeks being booked, so a booking's
    re-check meets a coach with hundreds of live sessions, as a popular coach has."""
    engine = create_engine(url)
    with engine.begin() as sql:
        for coach_id in coach_ids:
            sql.execute(text(f"""
                WITH regular AS (
                  INSERT INTO users (email, name, password_hash, role, timezone, status,
                                     session_token, created_at, updated_at)
                  VALUES ('regular-' || :coach || '@bench.example', 'Regular student', 'x',
                          'student', 'Europe/Berlin', 'active', md5('regular' || :coach),
                          now(), now())
                  RETURNING id),
                p AS (
                  INSERT INTO proposals (student_id, coach_id, offering_id, sessions_count,
                                         message, status, expires_at, created_at, updated_at)
                  SELECT regular.id, :coach, o.id, 50, '', 'accepted', now(), now(), now()
                  FROM regular, offerings o WHERE o.coach_id = :coach
                  RETURNING *),
                ct AS (
                  INSERT INTO contracts (proposal_id, student_id, coach_id, offering_id, title,
                                         duration_minutes, price_minor, currency,
                                         total_sessions, status, created_at, updated_at)
                  SELECT p.id, p.student_id, p.coach_id, p.offering_id, 'Regular', 60, 2500,
                         'EUR', 50, 'active', now(), now() FROM p
                  RETURNING id, student_id)
                INSERT INTO sessions (contract_id, number, coach_id, student_id, starts_at,
                                      ends_at, coach_block_end, status, meeting_room,
                                      created_at, updated_at, confirmed_by_coach, late)
                SELECT ct.id, n, :coach, ct.student_id, t.starts_at,
                       t.starts_at + interval '1 hour', t.starts_at + interval '1 hour',
                       CASE WHEN t.starts_at < now() THEN 'completed' ELSE 'scheduled' END,
                       md5(random()::text || :coach || '-' || n), now(), now(), false, false
                FROM ct, generate_series(1, {CALENDAR_PAST + CALENDAR_FUTURE}) n,
                     LATERAL (SELECT CASE WHEN n <= {CALENDAR_PAST}
                        THEN date_trunc('day', now()) - n * interval '1 day'
                        ELSE date_trunc('day', now()) + interval '{BOOKING_DAYS + 2} days'
                             + (n - {CALENDAR_PAST}) * interval '1 day' END
                        + interval '6 hours' AS starts_at) t
            """), {"coach": coach_id})
        sql.execute(text("ANALYZE sessions"))
    engine.dispose()


def open_starts(app, coach_id: int, count: int) -> list[datetime]:
    """The coach's first ``count`` open times from tomorrow, asked of the slot engine."""
    from skileez import clock
    from skileez.auth.models import User
    from skileez.coaches.availability import coach_open_slots
    from skileez.extensions import db

    with app.app_context():
        begin = clock.now() + timedelta(days=1)
        slots = coach_open_slots(db.session.get(User, coach_id),
                                 timedelta(minutes=DURATION_MINUTES), begin,
                                 begin + timedelta(days=BOOKING_DAYS))
        db.session.remove()
    if len(slots) < count:
        raise RuntimeError(f"only {len(slots)} open times, {count} needed")
    return slots


def plan_shared(slots: list[datetime], attempts: int) -> list[list[datetime]]:
    """Which time each client tries, in order, on one coach: mostly its own, some shared.

    A shared time sits at the same position in both clients' lists so that the two
    attempts really run at about the same moment; exactly one of each pair can win, so
    the conflicts to expect are ``SHARED_SLOTS``.
    """
    needed = CLIENTS * attempts - SHARED_SLOTS
    rng = random.Random(SEED)
    pool = rng.sample(slots, needed)
    shared, own = pool[:SHARED_SLOTS], iter(pool[SHARED_SLOTS:])
    plans: list[list[datetime | None]] = [[None] * attempts for _ in range(CLIENTS)]
    for k, slot in enumerate(shared):
        first = k % CLIENTS
        second = (first + 1 + k // CLIENTS) % CLIENTS
        position = rng.choice([p for p in range(attempts)
                               if plans[first][p] is None and plans[second][p] is None])
        plans[first][position] = plans[second][position] = slot
    return [[slot if slot is not None else next(own) for slot in plan] for plan in plans]


def run_client(base: str, client: Client, start, results) -> None:
    """One student: sign in, open the booking page once, then post each confirmation.

    Runs in its own process; puts (latencies, statuses) or the error on ``results``.
    """
    try:
        http = support.signed_in(base, client.email)
        page = http.get(f"{base}/sessions/book/{client.contract_ids[0]}", timeout=30)
        token = TOKEN.search(page.text)
        if page.status_code != 200 or token is None:
            raise RuntimeError(f"booking page answered {page.status_code} without a token")
        contracts = iter(client.contract_ids)
        contract_id, used = next(contracts), 0
        latencies, statuses = [], []
        start.wait()
        for starts_at in client.plan:
            if used == CONTRACT_SESSIONS:
                contract_id, used = next(contracts), 0
            began = time.perf_counter()
            response = http.post(f"{base}/sessions/book/{contract_id}/confirm",
                                 data={"csrf_token": token.group(1), "starts_at": starts_at},
                                 allow_redirects=False, timeout=60)
            latencies.append(time.perf_counter() - began)
            statuses.append(response.status_code)
            if response.status_code == 303:
                used += 1
            elif response.status_code != 409 or "just taken" not in response.text:
                raise RuntimeError(f"booking {starts_at} answered {response.status_code}: "
                                   f"{response.text[:300]}")
        results.put((latencies, statuses))
    except BaseException as exc:  # reported by the parent; a silent client would skew figures
        results.put(repr(exc))
        start.abort()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a live process has used (Linux ``/proc``), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


class CpuMeter:
    """CPU used by the gunicorn workers and by the database's backends for the bench
    database: figures the other work on a shared machine does not change much, unlike
    bookings per second (the backends are read from ``/proc``: PostgreSQL is local)."""

    def __init__(self, url: URL):
        self.url = url

    def _backends(self) -> list[int]:
        engine = create_engine(self.url)
        with engine.connect() as sql:
            pids = list(sql.scalars(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")))
        engine.dispose()
        return pids

    def snapshot(self) -> dict[str, dict[int, float]]:
        workers = [worker for master in _children(os.getpid()) for worker in _children(master)]
        return {"app": {pid: _cpu_seconds(pid) for pid in workers},
                "database": {pid: _cpu_seconds(pid) for pid in self._backends()}}

    @staticmethod
    def used(before: dict, after: dict) -> dict[str, float]:
        return {kind: sum(seconds - before[kind].get(pid, 0.0)
                          for pid, seconds in after[kind].items()) for kind in after}


def measure(base: str, clients: list[Client]) -> tuple[float, list[float], int, int]:
    """Run the clients at once; (wall seconds, latencies, bookings, conflicts)."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(CLIENTS + 1)
    results = context.Queue()
    processes = [context.Process(target=run_client, args=(base, client, start, results))
                 for client in clients]
    for process in processes:
        process.start()
    start.wait(timeout=120)
    began = time.perf_counter()
    answers = [results.get(timeout=600) for _ in processes]
    wall = time.perf_counter() - began
    for process in processes:
        process.join()
    errors = [answer for answer in answers if isinstance(answer, str)]
    if errors:
        raise RuntimeError(f"a booking client failed: {errors[0]}")
    latencies = [seconds for answer, _ in answers for seconds in answer]
    statuses = [status for _, answer in answers for status in answer]
    return wall, latencies, statuses.count(303), statuses.count(409)


def table_rows(url: URL, table: str) -> int:
    engine = create_engine(url)
    with engine.connect() as sql:
        count = sql.scalar(text(f"SELECT count(*) FROM {table}"))
    engine.dispose()
    return count


def live_sessions(url: URL, coach_ids: list[int]) -> int:
    engine = create_engine(url)
    with engine.connect() as sql:
        count = sql.scalar(text(
            f"SELECT count(*) FROM sessions WHERE coach_id = ANY(:coaches) AND {LIVE}"),
            {"coaches": coach_ids})
    engine.dispose()
    return count


def check_database(url: URL, coach_ids: list[int], before: int, booked: int) -> None:
    """Ask the database itself: no two live sessions of a coach overlap, and exactly as
    many sessions and payments were stored as bookings succeeded."""
    engine = create_engine(url)
    with engine.connect() as sql:
        overlaps = sql.scalar(text(
            "SELECT count(*) FROM sessions a JOIN sessions b "
            "ON a.coach_id = b.coach_id AND a.id < b.id "
            "AND a.starts_at < b.coach_block_end AND b.starts_at < a.coach_block_end "
            f"WHERE a.coach_id = ANY(:coaches) AND a.{LIVE} AND b.{LIVE}"),
            {"coaches": coach_ids})
        paid_for = sql.scalar(text(
            "SELECT count(*) FROM payments p JOIN sessions s ON s.id = p.session_id "
            "WHERE s.coach_id = ANY(:coaches) AND s.status = 'pending_payment'"),
            {"coaches": coach_ids})
    engine.dispose()
    stored = live_sessions(url, coach_ids)
    if overlaps:
        raise RuntimeError(f"{overlaps} pairs of live sessions overlap")
    if stored - before != booked or paid_for != booked:
        raise RuntimeError(f"{booked} bookings succeeded but {stored - before} sessions and "
                           f"{paid_for} payments were stored")
    print("   database check: no overlaps; sessions and payments stored = bookings")


def report(name: str, wall: float, latencies: list[float], booked: int, conflicts: int,
           expected_conflicts: int, cpu: dict[str, float]) -> None:
    rate = booked / wall
    p95 = support.percentile_ms(latencies, 95)
    expected = "as expected" if conflicts == expected_conflicts \
        else f"expected {expected_conflicts}"
    print(f"   {name}: {booked} bookings in {wall:.1f} s = {rate:.0f} bookings/s; "
          f"p50 {support.median_ms(latencies):.0f} ms, p95 {p95:.0f} ms, "
          f"max {max(latencies) * 1e3:.0f} ms; {conflicts} conflicts ({expected})")
    attempts = len(latencies)
    print(f"   {name}: CPU per attempt: app {cpu['app'] / attempts * 1e3:.1f} ms, "
          f"database {cpu['database'] / attempts * 1e3:.1f} ms")
    support.record(name, f"{rate:.0f} bookings/s p95 {p95:.0f} ms")


def main() -> None:
    url = database()
    app = support.build_app(url, migrate=False)
    many_coaches, many = make_people(app, "many", CLIENTS, ATTEMPTS_MANY)
    one_coach, one = make_people(app, "one", 1, ATTEMPTS_ONE)
    busy_calendars(url, many_coaches + one_coach)
    many_clients = [
        Client(person["email"], person["contract_ids"],
               [slot.isoformat() for slot in open_starts(app, coach_id, ATTEMPTS_MANY)
                [:ATTEMPTS_MANY]])
        for coach_id, person in zip(many_coaches, many, strict=True)]
    one_plans = plan_shared(open_starts(app, one_coach[0], CLIENTS * ATTEMPTS_ONE),
                            ATTEMPTS_ONE)
    one_clients = [Client(person["email"], person["contract_ids"],
                          [slot.isoformat() for slot in plan])
                   for person, plan in zip(one, one_plans, strict=True)]
    print(f"   the large data set with {table_rows(url, 'sessions'):,} sessions and "
          f"{table_rows(url, 'payments'):,} payments; each bench coach already has "
          f"{CALENDAR_PAST + CALENDAR_FUTURE} sessions; gunicorn {WORKERS} workers, "
          f"{CLIENTS} client processes")
    before_many, before_one = live_sessions(url, many_coaches), live_sessions(url, one_coach)
    meter = CpuMeter(url)
    with support.gunicorn(url, workers=WORKERS) as base:
        for name, clients, coach_ids, before, expected in (
                ("booking many coaches", many_clients, many_coaches, before_many, 0),
                ("booking one coach", one_clients, one_coach, before_one, SHARED_SLOTS)):
            cpu_before = meter.snapshot()
            wall, latencies, booked, conflicts = measure(base, clients)
            report(name, wall, latencies, booked, conflicts, expected,
                   meter.used(cpu_before, meter.snapshot()))
            check_database(url, coach_ids, before, booked)
