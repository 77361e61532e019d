"""The public home page and the signed-in dashboard."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    send_from_directory,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select

from skileez import clock
from skileez.auth.models import User
from skileez.core.access import public, require_login
from skileez.extensions import db
from skileez.notifications.models import Notification, OutboxEmail

bp = require_login(Blueprint("core", __name__))


@bp.get("/")
@public
def home():
    if current_user.is_authenticated:
        return redirect(url_for("core.dashboard"))
    return render_template("core/home.html")


@bp.get("/favicon.ico")
@public
def favicon():
    """Browsers ask for /favicon.ico whatever the page links; answer with our icon."""
    return send_from_directory(current_app.static_folder, "img/favicon.svg",
                               mimetype="image/svg+xml", max_age=86400)


@bp.get("/healthz")
@public
def health():
    """For load balancers: the process is up and the database answers."""
    db.session.execute(select(1))
    return {"status": "ok"}


@bp.get("/dashboard")
def dashboard():
    recent = db.session.scalars(
        select(Notification).where(Notification.recipient_id == current_user.id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(5)
    ).all()
    context = {"recent_notifications": recent}
    if not current_user.is_admin:
        from skileez.contracts.queries import active_contracts, pending_proposals
        from skileez.sessions import agenda

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
    return render_template("core/dashboard.html", **context)
