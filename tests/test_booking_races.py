"""Many people booking the same time at once: exactly one wins, nobody sees a 500.

On PostgreSQL 50 threads race (exclusion constraints decide); on SQLite 20 (the
serialized BEGIN IMMEDIATE transaction decides, and nobody may see "database is
locked").
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from skileez.extensions import db
from skileez.sessions.models import Session
from tests.conftest import Client

SLOT = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)  # Wed 10:00 in Berlin



# Concurrent writers (threads) see only what is committed.
pytestmark = [pytest.mark.usefixtures("ledger_checked_after_each_test"), pytest.mark.real_commits]


def _threads(app) -> int:
    with app.app_context():
        return 50 if db.engine.dialect.name == "postgresql" else 20


@pytest.mark.parametrize(("label", "offsets"), [
    ("same slot", lambda n: [timedelta(0)] * n),
    # Everyone after the first asks for a start 30 minutes later: overlapping, not equal.
    ("partly overlapping", lambda n: [timedelta(0)] + [timedelta(minutes=30)] * (n - 1)),
    # 60-minute sessions with a 15-minute buffer: 11:00 is too close to 10:00–11:00.
    ("inside the buffer", lambda n: [timedelta(0)] + [timedelta(hours=1)] * (n - 1)),
])
def test_concurrent_bookings_have_one_winner(app, coaching, make_user, make_contract, clock,
                                             label, offsets):
    count = _threads(app)
    clients, contracts = [], []
    for n in range(count):
        student = make_user(email=f"racer{n}@example.com", name=f"Racer {n}")
        contracts.append(make_contract(student, coaching["offering"], sessions=1))
        client = Client(app)
        client.login(f"racer{n}@example.com")
        clients.append((client, client.csrf_token("/dashboard")))
    starts = [SLOT + offset for offset in offsets(count)]
    barrier, results = threading.Barrier(count), [None] * count

    def attempt(index):
        client, token = clients[index]
        barrier.wait()
        response = client.http.post(
            f"/sessions/book/{contracts[index].id}/confirm",
            data={"starts_at": starts[index].isoformat(), "csrf_token": token})
        results[index] = (response.status_code, response.get_data(as_text=True))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = [status for status, _ in results]
    assert statuses.count(303) == 1, (label, statuses)
    assert statuses.count(409) == count - 1, (label, statuses)
    for status, body in results:
        if status == 409:
            assert "This time was just taken — pick another." in body
        assert "database is locked" not in body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 1


def test_the_database_itself_refuses_overlaps(app, coaching, make_user, make_contract, clock,
                                              book_session):
    """Not only the check before the insert: the database enforces it."""
    import sqlite3

    from sqlalchemy.exc import IntegrityError

    from skileez.core.unit_of_work import begin_serialized

    first = book_session(coaching["student"], coaching["contract"], SLOT)
    other = make_user(email="other@example.com")
    contract = make_contract(other, coaching["offering"])
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            overlapping = Session(
                contract_id=contract.id, number=1, coach_id=first.coach_id,
                student_id=other.id, starts_at=SLOT + timedelta(minutes=30),
                ends_at=SLOT + timedelta(minutes=90), coach_block_end=SLOT + timedelta(
                    minutes=105), status="scheduled")
            db.session.add(overlapping)
            with pytest.raises(IntegrityError, match="ex_sessions_coach_no_overlap"):
                db.session.flush()
            db.session.rollback()
        else:
            # SQLite: booking holds the write lock from its first statement, so no other
            # writer can slip in between its check and its insert.
            begin_serialized()
            path = db.engine.url.database
            other_writer = sqlite3.connect(path, timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other_writer.execute("BEGIN IMMEDIATE")
            other_writer.close()
            db.session.rollback()
