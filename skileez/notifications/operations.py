"""Telling people about changes: one in-app notification and one outbox email each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update

from skileez import clock
from skileez.core.db import insert_many
from skileez.core.queue import QUEUE_CLAIM, left_for_the_sweep
from skileez.extensions import db
from skileez.notifications.compose import render_email, render_plain
from skileez.notifications.kinds import get_kind
from skileez.notifications.mail import queue_batch_delivery, queue_delivery
from skileez.notifications.models import Notification, OutboxEmail


def notify(recipient: Any, kind_name: str, payload: dict | None = None, *,
           email: bool | None = None) -> Notification:
    """Record a notification and its email in the caller's transaction.

    Nothing is sent here: the email is an outbox row, dispatched after commit.
    If the caller rolls back, neither exists.
    """
    kind = get_kind(kind_name)
    payload = dict(payload or {})
    notification = Notification(recipient_id=recipient.id, kind=kind.name, payload=payload,
                                created_at=clock.now())
    db.session.add(notification)
    db.session.flush()
    if kind.email if email is None else email:
        subject, text_body, html_body = render_email(kind_name, recipient, payload)
        outbox = OutboxEmail(
            recipient_id=recipient.id, notification_id=notification.id,
            to_address=recipient.email, subject=subject[:200], text_body=text_body,
            html_body=html_body, kind=kind.name, status="pending",
            next_attempt_at=clock.now(), created_at=clock.now(),
        )
        db.session.add(outbox)
        db.session.flush()
        queue_delivery(outbox.id)
    return notification


def notify_many(kind_name: str, notices: Sequence[tuple[Any, dict]]) -> list[int]:
    """``notify`` for a batch: one notification and one email per (recipient, payload).

    The sweep's form: one insert for the notifications and one for their outbox rows,
    whatever the batch's size. The emails are left unwritten, to be written where they
    are sent (``compose.write_unwritten``): writing thousands of them here would cost the
    sweep more than everything else it does. With RQ the emails are claimed as queued in
    that insert and sent by one job after commit; in-process a batch waits for the
    sweep's mail handler (see ``left_for_the_sweep``). Returns the notification ids, in
    order.
    """
    kind = get_kind(kind_name)
    if not notices:
        return []
    now = clock.now()
    notification_ids = insert_many(Notification, [
        {"recipient_id": recipient.id, "kind": kind.name, "payload": dict(payload),
         "created_at": now} for recipient, payload in notices], key=("recipient_id", "payload"))
    if not kind.email:
        return notification_ids
    queued_until = None if left_for_the_sweep(len(notices)) else now + QUEUE_CLAIM
    outbox_ids = insert_many(OutboxEmail, [
        {"recipient_id": recipient.id, "notification_id": notification_id,
         "to_address": recipient.email, "subject": None, "text_body": None,
         "html_body": None, "kind": kind.name, "status": "pending", "attempts": 0,
         "next_attempt_at": now, "queued_until": queued_until, "created_at": now,
         "updated_at": now}
        for (recipient, _payload), notification_id
        in zip(notices, notification_ids, strict=True)], key=("notification_id",))
    if queued_until is not None:
        queue_batch_delivery(outbox_ids, claimed_until=queued_until)
    return notification_ids


def notification_summary(notification: Notification) -> str:
    kind = get_kind(notification.kind)
    return render_plain(kind.summary, payload=notification.payload,
                        recipient=notification.recipient)


def unread_count(user: Any) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Notification)
        .where(Notification.recipient_id == user.id, Notification.read_at.is_(None))
    ) or 0


def mark_read(notification: Notification) -> None:
    if notification.read_at is None:
        notification.read_at = clock.now()
        db.session.flush()


def mark_all_read(user: Any) -> int:
    result = db.session.execute(
        update(Notification)
        .where(Notification.recipient_id == user.id, Notification.read_at.is_(None))
        .values(read_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def mark_read_about(user, kind_name: str, **payload_match) -> None:
    """Mark notifications read once what they asked for is done (an answered proposal)."""
    for notification in db.session.scalars(
            select(Notification).where(Notification.recipient_id == user.id,
                                       Notification.kind == kind_name,
                                       Notification.read_at.is_(None))):
        if all(notification.payload.get(k) == v for k, v in payload_match.items()):
            notification.read_at = clock.now()
    db.session.flush()
