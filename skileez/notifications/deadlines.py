"""Deadline handler: emails whose send is due (never dispatched, or due for a retry)."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import and_, or_, select

from skileez import clock
from skileez.extensions import db
from skileez.jobs.queue import dispatch
from skileez.jobs.sweep import deadline_handler
from skileez.notifications.mail import deliver, rq_retry
from skileez.notifications.models import OutboxEmail

BATCH = 200


@deadline_handler("send_due_mail")
def send_due_mail() -> int:
    now = clock.now()
    due_ids = db.session.scalars(
        select(OutboxEmail.id)
        .where(or_(
            and_(OutboxEmail.status == "pending", OutboxEmail.next_attempt_at <= now),
            and_(OutboxEmail.status == "sending", OutboxEmail.claimed_until < now),
        ))
        .order_by(OutboxEmail.next_attempt_at)
        .limit(BATCH)
    ).all()
    app = current_app._get_current_object()
    for outbox_id in due_ids:
        dispatch(app, deliver, (outbox_id,), queue="mail", retry=rq_retry())
    return len(due_ids)
