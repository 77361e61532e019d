"""The public home page and the signed-in dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    send_from_directory,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload

from skileez import clock
from skileez.auth.models import User
from skileez.core.access import public, require_login
from skileez.core.timezones import format_local, humanize_delta, localize, zone
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


UPCOMING_LIMIT = 8
AGENDA_LIMIT = 20
LIVE_STATUSES = ("pending_payment", "scheduled", "reschedule_requested", "in_progress")
STATUS_WORDS = {
    "pending_payment": "Waiting for payment",
    "scheduled": "Booked and paid",
    "reschedule_requested": "Reschedule requested",
    "in_progress": "In progress now",
    "completed": "Completed",
    "missed": "Missed",
    "cancelled": "Cancelled",
    "expired": "Expired (not paid in time)",
}


@dataclass(frozen=True)
class SessionRow:
    """One line of the dashboard: what the viewer needs to read and do about a session."""

    session: object
    title: str
    other_name: str
    when: str
    countdown: str
    status: str
    action_label: str | None
    action_url: str | None
    action_post: bool
    action_reason: str


def _next_action(session, user, now: datetime) -> tuple[str | None, str | None, bool, str]:
    """The one thing the viewer can do about this session now, asked of the life-cycle rules."""
    from skileez.sessions import lifecycle

    detail = url_for("sessions.detail", session_id=session.id)
    if session.status == "pending_payment" and lifecycle.role_of(session, user) == "student" \
            and session.payment is not None:
        return "Pay", url_for("payments.pay", payment_id=session.payment.id), False, \
            f"Held for you until {format_local(session.hold_expires_at, user.timezone, 'short')}."
    join = lifecycle.can_join(session, user)
    if join:
        return "Join", detail, False, join.reason
    start = lifecycle.can_start(session, user, now)
    if start:
        return "Start", url_for("sessions.start", session_id=session.id), True, start.reason
    complete = lifecycle.can_complete(session, user, now)
    if complete:
        return "Complete", url_for("sessions.complete", session_id=session.id), False, \
            complete.reason
    return None, None, False, start.reason if session.status == "scheduled" else ""


def _rows(sessions, user, now: datetime) -> list[SessionRow]:
    rows = []
    for session in sessions:
        other = session.coach if user.id == session.student_id else session.student
        label, url, post, reason = _next_action(session, user, now)
        status = STATUS_WORDS.get(session.status, session.status.replace("_", " "))
        if session.status == "scheduled" and session.confirmed_by_coach:
            status += ", confirmed by the coach"
        rows.append(SessionRow(
            session=session, title=session.contract.title, other_name=other.name,
            when=format_local(session.starts_at, user.timezone),
            countdown=humanize_delta(session.starts_at, now), status=status,
            action_label=label, action_url=url, action_post=post, action_reason=reason))
    return rows


def _sessions_query(user):
    from skileez.sessions.models import Session

    return (select(Session)
            .where(or_(Session.student_id == user.id, Session.coach_id == user.id))
            .options(joinedload(Session.student), joinedload(Session.coach),
                     joinedload(Session.contract), joinedload(Session.payment))
            .order_by(Session.starts_at, Session.id))


def upcoming_sessions(user, now: datetime) -> list[SessionRow]:
    """The next sessions that still need someone: booked, awaiting payment or running."""
    from skileez.sessions.models import Session

    sessions = db.session.scalars(_sessions_query(user)
                                  .where(Session.status.in_(LIVE_STATUSES))
                                  .limit(UPCOMING_LIMIT)).unique().all()
    return _rows(sessions, user, now)


def todays_agenda(user, now: datetime) -> tuple[list[SessionRow], str]:
    """Every session of the coach's local today (their zone), whatever its state."""
    from skileez.sessions.models import Session

    today = localize(now, user.timezone).date()
    tz = zone(user.timezone)
    start = datetime.combine(today, time(0), tzinfo=tz).astimezone(zone("UTC"))
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=tz).astimezone(
        zone("UTC"))
    sessions = db.session.scalars(_sessions_query(user).where(
        Session.coach_id == user.id, Session.starts_at >= start, Session.starts_at < end,
        Session.status.not_in(("expired",))).limit(AGENDA_LIMIT)).unique().all()
    return _rows(sessions, user, now), format_local(now, user.timezone, "date")


@bp.get("/dashboard")
def dashboard():
    recent = db.session.scalars(
        select(Notification).where(Notification.recipient_id == current_user.id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(5)
    ).all()
    context = {"recent_notifications": recent}
    if not current_user.is_admin:
        from skileez.contracts.queries import active_contracts, pending_proposals

        context["contracts"] = active_contracts(current_user)
        context["proposals"] = pending_proposals(current_user)
        now = clock.now()
        context["upcoming"] = upcoming_sessions(current_user, now)
        if current_user.is_coach:
            context["agenda"], context["agenda_day"] = todays_agenda(current_user, now)
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
