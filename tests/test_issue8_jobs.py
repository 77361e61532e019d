"""Issue 8, items 19 and 20: every job is claimed in the database before it is queued, so
sweeps never pile duplicates onto a backlog, and each job re-checks its row before it
calls out (SMTP, Stripe): one provider call per due attempt, one transfer per payout,
and a concurrent request with the same idempotency key never marks a payout failed."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, select

from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import OutboxEmail
from skileez.payments import gateway as gateway_module
from skileez.payments import ledger
from skileez.payments.attempts import RUNNING_CLAIM
from skileez.payments.gateway import GatewayError
from skileez.payments.models import LedgerTransaction, Payout, Refund
from skileez.payments.operations import execute_refund, refund
from skileez.sessions.models import Session
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import localstripe  # noqa: F401
from tests.test_jobs import run_worker
from tests.test_payments import SLOT, _paid_and_completed

EMAILS, REFUNDS = 500, 20


def queue_lengths(redis_url):
    """Jobs waiting for payouts; for mail, the emails the waiting jobs will send (the
    sweep hands a batch of emails to one job), each at most once."""
    connection = Redis.from_url(redis_url)
    emails = [outbox_id for job in Queue("mail", connection=connection).jobs
              for outbox_id in (job.args[0] if isinstance(job.args[0], list)
                                else [job.args[0]])]
    assert len(emails) == len(set(emails)), "an email is queued twice"
    return {"mail": len(emails), "payouts": Queue("payouts", connection=connection).count}


def unsent(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(OutboxEmail).where(
            OutboxEmail.status.in_(("pending", "sending"))))


@pytest.mark.redis
def test_a_backlog_is_queued_once_and_each_refund_calls_the_provider_once_per_attempt(
        make_app, redis_url, coaching, clock, paid_session, monkeypatch):
    app = make_app(REDIS_URL=redis_url)
    assert app.config["JOBS_BACKEND"] == "rq"
    session = paid_session(coaching["student"], coaching["contract"], SLOT)
    calls, fail_once = [], set()

    def counted_refund(self, *, intent_id, amount_minor, idempotency_key, metadata):
        calls.append(idempotency_key)
        if idempotency_key in fail_once:
            fail_once.discard(idempotency_key)
            raise GatewayError("Stripe had a moment", retryable=True)
        return f"re_test_{idempotency_key}"

    monkeypatch.setattr(gateway_module.TestGateway, "refund", counted_refund)
    with app.app_context():
        user_id = coaching["student"].id
        now = clock.now()
        db.session.add_all(OutboxEmail(recipient_id=user_id, to_address="sam@example.com",
                                       subject=f"Backlog {n}", text_body="-", html_body="-",
                                       kind="test", status="pending", next_attempt_at=now,
                                       created_at=now) for n in range(EMAILS))
        payment = db.session.get(Session, session.id).payment
        for _ in range(REFUNDS):
            refund(payment, 100, reason="goodwill")
        db.session.commit()
        refund_ids = db.session.scalars(select(Refund.id).order_by(Refund.id)).all()
    fail_once.update(f"refund-{rid}" for rid in refund_ids[:5])

    backlog = unsent(app)
    assert backlog > EMAILS
    for _ in range(12):  # a minute of sweeps every 5 s, no worker running
        with app.app_context():
            sweep()
        lengths = queue_lengths(redis_url)
        # Never more jobs than emails waiting (the sweep also adds two reminders).
        assert lengths["mail"] <= unsent(app) and lengths["payouts"] <= REFUNDS
        clock.advance(timedelta(seconds=5))
    assert queue_lengths(redis_url) == {"mail": unsent(app), "payouts": REFUNDS}

    # Duplicates from before the fix (or from anywhere) change nothing: each job re-checks.
    payouts_queue = Queue("payouts", connection=Redis.from_url(redis_url))
    for rid in refund_ids:
        payouts_queue.enqueue(execute_refund, rid)
    run_worker(app, redis_url)
    assert unsent(app) == 0
    assert len(calls) == REFUNDS  # 15 succeeded, 5 failed once: one call each
    with app.app_context():
        statuses = db.session.scalars(select(Refund.status).order_by(Refund.id)).all()
    assert statuses == ["failed"] * 5 + ["succeeded"] * 15

    # Until the backoff is over, sweeps queue nothing and nothing calls Stripe.
    for _ in range(6):
        with app.app_context():
            sweep()
        clock.advance(timedelta(seconds=30))
    assert queue_lengths(redis_url)["payouts"] == 0
    clock.advance(timedelta(minutes=3))
    for _ in range(4):
        with app.app_context():
            sweep()
        clock.advance(timedelta(seconds=5))
    assert queue_lengths(redis_url)["payouts"] == 5
    run_worker(app, redis_url)
    assert len(calls) == REFUNDS + 5
    with app.app_context():
        assert set(db.session.scalars(select(Refund.status))) == {"succeeded"}
        assert ledger.check_invariants() == []


@pytest.mark.redis
def test_a_job_lost_by_redis_is_queued_again_once_its_claim_expires(make_app, redis_url,
                                                                     coaching, clock,
                                                                     paid_session):
    app = make_app(REDIS_URL=redis_url)
    # Three days ahead: no reminder is due during the test.
    paid_session(coaching["student"], coaching["contract"], SLOT + timedelta(days=2))
    pending = unsent(app)
    assert queue_lengths(redis_url)["mail"] == pending
    Redis.from_url(redis_url).flushdb()  # Redis lost every job
    with app.app_context():
        sweep()
    assert queue_lengths(redis_url)["mail"] == 0  # still claimed: no duplicate
    clock.advance(timedelta(minutes=15))
    for _ in range(3):
        with app.app_context():
            sweep()
    assert queue_lengths(redis_url)["mail"] == pending
    run_worker(app, redis_url)
    assert unsent(app) == 0


@pytest.mark.stripe
@pytest.mark.real_commits  # threads see only what is committed
def test_a_concurrent_transfer_with_the_same_key_never_marks_the_payout_failed(
        make_app, fake_connect, coaching, book_session, clock):  # noqa: F811
    """A worker stuck in a slow transfer loses its claim; the next attempt meets Stripe's
    409 idempotency_key_in_use. That is "ask again later"; the slow one is recorded, once."""
    app = make_app(**fake_connect.app_config())
    _paid_and_completed(app, coaching, book_session, clock, connect=fake_connect)
    clock.advance(timedelta(hours=24))
    gate = fake_connect.hold_transfers()

    def first_worker():
        with app.app_context():
            sweep()  # releases the escrow; its pay_out job waits at Stripe

    slow = threading.Thread(target=first_worker)
    slow.start()
    try:
        assert fake_connect.transfer_started.wait(10)
        clock.advance(RUNNING_CLAIM + timedelta(seconds=1))  # the stuck worker's claim ran out
        with app.app_context():
            sweep()  # takes over: same key, still in flight at Stripe
            payout = db.session.scalar(select(Payout))
            assert payout.status == "pending" and payout.attempts == 2
            # Stripe said "in progress": not a failure, nothing recorded as an error.
            assert payout.last_error is None
            assert payout.next_attempt_at > clock.now()
    finally:
        gate.set()
        slow.join(10)
    requests = fake_connect.requests_to("POST", "/v1/transfers")
    assert [r.status for r in requests] == [409, 200]
    assert {r.header("Idempotency-Key") for r in requests} == {f"payout-{payout.id}"}
    clock.advance(timedelta(minutes=2))
    for _ in range(3):
        with app.app_context():
            sweep()
    with app.app_context():
        payout = db.session.scalar(select(Payout))
        assert payout.status == "paid" and payout.last_error is None
        states = db.session.scalars(select(AuditEvent.to_state).where(
            AuditEvent.object_type == "payouts", AuditEvent.object_id == payout.id)).all()
        assert "failed" not in states
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "payout")) == 1
        assert ledger.check_invariants() == []
    assert len(fake_connect.transfers) == 1
