"""The sessions a dashboard lists: the next ones and a coach's day, each with its action.

Built here, beside the life-cycle rules they ask, so the dashboard page only
renders rows; the action on each row is the one ``lifecycle`` allows now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from flask import url_for
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from skileez.core.timezones import format_local, humanize_delta, localize, zone
from skileez.extensions import db
from skileez.sessions import lifecycle
from skileez.sessions.models import Session

UPCOMING_LIMIT = 8
AGENDA_LIMIT = 20


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
    detail = url_for("sessions.detail", session_id=session.id)
    pay = lifecycle.can_pay(session, user, now)
    if pay and session.payment is not None:
        return "Pay", url_for("payments.pay", payment_id=session.payment.id), False, pay.reason
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
        status = lifecycle.STATUS_LABELS[session.status]
        if session.status == "scheduled" and session.confirmed_by_coach:
            status += ", confirmed by the coach"
        rows.append(SessionRow(
            session=session, title=session.contract.title, other_name=other.name,
            when=format_local(session.starts_at, user.timezone),
            countdown=humanize_delta(session.starts_at, now), status=status,
            action_label=label, action_url=url, action_post=post, action_reason=reason))
    return rows


def _sessions_query(user):
    return (select(Session)
            .where(or_(Session.student_id == user.id, Session.coach_id == user.id))
            .options(joinedload(Session.student), joinedload(Session.coach),
                     joinedload(Session.contract), joinedload(Session.payment))
            .order_by(Session.starts_at, Session.id))


def upcoming_sessions(user, now: datetime) -> list[SessionRow]:
    """The next sessions that still need someone: booked, awaiting payment or running."""
    sessions = db.session.scalars(_sessions_query(user)
                                  .where(Session.status.in_(lifecycle.GOING_AHEAD))
                                  .limit(UPCOMING_LIMIT)).unique().all()
    return _rows(sessions, user, now)


def todays_agenda(user, now: datetime) -> tuple[list[SessionRow], str]:
    """Every session of the coach's local today (their zone), whatever its state."""
    today = localize(now, user.timezone).date()
    tz = zone(user.timezone)
    start = datetime.combine(today, time(0), tzinfo=tz).astimezone(zone("UTC"))
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=tz).astimezone(
        zone("UTC"))
    sessions = db.session.scalars(_sessions_query(user).where(
        Session.coach_id == user.id, Session.starts_at >= start, Session.starts_at < end,
        Session.status.not_in(("expired",))).limit(AGENDA_LIMIT)).unique().all()
    return _rows(sessions, user, now), format_local(now, user.timezone, "date")
