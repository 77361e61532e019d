"""Sending outbox emails: over SMTP when configured, into the local mailbox otherwise.

Each send is claimed with a compare-and-set (pending → sending, with a claim
that expires), so the job queued after commit, its RQ retries and a sweep that
finds the same row can never both send it. RQ's Retry handles a short SMTP
hiccup; the row's own ``attempts`` and ``next_attempt_at`` are the durable
record, so even if Redis loses every job the sweep keeps trying until
MAIL_MAX_ATTEMPTS and then marks the email failed for an admin to see.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from flask import current_app
from rq import Retry, get_current_job
from sqlalchemy import String, cast, literal, or_, select

from skileez import clock
from skileez.core.db import among
from skileez.core.errors import Conflict
from skileez.core.forms import single_line
from skileez.core.queue import (
    QUEUE_CLAIM,
    enqueue_after_commit,
    enqueue_claimed,
    job,
)
from skileez.core.transitions import transition, transition_many
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.notifications.compose import write_unwritten
from skileez.notifications.models import RETRY_REFUSED, OutboxEmail

CLAIM_DURATION = timedelta(minutes=5)

log = logging.getLogger(__name__)


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 … minutes between attempts, at most 6 hours."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), timedelta(hours=6))


def rq_retry() -> Retry | None:
    """RQ retries for a mail job, from MAIL_RETRY_INTERVALS (seconds)."""
    intervals = list(current_app.config["MAIL_RETRY_INTERVALS"])
    return Retry(max=len(intervals), interval=intervals) if intervals else None


def queue_delivery(outbox_id: int) -> None:
    """Send this email once the current transaction commits (claimed: queued once)."""
    enqueue_after_commit(deliver, outbox_id, queue="mail", retry=rq_retry(),
                         claim=(OutboxEmail, outbox_id))


def queue_batch_delivery(outbox_ids: list[int], *, claimed_until) -> None:
    """Send a batch of new emails (already claimed as queued) in one job after commit."""
    enqueue_claimed(deliver_batch, OutboxEmail, outbox_ids, until=claimed_until,
                    queue="mail", batch=True, retry=rq_retry())


def _rq_retry_interval() -> int | None:
    """Seconds until RQ runs this job again if it fails now; None if it will not."""
    current = get_current_job()
    if current is None or not current.retries_left:
        return None
    return current.get_retry_interval()


@job
def deliver(outbox_id: int) -> str:
    """Send one outbox email if it is still due; safe to run any number of times.

    SMTP sits between two commits, the job's documented transaction boundaries:
    the claim is committed before the send, so a second job for the same row
    finds it taken instead of sending it again; a failure is committed before
    the error is re-raised for RQ, so the attempt and its backoff survive the
    job's rollback. The "sent" mark is committed as soon as the send returns.
    """
    email = db.session.get(OutboxEmail, outbox_id)
    if email is None or email.status in ("sent", "failed"):
        return "nothing to do"
    if email.status == "pending" and email.next_attempt_at > clock.now():
        # A duplicate or early job: the row's backoff decides, the sweep queues it when due.
        return "not due yet"
    try:
        with transaction():
            _claim(email)
    except Conflict:
        return "claimed elsewhere"  # another job won the compare-and-set; nothing written
    try:
        with transaction():
            write_unwritten([email])
        transport, message_id = _send(email)
    except Exception as exc:
        with transaction():
            _record_failure(email, exc)
        raise
    # Committed here, not left to the job: in a batch a later email's failure re-raises
    # and rolls the job back, and an email sent must never look unsent (it would be sent
    # again once its claim ran out).
    with transaction():
        transition(email, "sent", values={"sent_at": clock.now(), "transport": transport,
                                          "message_id": message_id, "claimed_until": None,
                                          "last_error": None})
    return transport


@job
def deliver_batch(outbox_ids: list[int]) -> int:
    """Send a batch of outbox emails that are due; safe to run any number of times.

    Into the local mailbox (no SMTP server) the whole batch is two compare-and-set
    updates, pending → sending → sent, with their audit events: nothing leaves the
    database, so there is no outside call to fence with a commit. Over SMTP, and
    for any row the batch did not win (a 'sending' row whose worker died), each
    email goes through ``deliver`` with its own claim and commits. Returns how
    many this job sent.
    """
    outbox_ids = sorted(set(outbox_ids))
    sent: list[int] = []
    if _write_batch(outbox_ids) and not current_app.config["MAIL_SERVER"]:
        sent = _deliver_locally(outbox_ids)
    first_failure: Exception | None = None
    for outbox_id in sorted(set(outbox_ids) - set(sent)):
        try:
            if deliver.__wrapped_job__(outbox_id) in ("local", "smtp"):  # type: ignore[attr-defined]
                sent.append(outbox_id)
        except Exception as exc:  # recorded on its row; the rest of the batch still goes
            first_failure = first_failure or exc
    if first_failure is not None:
        raise first_failure
    return len(sent)


def _write_batch(outbox_ids: list[int]) -> bool:
    """Write the batch's unwritten emails together (one render per kind, what they quote
    loaded once). False if that failed: each email is then written on its own in
    ``deliver``, where a failure is recorded on that email's row alone."""
    try:
        with transaction():
            write_unwritten(db.session.scalars(select(OutboxEmail).where(
                among(OutboxEmail.id, outbox_ids), OutboxEmail.text_body.is_(None),
                OutboxEmail.status.in_(("pending", "sending")))).all())
    except Exception:
        log.warning("Writing a batch of %d emails failed; writing them one by one",
                    len(outbox_ids), exc_info=True)
        return False
    return True


