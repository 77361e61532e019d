"""What one booking costs the database: a fixed list of statements, whatever is booked.

Booking is the write many students make at once on one popular coach's new month, and
every statement is a round trip; the ones after the coach's calendar lock make every
other booking of that coach wait. The counts are exact so that a statement added to
booking (a lazy load, a second read of the profile, a check per existing session)
fails here instead of showing up as a slower benchmark.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from skileez.extensions import db
from tests.conftest import Client

# Frozen at Tue 10 Mar 2026 09:00 UTC; Clara (Berlin) is free Mon–Fri 09:00–17:00 local.
THU_10_BERLIN = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)

# A successful booking POST, from the sign-in lookup to the last insert (the commit is
# not a statement). PostgreSQL: user, contract with its coach and their profile, contract
# status FOR UPDATE, weekly hours, time off, stale holds, places taken and last number,
# the sessions near the new one, the calendar lock, and the session, its payment and
# their two audit rows. SQLite has no lock statement, but its serialized write begins
# with BEGIN IMMEDIATE after ending the read transaction, so the contract and coach are
# read again.
STATEMENTS = {"postgresql": 13, "sqlite": 15}
UNDER_THE_CALENDAR_LOCK = ["INSERT INTO sessions", "INSERT INTO audit_events",
                           "INSERT INTO payments", "INSERT INTO audit_events"]

# Concurrency-free, but the SQLite count includes its real BEGIN IMMEDIATE, which the
# rolled-back test transaction would skip.
pytestmark = pytest.mark.real_commits


@contextmanager
def recorded(app):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _book(app, client, token, contract_id, starts_at) -> list[str]:
    with recorded(app) as statements:
        response = client.post(f"/sessions/book/{contract_id}/confirm",
                               {"starts_at": starts_at.isoformat(), "csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    return statements


def test_a_booking_costs_the_same_statements_however_full_the_calendars_are(
        app, coaching, make_user, make_contract, book_session, clock):
    contract = make_contract(coaching["student"], coaching["offering"], sessions=40)
    client = Client(app)
    client.login("sam@example.com")
    token = client.csrf_token(f"/sessions/book/{contract.id}")
    first = _book(app, client, token, contract.id, THU_10_BERLIN)

    # A busier coach (another student's sessions on the days around) and a fuller
    # contract (the student's own bookings) must not cost one statement more.
    other = make_user(email="other@example.com", name="Other Student")
    other_contract = make_contract(other, coaching["offering"], sessions=20)
    for day in (0, 1, 4, 5, 6, 7, 8):
        book_session(other, other_contract, THU_10_BERLIN + timedelta(days=day, hours=2))
    for day in (1, 4, 5, 6, 7, 8, 11):
        _book(app, client, token, contract.id, THU_10_BERLIN + timedelta(days=day))
    later = _book(app, client, token, contract.id, THU_10_BERLIN + timedelta(days=12))

    with app.app_context():
        dialect = db.engine.dialect.name
    assert len(first) == len(later) == STATEMENTS[dialect], "\n".join(later)
    if dialect == "postgresql":
        lock = next(n for n, sql in enumerate(later) if "pg_advisory_xact_lock" in sql)
        after = [sql[:len(prefix)] for sql, prefix in
                 zip(later[lock + 1:], UNDER_THE_CALENDAR_LOCK, strict=False)]
        assert after == UNDER_THE_CALENDAR_LOCK and len(later) == lock + 1 + 4, later[lock:]
