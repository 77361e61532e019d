"""Deadline handler: emails whose send is due (never dispatched, or due for a retry).

Only rows with no job waiting are queued (the queued claim), so a backlog is queued
once, not once per sweep. A batch is claimed in one statement and handed to one
``deliver_batch`` job (an RQ worker, or in-process right after the batch commits),
and the handler runs after the others, so a sweep sends the mail its own batches
wrote, batch after batch within its time budget.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from skileez import clock
from skileez.core.deadlines import deadline_handler, due
from skileez.core.queue import dispatch_claimed
from skileez.notifications.mail import deliver_batch, rq_retry
from skileez.notifications.models import OutboxEmail


@deadline_handler("send_due_mail", after_the_others=True)
def send_due_mail() -> int:
    now = clock.now()
    due_ids = due(
        select(OutboxEmail.id)
        .where(or_(
            and_(OutboxEmail.status == "pending", OutboxEmail.next_attempt_at <= now),
            and_(OutboxEmail.status == "sending", OutboxEmail.claimed_until < now),
        ), or_(OutboxEmail.queued_until.is_(None), OutboxEmail.queued_until <= now))
        .order_by(OutboxEmail.next_attempt_at))
    return dispatch_claimed(deliver_batch, OutboxEmail, due_ids, queue="mail", batch=True,
                            retry=rq_retry())
