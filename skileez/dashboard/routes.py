"""The dashboard: what needs the person's attention, from every domain, on one page."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy import func, select

from skileez import clock
from skileez.auth.models import User
from skileez.contracts.queries import active_contracts, pending_proposals
from skileez.core.access import require_login
from skileez.extensions import db
from skileez.notifications.models import Notification, OutboxEmail
from skileez.sessions import agenda

bp = require_login(Blueprint("dashboard", __name__))


@bp.get("/dashboard")
def index():
    recent = db.session.scalars(
        select(Notification).where(Notification.recipient_id == current_user.id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(5)
    ).all()
    context = {"recent_notifications": recent}
    if not current_user.is_admin:
        context["contracts"] = active_contracts(current_user)
        context["proposals"] = pending_proposals(current_user)
        now = clock.now()
        context["upcoming"] = agenda.upcoming_sessions(current_user, now)
        if current_user.is_coach:
            context["agenda"], context["agenda_day"] = agenda.todays_agenda(current_user, now)
    if current_user.is_admin:
        counts = dict(db.session.execute(
            select(User.role, func.count()).where(User.status == "active").group_by(User.role)
        ).all())
        context["user_counts"] = counts
        context["pending_mail"] = db.session.scalar(
            select(func.count()).select_from(OutboxEmail)
            .where(OutboxEmail.status.in_(("pending", "sending")))
        )
        context["failed_mail"] = db.session.scalar(
            select(func.count()).select_from(OutboxEmail).where(OutboxEmail.status == "failed")
        )
    return render_template("dashboard/dashboard.html", **context)
