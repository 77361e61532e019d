"""Deadline handler: emails whose send is due (never dispatched, or due for a retry).

Only rows with no job waiting are queued (the queued claim), so a backlog is queued
once, not once per sweep.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from skileez import clock
from skileez.core.deadlines import deadline_handler, due
from skileez.core.queue import dispatch_claimed
from skileez.notifications.mail import deliver, rq_retry
from skileez.notifications.models import OutboxEmail


@deadline_handler("send_due_mail")
def send_due_mail() -> int:
    now = clock.now()
    due_ids = due(
        select(OutboxEmail.id)
        .where(or_(
            and_(OutboxEmail.status == "pending", OutboxEmail.next_attempt_at <= now),
            and_(OutboxEmail.status == "sending", OutboxEmail.claimed_until < now),
        ), or_(OutboxEmail.queued_until.is_(None), OutboxEmail.queued_until <= now))
        .order_by(OutboxEmail.next_attempt_at))
    return dispatch_claimed(deliver, OutboxEmail, due_ids, queue="mail", retry=rq_retry())
