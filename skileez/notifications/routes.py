"""The bell, the notifications list, and marking things read."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from skileez.core.access import require_login
from skileez.core.http import is_htmx
from skileez.core.pagination import paginate
from skileez.core.unit_of_work import see_other, transaction
from skileez.extensions import db
from skileez.notifications import compose, operations
from skileez.notifications.models import Notification

bp = require_login(Blueprint("notifications", __name__, url_prefix="/notifications"))


@bp.app_context_processor
def unread_count_for_nav():
    """The bell's count on every page; core's template globals sit below notifications."""
    unread = 0
    # Fragments polled by htmx (other than the bell itself) do not show the count.
    fragment = is_htmx() and request.endpoint != "notifications.bell"
    if current_user and current_user.is_authenticated and not fragment:
        unread = operations.unread_count(current_user)
    return {"unread_count": unread}


@bp.app_template_filter("notification_summary")
def notification_summary_filter(notification: Notification) -> str:
    return operations.notification_summary(notification)


@bp.app_template_filter("notification_link")
def notification_link_filter(notification: Notification) -> str | None:
    return compose.notification_link(notification.kind, notification.payload)


@bp.get("/")
def index():
    page = paginate(
        select(Notification).where(Notification.recipient_id == current_user.id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()),
        per_page=20,
    )
    return render_template("notifications/index.html", page=page)


@bp.get("/bell")
def bell():
    return render_template("notifications/_bell.html")


def _own_notification(notification_id: int) -> Notification:
    notification = db.session.get(Notification, notification_id)
    if notification is None or notification.recipient_id != current_user.id:
        abort(404)
    return notification


@bp.post("/<int:notification_id>/read")
def mark_read(notification_id: int):
    notification = _own_notification(notification_id)
    with transaction():
        operations.mark_read(notification)
    if is_htmx():
        response = render_template("notifications/_item.html", n=notification)
        return response, 200, {"HX-Trigger": "notifications-changed"}
    target = compose.notification_link(notification.kind, notification.payload) \
        if request.form.get("follow") else None
    return see_other(target or url_for("notifications.index"))


@bp.post("/read-all")
def mark_all_read():
    with transaction():
        operations.mark_all_read(current_user)
    return see_other(url_for("notifications.index"))
