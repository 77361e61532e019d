"""Calls to the payment provider, and the commits around them.

A call to Stripe can take seconds and cannot be rolled back, so it never runs
inside one of our units of work. This module is the one place where a request
or a job is split around such a call; nothing else in payments commits.

* ``provider_call()`` is for a request: the pay page creating its
  PaymentIntent, a card being confirmed, a coach's payout account being set up
  or checked. Commit what the request wrote, ask, commit what the answer changed.
* ``ProviderAttempt`` is for a job that moves money for one of our rows (a
  payout, a refund): re-check the row, claim it, commit, ask, then record the
  success, the failure with its backoff, or "still in flight", each in a
  transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import or_, update

from skileez import clock
from skileez.core.errors import Conflict
from skileez.core.transitions import transition
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.payments.gateway import IDEMPOTENCY_KEY_IN_USE, GatewayError

# A job talks to the provider for at most this long (timeouts and library retries
# included); a worker killed mid-call loses its claim after it and the sweep takes over.
RUNNING_CLAIM = timedelta(minutes=5)
# Stripe still executing our earlier request with the same key: ask again this soon.
IN_FLIGHT_RETRY = timedelta(minutes=1)


@contextmanager
def provider_call(*, keep: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Ask the provider between two commits, from a request.

    Before the call, whatever the request has written is committed: the
    provider is never waited on while we hold a write lock (on SQLite the whole
    database would queue behind Stripe), and a failed call cannot undo it. The
    block asks first and writes after, so its own writes lock nothing until the
    answer is in.

    After the call, what the answer changed is committed before the response
    goes out: the next request (confirming a card against the PaymentIntent just
    created) and Stripe's webhook find the payment by what was stored. An error
    listed in ``keep`` is an answer too — a declined card is recorded so that the
    pay page shows why — so what the block recorded is committed, then the error
    is re-raised for the view to answer. Any other error rolls back the block.
    """
    db.session.commit()
    answer: Exception | None = None
    with transaction():
        try:
            yield
        except keep as error:
            answer = error
    if answer is not None:
        raise answer


def backoff(attempts: int) -> timedelta:
    """5, 10, 20 … minutes between attempts, at most 12 hours."""
    return min(timedelta(minutes=5 * 2 ** max(attempts - 1, 0)), timedelta(hours=12))


class ProviderAttempt:
    """A job that asks the provider to move money for one row, exactly once.

    Each kind (a payout's transfer, a refund) says which rows are finished, what
    it asks and what success records; ``run`` is the skeleton both share. The
    provider request's idempotency key is our row, so a retry after a crash gets
    the first answer back instead of moving money twice, and success is a
    compare-and-set from the status the claim saw, so only one attempt ever
    records it (and posts to the ledger).

    The commits in ``run`` are the job's transaction boundaries:

    1. the running claim and the attempt count, before the call — a duplicate
       job sees the claim and asks nobody; a worker that dies mid-call still
       counted its attempt, and its claim runs out after ``RUNNING_CLAIM``;
    2. the provider's refusal with the next attempt's time (or, for a request
       Stripe is still executing, "look again shortly"), so admins see it and
       the sweep knows when to retry;
    3. success.

    An error that is not the provider's answer releases the claim, so the next
    sweep may retry at once, and is re-raised so RQ records the failed job.
    """

    model: ClassVar[type]
    #: Statuses after which there is nothing left to ask for.
    finished: ClassVar[tuple[str, ...]]
    #: The audit reason recorded when the provider refuses.
    failure_reason: ClassVar[str]

    def due(self, row: Any, now: datetime) -> bool:
        return row.next_attempt_at is None or row.next_attempt_at <= now

    def blocked(self, row: Any) -> str | None:
        """Why this row cannot be sent now (recorded on it), or None to go ahead."""
        return None

    def ask(self, row: Any) -> str:
        """Make the provider request; return the provider's id for what it did."""
        raise NotImplementedError

    def record(self, row: Any, provider_id: str, expected: str) -> str:
        """Record success with ``transition(..., expected=expected)``; return the outcome."""
        raise NotImplementedError

    def run(self, row_id: int) -> str:
        row = db.session.get(self.model, row_id)
        if row is None or row.status in self.finished:
            return "nothing to do"
        now = clock.now()
        if row.claimed_until is not None and row.claimed_until > now:
            return "claimed elsewhere"
        if not self.due(row, now):
            return "not due yet"
        outcome = self.blocked(row)
        if outcome is not None:
            return outcome
        expected, attempts = row.status, row.attempts + 1
        if not _take_running_claim(self.model, row, now):
            db.session.rollback()  # another job counted this attempt first: keep nothing
            return "claimed elsewhere"
        db.session.commit()  # boundary 1: the claim, before anyone is asked
        try:
            return self._ask_and_record(row_id, expected, attempts)
        except BaseException:
            _release_running_claim(self.model, row_id)
            raise

    def _ask_and_record(self, row_id: int, expected: str, attempts: int) -> str:
        try:
            provider_id = self.ask(db.session.get(self.model, row_id))
        except GatewayError as error:
            db.session.rollback()  # nothing was written since the claim; read the row afresh
            if error.code == IDEMPOTENCY_KEY_IN_USE:
                _retry_soon(self.model, row_id)
                return "in flight at Stripe: retrying later"
            with transaction():  # boundary 2: the refusal and when to try again
                row = db.session.get(self.model, row_id)
                transition(row, "failed", expected=row.status, reason=self.failure_reason,
                           values={"last_error": error.message[:1000], "claimed_until": None,
                                   "next_attempt_at": clock.now() + backoff(attempts)})
            if error.retryable:
                raise
            return "failed"
        try:
            with transaction():  # boundary 3: success, once
                return self.record(db.session.get(self.model, row_id), provider_id, expected)
        except Conflict:
            return "recorded by another attempt"


def _take_running_claim(model, row, now: datetime) -> bool:
    """One job at a time per row calls out: the first to count its attempt wins."""
    result = db.session.execute(
        update(model).where(model.id == row.id, model.status == row.status,
                            model.attempts == row.attempts,
                            or_(model.claimed_until.is_(None), model.claimed_until <= now))
        .values(attempts=row.attempts + 1, claimed_until=now + RUNNING_CLAIM,
                queued_until=None)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def _release_running_claim(model, row_id: int) -> None:
    """The job failed unexpectedly (not a provider answer): the next sweep may retry at once."""
    db.session.rollback()
    with transaction():
        db.session.execute(update(model).where(model.id == row_id)
                           .values(claimed_until=None)
                           .execution_options(synchronize_session=False))


def _retry_soon(model, row_id: int) -> None:
    """No answer yet, no failure either: leave the state alone and look again shortly."""
    with transaction():
        db.session.execute(update(model).where(model.id == row_id)
                           .values(claimed_until=None,
                                   next_attempt_at=clock.now() + IN_FLIGHT_RETRY)
                           .execution_options(synchronize_session=False))
