"""Issue 10, target 3: the sweep costs what is due, not what the tables hold.

One batch of due rows costs the same statements whether it holds two rows or six (one
compare-and-set per batch, bulk inserts of the audit events, refunds, ledger postings,
notifications and emails), a sweep with nothing due costs a constant few, and the batch
form of the transition helper still lets only one of two sweeps act on a row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import event, func, select, text

from skileez.contracts.models import Proposal
from skileez.core.models import AuditEvent
from skileez.core.transitions import transition_many
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.compose import UnwritableEmail, render_email
from skileez.notifications.mail import deliver_batch
from skileez.notifications.models import Notification, OutboxEmail
from skileez.notifications.operations import notify_many
from skileez.payments.models import LedgerTransaction, Payment, Refund
from skileez.sessions.deadlines import auto_missed, expire_payment_holds
from skileez.sessions.models import Session

WEDNESDAY = datetime(2026, 3, 11, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, the coach's first hour


@contextmanager
def counted_statements(app) -> list[str]:
    statements: list[str] = []

    def count(_connection, _cursor, statement, *_args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def statements_of(app, handler: Callable[[], int], expected_rows: int) -> int:
    """Statements one batch of ``handler`` issues (commit included), checking it acted on
    ``expected_rows``."""
    with counted_statements(app) as statements, app.app_context():
        assert handler() == expected_rows
        db.session.commit()
    return len(statements)


def hours(first: datetime, count: int) -> list[datetime]:
    """``count`` one-hour sessions two hours apart inside the coach's hours, from ``first``
    (a weekday morning) on, four a day."""
    return [first + timedelta(days=n // 4, hours=2 * (n % 4)) for n in range(count)]


def test_one_batch_of_expired_holds_costs_the_same_statements_for_two_rows_or_six(
        app, clock, coaching, make_contract, book_session):
    contract = make_contract(coaching["student"], coaching["offering"], sessions=20)
    for start in hours(WEDNESDAY, 2):
        book_session(coaching["student"], contract, start)
    clock.advance(timedelta(minutes=16))
    two = statements_of(app, expire_payment_holds, 2)
    for start in hours(WEDNESDAY + timedelta(days=1), 6):
        book_session(coaching["student"], contract, start)
    clock.advance(timedelta(minutes=16))
    six = statements_of(app, expire_payment_holds, 6)
    assert two == six == 11
    with app.app_context():
        expired = db.session.scalars(select(Session.id).where(Session.status == "expired"))
        expired = list(expired)
        audits = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.object_type == "sessions", AuditEvent.to_state == "expired"))
        failed = db.session.scalar(select(func.count()).select_from(Payment).where(
            Payment.status == "failed", Payment.session_id.in_(expired)))
        told = db.session.scalars(select(Notification.payload).where(
            Notification.kind == "booking_expired")).all()
        emails = db.session.scalar(select(func.count()).select_from(OutboxEmail).where(
            OutboxEmail.kind == "booking_expired"))
    assert len(expired) == audits == failed == 8
    assert sorted(payload["session_id"] for payload in told) == sorted(expired)
    assert emails == 8


def test_one_batch_of_unattended_sessions_costs_the_same_statements_for_two_rows_or_six(
        app, clock, coaching, make_contract, paid_session):
    contract = make_contract(coaching["student"], coaching["offering"], sessions=20)
    first = hours(WEDNESDAY, 2)
    for start in first:
        paid_session(coaching["student"], contract, start)
    clock.freeze(first[-1] + timedelta(hours=1, minutes=31))
    two = statements_of(app, auto_missed, 2)
    later = hours(WEDNESDAY + timedelta(days=1), 6)
    for start in later:
        paid_session(coaching["student"], contract, start)
    clock.freeze(later[-1] + timedelta(hours=1, minutes=31))
    six = statements_of(app, auto_missed, 6)
    assert two == six == 19
    with app.app_context():
        missed = db.session.scalars(select(Session).where(Session.status == "missed")).all()
        payments = db.session.scalars(select(Payment).where(
            Payment.session_id.in_([s.id for s in missed]))).all()
        refunds = db.session.scalars(select(Refund)).all()
        postings = db.session.scalar(select(func.count()).select_from(LedgerTransaction)
                                     .where(LedgerTransaction.kind == "refund"))
        kinds = dict(db.session.execute(select(Notification.kind, func.count())
                                        .group_by(Notification.kind)).all())
    assert len(missed) == 8 and {s.missed_by for s in missed} == {"unattended"}
    # The student gets all the money back, once: one refund and one posting per payment.
    assert {p.status for p in payments} == {"refunded"}
    assert all(p.refunded_minor == p.amount_minor for p in payments)
    assert sorted(r.payment_id for r in refunds) == sorted(p.id for p in payments)
    assert postings == 8
    assert kinds["session_missed"] == 16 and kinds["refund_issued"] == 8


def test_a_sweep_with_nothing_due_costs_the_same_few_statements_however_much_is_stored(
        app, clock, coaching, make_contract, paid_session):
    with counted_statements(app) as empty, app.app_context():
        sweep()
    contract = make_contract(coaching["student"], coaching["offering"], sessions=20)
    for start in hours(WEDNESDAY + timedelta(days=7), 6):  # next week: nothing due yet
        paid_session(coaching["student"], contract, start)
    with counted_statements(app) as stored, app.app_context():
        assert not any(sweep().values())
    # One read per handler that looks for due rows, each in its own transaction: a
    # savepoint and its release here, where the test's one transaction stands in for the commits.
    assert len(empty) == len(stored) == 39  # 13 handlers: repay_coaches is the 13th


def test_a_batch_of_local_emails_is_written_and_sent_in_the_same_statements_for_two_or_six(
        app, clock, make_user):
    people = [make_user(name=f"Person {n}") for n in range(8)]

    def write(who: list) -> list[int]:
        with app.app_context():
            notify_many("welcome", [(db.session.merge(person), {"role": "student"})
                                    for person in who])
            db.session.commit()
            return db.session.scalars(select(OutboxEmail.id).where(
                OutboxEmail.recipient_id.in_([person.id for person in who]))).all()

    def send(ids: list[int]) -> int:
        with counted_statements(app) as statements, app.app_context():
            assert deliver_batch(ids) == len(ids)
        return len(statements)

    two, six = write(people[:2]), write(people[2:])
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxEmail).where(
            OutboxEmail.text_body.is_(None))) == 8  # the batch left them to be written
    # Written: the emails and their notifications with recipients read, the bodies
    # updated (one executemany), the commit; sent: two updates, two audit inserts, the
    # commit; here each commit is a savepoint's begin and release (the test's transaction).
    assert send(two) == send(six) == 11
    with app.app_context():
        sent = db.session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
        attempts = db.session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.object_type == "outbox_emails"))
        assert deliver_batch(two + six) == 0  # run twice: nothing is sent again
    assert [(email.status, email.transport, email.attempts) for email in sent] == [
        ("sent", "local", 1)] * 8
    assert [email.subject for email in sent] == [
        f"Welcome to Skileez, Person {n}" for n in range(8)]
    assert all("Find a coach" in email.text_body and "Find a coach" in email.html_body
               for email in sent)
    assert len({email.message_id for email in sent}) == 8
    assert attempts == 16  # pending → sending → sent, each audited


def test_an_email_written_at_delivery_says_what_it_would_have_said_when_recorded(
        app, clock, coaching, make_contract, paid_session):
    """The sweep's emails, written by the mail worker, are the ones ``notify`` writes at
    once: same subject, same text, same HTML, for every kind the sweep sends."""
    contract = make_contract(coaching["student"], coaching["offering"], sessions=20)
    for start in hours(WEDNESDAY, 2):
        paid_session(coaching["student"], contract, start)
    clock.freeze(hours(WEDNESDAY, 2)[-1] + timedelta(hours=1, minutes=31))
    with app.app_context():
        assert sweep(only=("auto_missed",)) == {"auto_missed": 2}
        rows = db.session.scalars(select(OutboxEmail).where(OutboxEmail.text_body.is_(None))
                                  .order_by(OutboxEmail.id)).all()
        assert sorted(row.kind for row in rows) == [
            "refund_issued", "refund_issued", *["session_missed"] * 4]
        assert all(row.subject is None and row.html_body is None for row in rows)
        expected = {row.id: render_email(row.kind, row.recipient,
                                         db.session.get(Notification, row.notification_id)
                                         .payload) for row in rows}
        assert sweep(only=("send_due_mail",)) == {"send_due_mail": len(rows)}
        db.session.expire_all()
        sent = db.session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_(expected))
                                  .order_by(OutboxEmail.id)).all()
        assert {row.id: (row.subject, row.text_body, row.html_body) for row in sent} == expected
        assert {row.status for row in sent} == {"sent"}
        assert any("refund" in subject.lower() for subject, _text, _html in expected.values())


def test_an_email_that_can_no_longer_be_written_fails_alone_and_says_why(
        app, clock, make_user):
    """Its notification deleted before it was sent: that email ends failed with the reason
    an admin can read; the others of its batch are written and sent."""
    people = [make_user(name=f"Person {n}") for n in range(3)]
    with app.app_context():
        notify_many("welcome", [(db.session.merge(person), {"role": "coach"})
                                for person in people])
        db.session.commit()
        ids = db.session.scalars(select(OutboxEmail.id).order_by(OutboxEmail.id)).all()
        orphan = db.session.get(OutboxEmail, ids[1])
        db.session.delete(db.session.get(Notification, orphan.notification_id))
        db.session.commit()
        for _attempt in range(app.config["MAIL_MAX_ATTEMPTS"]):
            with suppress(UnwritableEmail):
                deliver_batch(ids)
            db.session.execute(OutboxEmail.__table__.update().values(
                next_attempt_at=clock.now()))  # every retry due now
            db.session.commit()
        db.session.expire_all()
        rows = db.session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    assert [row.status for row in rows] == ["sent", "failed", "sent"]
    assert "no notification" in rows[1].last_error
    assert rows[0].subject == "Welcome to Skileez, Person 0"


@pytest.mark.redis
def test_with_rq_a_batch_of_emails_is_one_mail_job_after_commit(make_app, redis_url, clock,
                                                                 coaching, make_contract,
                                                                 book_session):
    app = make_app(REDIS_URL=redis_url)
    contract = make_contract(coaching["student"], coaching["offering"], sessions=20)
    for start in hours(WEDNESDAY, 3):
        book_session(coaching["student"], contract, start)
    mail = Queue("mail", connection=Redis.from_url(redis_url))
    mail.empty()
    clock.advance(timedelta(minutes=16))
    with app.app_context():
        assert sweep(only=("expire_payment_holds",)) == {"expire_payment_holds": 3}
        emails = db.session.scalars(select(OutboxEmail.id).where(
            OutboxEmail.kind == "booking_expired").order_by(OutboxEmail.id)).all()
    assert [job.args for job in mail.jobs] == [(list(emails),)]


@pytest.mark.real_commits  # two connections see only what is committed
def test_two_sweeps_taking_overlapping_batches_never_act_on_a_row_twice(
        make_app, make_user, make_offering, make_proposal, clock):
    """The batch compare-and-set on PostgreSQL: the second UPDATE waits on the rows the
    first holds, then finds them moved and returns only the rows nobody took."""
    app = make_app()
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("needs PostgreSQL: row locks between two connections")
    offering = make_offering(make_user("coach"))
    ids = [make_proposal(make_user(), offering).id for _ in range(4)]
    clock.advance(timedelta(days=8))
    first_holds_its_rows, won = threading.Event(), {}

    def first_sweep():
        with app.app_context():
            won["first"] = transition_many(Proposal, ids[:3], "expired", expected="pending",
                                           reason="proposal expired")
            first_holds_its_rows.set()
            _wait_until_someone_waits_for_a_lock()
            db.session.commit()

    def second_sweep():
        first_holds_its_rows.wait(10)
        with app.app_context():
            won["second"] = transition_many(Proposal, ids[1:], "expired", expected="pending",
                                            reason="proposal expired")
            db.session.commit()

    threads = [threading.Thread(target=first_sweep), threading.Thread(target=second_sweep)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert won == {"first": ids[:3], "second": ids[3:]}
    with app.app_context():
        audited = db.session.execute(select(AuditEvent.object_id, func.count()).where(
            AuditEvent.object_type == "proposals", AuditEvent.to_state == "expired")
            .group_by(AuditEvent.object_id)).all()
    assert sorted(audited) == [(proposal_id, 1) for proposal_id in ids]


def _wait_until_someone_waits_for_a_lock() -> None:
    """Polls the server (not the clock): returns once another backend waits on a lock.

    Autocommit, so each poll reads pg_stat_activity afresh (inside one transaction it
    answers from the snapshot its first read took).
    """
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
        for _ in range(1000):
            if watcher.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE wait_event_type = 'Lock'")):
                return
            time.sleep(0.01)
    raise AssertionError("the second sweep never waited for the first one's rows")
