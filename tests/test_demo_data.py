"""`make run` opens on a demo with something to do, however long ago it was first loaded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.extensions import db
from skileez.payments.ledger import check_invariants
from skileez.payments.operations import payment_can_be_paid
from skileez.seed import DEMO_ACCOUNTS
from skileez.sessions import lifecycle
from skileez.sessions.models import Session


def run_make_run_seed(app):
    """The seeding step of `make run` (see the Makefile's run target)."""
    result = app.test_cli_runner().invoke(args=["skileez", "seed", "--refresh-demo"])
    assert result.exit_code == 0, result.output
    return result.output


def what_can_be_done(app) -> dict[str, int]:
    """How many sessions allow each action now, asked of the rules the pages ask."""
    with app.app_context():
        found = {"start": 0, "join": 0, "complete": 0, "pay": 0, "reschedule": 0,
                 "cancel": 0}
        for session in db.session.scalars(select(Session)):
            people = (session.student, session.coach)
            checks = {
                "start": any(lifecycle.can_start(session, p).allowed for p in people),
                "join": any(lifecycle.can_join(session, p).allowed for p in people),
                "complete": any(lifecycle.can_complete(session, p).allowed for p in people),
                "pay": session.payment is not None
                and payment_can_be_paid(session.payment).allowed,
                "reschedule": any(lifecycle.can_request_reschedule(session, p).allowed
                                  for p in people),
                "cancel": any(lifecycle.can_cancel(session, p).allowed for p in people),
            }
            for action, allowed in checks.items():
                found[action] += bool(allowed)
        return found


def test_the_next_days_make_run_reloads_a_demo_with_everything_to_do(app, clock):
    assert "Demo data loaded." in run_make_run_seed(app)
    assert all(what_can_be_done(app).values()), what_can_be_done(app)
    clock.advance(timedelta(days=2))
    stale = what_can_be_done(app)
    assert stale["start"] == 0 and stale["pay"] == 0  # what the old demo looked like

    output = run_make_run_seed(app)

    assert "reloaded" in output
    assert all(what_can_be_done(app).values()), what_can_be_done(app)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == len(DEMO_ACCOUNTS)
        assert check_invariants() == []
    # Start windows follow each other: at every moment of the first hour, something
    # can be started.
    step = timedelta(minutes=5)
    for elapsed in range(0, 61, 5):
        assert what_can_be_done(app)["start"], f"nothing to start {elapsed} minutes in"
        if elapsed < 60:
            clock.advance(step)
    # Joining and completing the running session, rescheduling and cancelling stay
    # possible after that hour.
    later = what_can_be_done(app)
    assert later["join"] and later["complete"] and later["reschedule"] and later["cancel"]


def test_a_real_account_makes_make_run_leave_the_data_alone(app, clock, make_user):
    run_make_run_seed(app)
    make_user("student", email="real.person@example.com")
    with app.app_context():
        sessions_before = db.session.scalar(select(func.count()).select_from(Session))
    clock.advance(timedelta(days=2))

    output = run_make_run_seed(app)

    assert "not demo accounts" in output and "left as it is" in output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == len(DEMO_ACCOUNTS) + 1
        assert db.session.scalar(select(func.count()).select_from(Session)) == sessions_before
    assert what_can_be_done(app)["start"] == 0


def test_make_run_on_a_real_instance_without_demo_loads_nothing(app, make_user):
    make_user("coach", email="coach@example.com")
    output = run_make_run_seed(app)
    assert "left as it is" in output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0


@pytest.mark.parametrize("policy", [
    {"escrow_release_delay": 1},
    {"payment_hold": 1},
    {"reminders": "90,5", "late_cancellation_window": 60, "reschedule_notice_student": 4320,
     "reschedule_notice_coach": 5760, "start_window_before": 1, "start_window_after": 2,
     "mark_missed_after_start": 1, "auto_close_after_end": 1},
])
def test_seed_works_under_any_policy(make_app, policy):
    app = make_app(POLICY=policy)
    result = app.test_cli_runner().invoke(args=["skileez", "seed"])
    assert result.exit_code == 0, result.output
    assert "Demo data loaded." in result.output
    with app.app_context():
        assert check_invariants() == []
        states = set(db.session.scalars(select(Session.status)))
        assert {"pending_payment", "scheduled", "reschedule_requested", "in_progress",
                "completed", "cancelled", "missed"} <= states
    found = what_can_be_done(app)
    assert found["start"] and found["pay"] and found["cancel"] and found["join"], found


def test_a_seed_that_fails_midway_leaves_nothing_and_can_be_run_again(app, monkeypatch):
    from skileez.payments import operations

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(operations, "open_dispute", broken)
    failed = app.test_cli_runner().invoke(args=["skileez", "seed"])
    assert failed.exit_code != 0
    with app.app_context():
        db.session.remove()
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0
    monkeypatch.undo()

    again = app.test_cli_runner().invoke(args=["skileez", "seed"])

    assert again.exit_code == 0, again.output
    assert "Demo data loaded." in again.output


def overlapping_coach_sessions(app) -> list[tuple[int, int]]:
    """Pairs of live sessions sharing a coach's time: what PostgreSQL's exclusion
    constraint refuses, checked in Python so SQLite (which has none) is held to it too."""
    with app.app_context():
        live = db.session.scalars(select(Session).where(
            Session.status.not_in(("cancelled", "expired", "missed")))
            .order_by(Session.coach_id, Session.starts_at)).all()
    clashes, busiest = [], {}  # coach → the session whose block ends last so far
    for session in live:
        before = busiest.get(session.coach_id)
        if before is not None and session.starts_at < before.coach_block_end:
            clashes.append((before.id, session.id))
        if before is None or session.coach_block_end > before.coach_block_end:
            busiest[session.coach_id] = session
    return clashes


@pytest.mark.parametrize("policy", [{}, {"reschedule_notice_student": 4320}])
@pytest.mark.parametrize("now", [
    # Monday early, Tuesday mid-morning (Berlin hours), Wednesday evening, Friday noon,
    # Saturday night, Sunday: the demo's fixed offsets meet the coaches' hours differently.
    "2026-12-07T05:10", "2026-12-03T09:40", "2026-12-09T19:25", "2026-12-11T12:00",
    "2026-12-12T23:50", "2026-12-13T08:05",
])
def test_the_demo_never_double_books_a_coach_whatever_the_date(make_app, clock, now, policy):
    """Found when a seed on a Thursday at 09:40 placed a reschedulable session on top of
    a booked one five days later (PostgreSQL refused; SQLite loaded both)."""
    from datetime import UTC, datetime

    clock.freeze(datetime.fromisoformat(now).replace(tzinfo=UTC))
    app = make_app(POLICY=policy)
    result = app.test_cli_runner().invoke(args=["skileez", "seed"])
    assert result.exit_code == 0, result.output
    assert overlapping_coach_sessions(app) == []
