"""Telling people about changes: one in-app notification and one outbox email each."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flask import current_app, g, render_template, url_for
from sqlalchemy import func, select, update

from skileez import clock
from skileez.core.db import insert_many
from skileez.core.queue import QUEUE_CLAIM, left_for_the_sweep
from skileez.extensions import db
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

    The sweep's form: one insert for the notifications and one for their outbox rows
    (rendered the same way ``notify`` renders them), whatever the batch's size. With
    RQ the emails are claimed as queued in that insert and sent by one job after
    commit; in-process a batch waits for the sweep's mail handler (see
    ``left_for_the_sweep``). Returns the notification ids, in order.
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
    rendered = render_emails(kind_name, [(recipient, dict(payload))
                                         for recipient, payload in notices])
    outbox_ids = insert_many(OutboxEmail, [
        {"recipient_id": recipient.id, "notification_id": notification_id,
          "to_address": recipient.email, "subject": subject[:200], "text_body": text_body,
          "html_body": html_body, "kind": kind.name, "status": "pending", "attempts": 0,
          "next_attempt_at": now, "queued_until": queued_until, "created_at": now,
          "updated_at": now}
         for (recipient, _payload), notification_id, (subject, text_body, html_body)
         in zip(notices, notification_ids, rendered, strict=True)], key=("notification_id",))
    if queued_until is not None:
        queue_batch_delivery(outbox_ids, claimed_until=queued_until)
    return notification_ids


#: Where the payloads of the emails being rendered are, for template helpers of higher
#: packages (a payment's words) to load what they quote once for the whole batch.
EMAIL_BATCH = "skileez_email_batch"


@contextmanager
def email_batch(payloads: list[dict]) -> Iterator[None]:
    """Make the batch's payloads known while its emails render, and forget them after."""
    setattr(g, EMAIL_BATCH, {"payloads": payloads})
    try:
        yield
    finally:
        g.pop(EMAIL_BATCH, None)


def render_email(kind_name: str, recipient: Any, payload: dict) -> tuple[str, str, str]:
    """Subject, plain text and HTML, with links that work outside the app."""
    return render_emails(kind_name, [(recipient, payload)])[0]


def render_emails(kind_name: str, notices: Sequence[tuple[Any, dict]]
                  ) -> list[tuple[str, str, str]]:
    """Subject, plain text and HTML for each (recipient, payload), with absolute links.

    Rendered in a request context for the public base URL so ``url_for`` builds
    absolute links even when a worker, not a request, caused the email; one context
    serves the whole batch.
    """
    kind = get_kind(kind_name)
    base_url = current_app.config["PUBLIC_BASE_URL"]
    emails = []
    # The kind's own templates or the generic ones, looked up once for the batch.
    text_template, html_template = (
        current_app.jinja_env.get_or_select_template([f"emails/{kind_name}.{ext}",
                                                      f"emails/_generic.{ext}"])
        for ext in ("txt", "html"))
    with current_app.test_request_context(base_url=base_url), email_batch(
            [payload for _recipient, payload in notices]):
        for recipient, payload in notices:
            context = {"recipient": recipient, "payload": payload,
                       "link": notification_link(kind_name, payload, external=True),
                       "base_url": base_url.rstrip("/")}
            subject = render_plain(kind.subject, **context)
            context["subject"] = subject
            context["summary"] = render_plain(kind.summary, **context)
            context["detail"] = render_plain(kind.detail, **context)
            text_body = render_template(text_template, **context)
            html_body = render_template(html_template, **context)
            emails.append((subject, text_body, html_body))
    return emails


def notification_link(kind_name: str, payload: dict, external: bool = False) -> str | None:
    kind = get_kind(kind_name)
    if not kind.endpoint:
        return None
    args = {name: payload[name] for name in kind.endpoint_args if name in payload}
    return url_for(kind.endpoint, _external=external, **args)


def render_plain(source: str, **context: Any) -> str:
    """Render a kind's text without HTML escaping: it ends up in subjects and plain text,
    and is escaped by the HTML templates it is placed into.

    Each text is compiled once per app: compiling costs far more than rendering, and the
    sweep renders thousands of emails from the same few kinds.
    """
    compiled = current_app.extensions.setdefault("skileez_plain_templates", {})
    template = compiled.get(source)
    if template is None:
        environment = current_app.extensions.get("skileez_plain_jinja")
        if environment is None:
            environment = current_app.jinja_env.overlay(autoescape=False)
            current_app.extensions["skileez_plain_jinja"] = environment
        template = compiled[source] = environment.from_string(source)
    return template.render(**context).strip()


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
