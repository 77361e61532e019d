"""Issue 8, item 4: each reminder once, only the nearest one for a session booked late.

What a person notices is the email: these tests count the reminder emails in the outbox
each participant would receive, with the clock frozen and swept like the worker does.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from skileez.auth.models import User
from skileez.coaches.operations import profile_for
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import OutboxEmail


@pytest.fixture
def no_notice(app, coaching):
    """The coach takes bookings up to the last minute, so a session can be 3 minutes away."""
    with app.app_context():
        profile_for(db.session.get(User, coaching["coach"].id)).min_notice_hours = 0
        db.session.commit()


def reminders(app) -> Counter:
    with app.app_context():
        rows = db.session.scalars(select(OutboxEmail).where(
            OutboxEmail.kind == "session_reminder").order_by(OutboxEmail.id)).all()
        return Counter((row.to_address, row.subject) for row in rows)


def sweeps(app, clock, n=3, step=timedelta(seconds=15)):
    for _ in range(n):
        with app.app_context():
            sweep()
        clock.advance(step)


def book_ahead(clock, coaching, paid_session, ahead):
    # The coach's hours are 09:00-17:00 Berlin (08:00-16:00 UTC); 10:00 UTC is a slot.
    start = clock.now().replace(hour=10, minute=0) + timedelta(days=ahead.days)
    clock.advance(start - ahead - clock.now())
    return paid_session(coaching["student"], coaching["contract"], start)


def test_a_session_booked_three_minutes_ahead_gets_one_reminder_each(
        app, coaching, clock, paid_session, no_notice):
    book_ahead(clock, coaching, paid_session, timedelta(minutes=3))
    sweeps(app, clock, n=5, step=timedelta(seconds=20))
    sent = reminders(app)
    assert sorted(address for address, _ in sent) == ["clara@example.com", "sam@example.com"]
    assert all(count == 1 for count in sent.values())
    assert all("in 3 minutes" in subject or "in 2 minutes" in subject for _, subject in sent)


def test_a_session_booked_five_hours_ahead_gets_only_the_one_hour_reminder(
        app, coaching, clock, paid_session, no_notice):
    session = book_ahead(clock, coaching, paid_session, timedelta(hours=5))
    sweeps(app, clock)
    assert reminders(app) == Counter()  # the 24 h moment passed before it was booked
    clock.advance(session.starts_at - timedelta(hours=1) - clock.now())
    sweeps(app, clock, n=4)
    sent = reminders(app)
    assert sorted(address for address, _ in sent) == ["clara@example.com", "sam@example.com"]
    assert all(count == 1 for count in sent.values())
    assert all("in 1 hour" in subject for _, subject in sent)
    clock.advance(timedelta(minutes=30))
    sweeps(app, clock)
    assert reminders(app) == sent


def test_a_session_booked_two_days_ahead_gets_both_reminders_once_each(
        app, coaching, clock, paid_session, no_notice):
    session = book_ahead(clock, coaching, paid_session, timedelta(days=2))
    sweeps(app, clock)
    assert reminders(app) == Counter()
    clock.advance(session.starts_at - timedelta(hours=24) - clock.now())
    sweeps(app, clock, n=4)
    first = reminders(app)
    assert len(first) == 2 and all(count == 1 for count in first.values())
    assert all("in 1 day" in subject or "in 24 hours" in subject for _, subject in first)
    clock.advance(session.starts_at - timedelta(hours=1) - clock.now())
    sweeps(app, clock, n=4)
    clock.advance(timedelta(minutes=20))
    sweeps(app, clock, n=2)
    both = reminders(app)
    assert len(both) == 4 and all(count == 1 for count in both.values())
    assert sum(1 for _, subject in both if "in 1 hour" in subject) == 2