def _deliver_locally(outbox_ids: list[int]) -> list[int]:
    now = clock.now()
    taken = transition_many(
        OutboxEmail, outbox_ids, "sending", expected="pending",
        # Never an email still unwritten (its batch's writing failed after all).
        where=(OutboxEmail.next_attempt_at <= now, OutboxEmail.text_body.is_not(None)),
        values={"claimed_until": now + CLAIM_DURATION, "queued_until": None,
                "attempts": OutboxEmail.attempts + 1},
        reason="attempt in a batch")
    # The Message-ID make_msgid would give, built in SQL so the batch stays one statement.
    message_id = (literal(f"<{int(now.timestamp())}.outbox-") + cast(OutboxEmail.id, String)
                  + literal("@skileez>"))
    return transition_many(
        OutboxEmail, taken, "sent", expected="sending",
        values={"sent_at": now, "transport": "local", "message_id": message_id,
                "claimed_until": None, "last_error": None},
        reason="kept in the local mailbox")


def _claim(email: OutboxEmail) -> None:
    """Take the row for one attempt (pending → sending, with a claim that expires)."""
    now = clock.now()
    if email.status == "pending":
        transition(email, "sending",
                   values={"claimed_until": now + CLAIM_DURATION, "queued_until": None,
                           "attempts": email.attempts + 1},
                   reason=f"attempt {email.attempts + 1}")
    else:  # 'sending' whose worker died: take over only once its claim expired
        transition(email, "sending", expected="sending",
                   where=(or_(OutboxEmail.claimed_until.is_(None),
                              OutboxEmail.claimed_until < now),),
                   values={"claimed_until": now + CLAIM_DURATION, "queued_until": None,
                           "attempts": email.attempts + 1},
                   reason=f"attempt {email.attempts + 1} (previous claim expired)")


def _record_failure(email: OutboxEmail, exc: Exception) -> None:
    """Back to pending with the next attempt's time, or failed for good after the last."""
    db.session.refresh(email)  # as it is now, not as it was before the send
    give_up = email.attempts >= current_app.config["MAIL_MAX_ATTEMPTS"]
    now = clock.now()
    # RQ will run this job again after its retry interval: the row waits for that
    # job (claimed as queued) instead of the sweep queueing another; otherwise the
    # row's own backoff decides when the sweep tries next.
    interval = None if give_up else _rq_retry_interval()
    if interval is None:
        retry_at, queued = now + backoff(email.attempts), None
    else:
        retry_at = now + timedelta(seconds=interval)
        queued = retry_at + QUEUE_CLAIM
    transition(email, "failed" if give_up else "pending",
               values={"last_error": f"{type(exc).__name__}: {exc}"[:2000],
                       "claimed_until": None, "queued_until": queued,
                       "next_attempt_at": retry_at},
               reason="gave up after repeated failures" if give_up else "send failed")


def build_message(email: OutboxEmail) -> EmailMessage:
    """The email as sent. Header values are made one line here, whatever the row holds.

    A CR/LF in a subject (a name saved before names were cleaned, say) makes
    the email library refuse the header, and the email would fail on every
    retry; here it becomes a space, and other control characters are dropped.
    """
    message = EmailMessage()
    message["Subject"] = single_line(email.subject or "").strip()
    message["From"] = single_line(current_app.config["MAIL_DEFAULT_SENDER"]).strip()
    message["To"] = single_line(email.to_address or "").strip()
    message["Message-ID"] = make_msgid(idstring=f"outbox-{email.id}", domain="skileez")
    message.set_content(email.text_body)
    message.add_alternative(email.html_body, subtype="html")
    return message


def _send(email: OutboxEmail) -> tuple[str, str]:
    config = current_app.config
    message = build_message(email)
    if not config["MAIL_SERVER"]:
        # No SMTP: the outbox row itself is the local mailbox admins read.
        return "local", message["Message-ID"]
    smtp_class = smtplib.SMTP_SSL if config["MAIL_USE_SSL"] else smtplib.SMTP
    with smtp_class(config["MAIL_SERVER"], config["MAIL_PORT"],
                    timeout=config["MAIL_TIMEOUT"]) as smtp:
        if config["MAIL_USE_TLS"] and not config["MAIL_USE_SSL"]:
            smtp.starttls(context=ssl.create_default_context())
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"] or "")
        smtp.send_message(message)
    return "smtp", message["Message-ID"]


def retry(email: OutboxEmail, *, actor) -> None:
    """An admin asks for a failed email to be tried again."""
    transition(email, "pending", actor=actor, reason="retried by an admin",
               values={"next_attempt_at": clock.now(), "attempts": 0},
               illegal_message=RETRY_REFUSED)
