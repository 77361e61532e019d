"""What the session page's live status fragment costs: it is polled every 10 s by every open
session page, by both participants, for as long as the session is not final.

Two figures. Throughput: one signed-in participant polling ``GET /sessions/<id>/live``
(sequentially, through the Flask test client, for about two seconds) against a bare
endpoint registered on the same app that only answers "ok", so the ratio is what the
fragment adds over Flask's own per-request cost (sessions, security headers, the login
hook). SQL per request: queries counted on the engine for one fragment request, for a
student and a coach who have 1 session in all against a pair who have 100 (past and
future, in every status, on four contracts, with ratings and reschedule requests). The
polled session has the same shape in both, so the counts must be equal: a count that grows
with the number of sessions is a bug, and the statements that differ are printed.

SQLite in a temporary directory, schema built by the migrations; nothing to set up.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import event

PASSWORD = "bench-password"
SECONDS = 2.0  # per throughput measurement
SESSIONS_MANY = 100
CONTRACTS_MANY = 4  # 25 sessions each; a contract holds at most 50
# Statuses for the background sessions, cycled: past ones final, future ones live.
PAST = ("completed", "cancelled", "missed", "completed", "expired")
FUTURE = ("scheduled", "cancelled", "pending_payment", "scheduled")
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def build_app(directory: Path):
    """An app on a fresh SQLite file, with the schema the migrations build."""
    from flask_migrate import upgrade

    from skileez import create_app
    from skileez.extensions import db

    app = create_app({
        "SKILEEZ_ENV": "testing",
        "SECRET_KEY": "bench",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{directory / 'bench.sqlite3'}",
        "REDIS_URL": None,
        "MAIL_SERVER": None,
        "STRIPE_SECRET_KEY": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        # Signing in is not what is measured here.
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
    })

    def bare():
        return "ok"

    bare.skileez_public = True  # reachable without signing in, like any public view
    # Registered before the first request, as Flask requires.
    app.add_url_rule("/bench/bare", "bench_bare", bare)
    with app.app_context():
        logging.disable(logging.INFO)  # Alembic's line per revision would drown the figures
        try:
            upgrade()
        finally:
            logging.disable(logging.NOTSET)
        db.session.remove()
    return app


def make_pair(label: str, background: int) -> tuple[int, int, int]:
    """A coach and a student with one polled session tomorrow plus ``background`` others.

    Returns (coach id, student id, polled session id). The background sessions are made
    with the ORM directly, in every status, spread over ``CONTRACTS_MANY`` contracts, so
    that whatever the fragment might load for "all of this user's sessions" is large.
    """
    from skileez import clock
    from skileez.auth.operations import create_user
    from skileez.coaches.operations import create_offering
    from skileez.contracts.operations import accept, propose
    from skileez.extensions import db
    from skileez.sessions.models import Rating, RescheduleRequest, Session

    coach = create_user(name=f"Coach {label}", email=f"coach-{label}@bench.example",
                        password=PASSWORD, role="coach", timezone="Europe/Berlin",
                        welcome=False)
    student = create_user(name=f"Student {label}", email=f"student-{label}@bench.example",
                          password=PASSWORD, role="student", timezone="America/New_York",
                          welcome=False)
    offering = create_offering(coach, title="Conversation practice", description="",
                               duration_minutes=60, price_minor=4990, currency="EUR")
    contracts_count = CONTRACTS_MANY if background else 1
    per_contract = max(1, -(-(background + 1) // contracts_count))
    contracts = [accept(propose(student, offering, sessions_count=per_contract,
                                message="Benchmark"), coach)
                 for _ in range(contracts_count)]
    db.session.flush()

    now = clock.now().replace(minute=0, second=0, microsecond=0)
    numbers = Counter()

    def add(contract, starts_at, status, **values):
        numbers[contract.id] += 1
        session = Session(contract_id=contract.id, number=numbers[contract.id],
                          coach_id=coach.id, student_id=student.id, starts_at=starts_at,
                          ends_at=starts_at + timedelta(hours=1),
                          coach_block_end=starts_at + timedelta(hours=1), status=status,
                          **values)
        db.session.add(session)
        return session

    polled = add(contracts[0], now + timedelta(days=1), "scheduled")
    for k in range(background):
        contract = contracts[k % contracts_count]
        past = k % 2 == 0
        starts_at = now + (timedelta(days=-2 - k) if past else timedelta(days=2 + k))
        status = (PAST if past else FUTURE)[(k // 2) % (len(PAST) if past else len(FUTURE))]
        values = {}
        if status == "completed":
            values = {"started_at": starts_at, "student_joined_at": starts_at,
                      "coach_joined_at": starts_at, "completed_at": starts_at +
                      timedelta(hours=1), "coach_notes": "Drills."}
        elif status == "cancelled":
            values = {"cancelled_by_id": student.id, "cancelled_at": starts_at -
                      timedelta(days=3), "late": k % 3 == 0, "reason": "Busy"}
        elif status == "missed":
            values = {"missed_by": "student", "missed_reason": "No show"}
        elif status == "pending_payment":
            values = {"hold_expires_at": now + timedelta(minutes=15)}
        session = add(contract, starts_at, status, **values)
        db.session.flush()
        if status == "completed":
            db.session.add(Rating(session_id=session.id, rater_id=student.id,
                                  ratee_id=coach.id, stars=5, tags=["clear"]))
        if k % 7 == 0:
            db.session.add(RescheduleRequest(
                session_id=session.id, requested_by_id=student.id,
                original_start=starts_at, proposed_start=starts_at + timedelta(days=1),
                reason="Benchmark request", deadline=starts_at - timedelta(hours=1),
                status="declined"))
    db.session.commit()
    return coach.id, student.id, polled.id


class Browser:
    """A signed-in test client that sends what htmx sends with a poll."""

    def __init__(self, app, email: str):
        self.http = app.test_client()
        page = self.http.get("/login").get_data(as_text=True)
        token = CSRF.search(page).group(1)
        response = self.http.post("/login", data={"email": email, "password": PASSWORD,
                                                  "csrf_token": token})
        if response.status_code != 303:
            raise RuntimeError(f"sign-in as {email} failed: {response.status_code}")

    def get(self, url: str, *, expect: str | None = None):
        response = self.http.get(url, headers={"HX-Request": "true",
                                               "HX-Target": "session-live"})
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        if expect is not None and expect not in response.get_data(as_text=True):
            raise RuntimeError(f"GET {url} did not contain {expect!r}")
        return response


@contextmanager
def recorded_statements(engine):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def per_second(call) -> tuple[float, int]:
    """Requests per second of ``call`` made back to back for about SECONDS."""
    for _ in range(20):  # warm up: template compilation, first connections
        call()
    count, began = 0, time.perf_counter()
    deadline = began + SECONDS
    while time.perf_counter() < deadline:
        call()
        count += 1
    return count / (time.perf_counter() - began), count


def shape(statement: str) -> str:
    """A statement with its column list folded, to tell which query is which."""
    return re.sub(r"^SELECT .*? FROM", "SELECT … FROM", statement)[:160]


def main() -> None:
    from skileez.extensions import db

    with tempfile.TemporaryDirectory(prefix="skileez-bench-") as directory:
        app = build_app(Path(directory))
        with app.app_context():
            few = make_pair("one", 0)
            many = make_pair("many", SESSIONS_MANY)
            engine = db.engine

        # SQL per fragment request, for each role, 1 session against 100.
        counts: dict[tuple[str, str], list[str]] = {}
        for label, (_coach_id, _student_id, session_id) in (("1", few), ("100", many)):
            email_label = "one" if label == "1" else "many"
            for role in ("student", "coach"):
                client = Browser(app, f"{role}-{email_label}@bench.example")
                url = f"/sessions/{session_id}/live"
                client.get(url, expect='data-status="scheduled"')  # warm: caches, templates
                with recorded_statements(engine) as statements:
                    client.get(url, expect='data-status="scheduled"')
                counts[(role, label)] = statements
        for role in ("student", "coach"):
            tables = ", ".join(re.search(r" FROM (\w+)", s).group(1) for s in counts[(role, "1")])
            print(f"   {role}'s queries: {tables}")
        for role in ("student", "coach"):
            one, hundred = counts[(role, "1")], counts[(role, "100")]
            print(f"   SQL per fragment request, {role}: {len(one)} with 1 session, "
                  f"{len(hundred)} with {SESSIONS_MANY + 1} sessions"
                  + ("" if len(one) == len(hundred) else "  <-- GROWS"))
            if len(one) != len(hundred):
                grown = Counter(map(shape, hundred)) - Counter(map(shape, one))
                for statement, extra in grown.most_common():
                    print(f"      +{extra}× {statement}")

        # Throughput: the fragment against a bare endpoint, same app, same signed-in client.
        client = Browser(app, "student-one@bench.example")
        url = f"/sessions/{few[2]}/live"
        fragment, fragment_n = per_second(lambda: client.get(url))
        bare, bare_n = per_second(lambda: client.get("/bench/bare", expect="ok"))
        print(f"   GET /sessions/<id>/live (student, signed in): {fragment:.0f} req/s "
              f"({fragment_n} in {SECONDS:.0f} s, {1e3 / fragment:.2f} ms each)")
        print(f"   GET /bench/bare (same app and client):        {bare:.0f} req/s "
              f"({bare_n} in {SECONDS:.0f} s, {1e3 / bare:.2f} ms each)")
        print(f"   the fragment costs {bare / fragment:.1f}× a bare request; one server "
              f"process answers the polls of about {fragment * 10:.0f} open session pages "
              f"(one poll per page every 10 s)")

        with app.app_context():
            db.engine.dispose()


if __name__ == "__main__":
    main()
