"""Telling people about changes: one in-app notification and one outbox email each."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template, url_for
from sqlalchemy import func, select, update

from skileez import clock
from skileez.extensions import db
from skileez.notifications.kinds import get_kind
from skileez.notifications.mail import queue_delivery
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


def render_email(kind_name: str, recipient: Any, payload: dict) -> tuple[str, str, str]:
    """Subject, plain text and HTML, with links that work outside the app.

    Rendered in a request context for the public base URL so ``url_for`` builds
    absolute links even when a worker, not a request, caused the email.
    """
    kind = get_kind(kind_name)
    with current_app.test_request_context(base_url=current_app.config["PUBLIC_BASE_URL"]):
        context = {"recipient": recipient, "payload": payload,
                   "link": notification_link(kind_name, payload, external=True),
                   "base_url": current_app.config["PUBLIC_BASE_URL"].rstrip("/")}
        subject = render_plain(kind.subject, **context)
        context["subject"] = subject
        context["summary"] = render_plain(kind.summary, **context)
        context["detail"] = render_plain(kind.detail, **context)
        text_body = render_template([f"emails/{kind_name}.txt", "emails/_generic.txt"],
                                    **context)
        html_body = render_template([f"emails/{kind_name}.html", "emails/_generic.html"],
                                    **context)
    return subject, text_body, html_body


def notification_link(kind_name: str, payload: dict, external: bool = False) -> str | None:
    kind = get_kind(kind_name)
    if not kind.endpoint:
        return None
    args = {name: payload[name] for name in kind.endpoint_args if name in payload}
    return url_for(kind.endpoint, _external=external, **args)


def render_plain(source: str, **context: Any) -> str:
    """Render a kind's text without HTML escaping: it ends up in subjects and plain text,
    and is escaped by the HTML templates it is placed into."""
    environment = current_app.extensions.get("skileez_plain_jinja")
    if environment is None:
        environment = current_app.jinja_env.overlay(autoescape=False)
        current_app.extensions["skileez_plain_jinja"] = environment
    return environment.from_string(source).render(**context).strip()


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
