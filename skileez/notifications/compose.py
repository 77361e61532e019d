"""Writing emails: a notification kind's subject, plain text and HTML, for a recipient.

A single notification (a request's) has its email written when it is recorded. A batch
(the sweep's: thousands of rows in a run) leaves its outbox rows unwritten (no subject,
no bodies) and they are written where they are sent, in ``write_unwritten``: writing
costs far more than the rows themselves, and it then happens on the mail workers, in
parallel and off the sweep's time budget, from the notification the row belongs to
(its kind, payload and recipient), with the same templates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flask import current_app, g, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from skileez.core.db import among
from skileez.extensions import db
from skileez.notifications.kinds import get_kind
from skileez.notifications.models import Notification, OutboxEmail


class UnwritableEmail(RuntimeError):
    """An outbox row that can no longer be written (its notification is gone)."""


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
        # What the app's context processors give a template is the same for the whole
        # batch (one request context, nobody signed in): asked for once, not per email.
        shared: dict[str, Any] = {}
        current_app.update_template_context(shared)
        for recipient, payload in notices:
            context = {**shared, "recipient": recipient, "payload": payload,
                       "link": notification_link(kind_name, payload, external=True),
                       "base_url": base_url.rstrip("/")}
            subject = render_plain(kind.subject, **context)
            context["subject"] = subject
            context["summary"] = render_plain(kind.summary, **context)
            context["detail"] = render_plain(kind.detail, **context)
            text_body = text_template.render(context)
            html_body = html_template.render(context)
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



def write_unwritten(emails: Sequence[OutboxEmail]) -> None:
    """Give every unwritten email of ``emails`` its subject and bodies, in the caller's
    transaction: one query for their notifications and recipients, one render per kind
    for the batch (so what a template quotes, a payment's words, is loaded once).

    Raises ``UnwritableEmail`` when a row's notification is gone (nothing to say), and
    whatever a template raises: the caller records that as the attempt's failure.
    """
    unwritten = [email for email in emails if email.text_body is None]
    if not unwritten:
        return
    missing = [email.id for email in unwritten if email.notification_id is None]
    if missing:
        raise UnwritableEmail(f"email {missing[0]} has no notification to write it from")
    found = {notification.id: (notification, notification.recipient)
             for notification in db.session.scalars(
                 select(Notification).options(joinedload(Notification.recipient))
                 .where(among(Notification.id,
                              [email.notification_id for email in unwritten])))}
    by_kind: dict[str, list[OutboxEmail]] = defaultdict(list)
    for email in unwritten:
        if email.notification_id not in found:
            raise UnwritableEmail(f"email {email.id} has no notification to write it from")
        by_kind[found[email.notification_id][0].kind].append(email)
    for kind_name, batch in by_kind.items():
        notices = [(found[email.notification_id][1], found[email.notification_id][0].payload)
                   for email in batch]
        for email, (subject, text_body, html_body) in zip(
                batch, render_emails(kind_name, notices), strict=True):
            email.subject, email.text_body, email.html_body = subject[:200], text_body, html_body
    db.session.flush()


def preview(email: OutboxEmail) -> tuple[str, str, str] | None:
    """What an unwritten email will say if it were written now (for the admin's mailbox),
    without writing it; None if it can no longer be written."""
    if email.text_body is not None:
        return email.subject or "", email.text_body, email.html_body or ""
    notification = (db.session.get(Notification, email.notification_id)
                    if email.notification_id is not None else None)
    if notification is None or notification.recipient is None:
        return None
    return render_email(notification.kind, notification.recipient, notification.payload)
