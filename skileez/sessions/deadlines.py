"""Deadline handlers for sessions: holds, reschedule answers, auto-close, reminders.

Each finds due rows in the database and acts on each through a compare-and-set,
in its own savepoint, so a late sweep catches up and two sweeps never double-act.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from skileez import clock
from skileez.core.deadlines import act_on_each, deadline_handler, due
from skileez.core.errors import Conflict
from skileez.core.timezones import humanize_delta
from skileez.extensions import db
from skileez.notifications.operations import notify
from skileez.policy import get_policy
from skileez.sessions import lifecycle
from skileez.sessions.models import Reminder, RescheduleRequest, Session
from skileez.sessions.operations import (
    UNATTENDED_REASON,
    auto_decide_reschedule,
    complete,
    expire_stale_holds,
    mark_missed,
    mark_unattended,
)


@deadline_handler("expire_payment_holds")
def expire_payment_holds() -> int:
    return expire_stale_holds()


@deadline_handler("decide_reschedule_requests")
def decide_reschedule_requests() -> int:
    requests = due(select(RescheduleRequest).where(
        RescheduleRequest.status == "pending", RescheduleRequest.deadline <= clock.now())
        .order_by(RescheduleRequest.deadline))
    return act_on_each(requests, auto_decide_reschedule)


@deadline_handler("auto_complete")
def auto_complete() -> int:
    """In progress 30 minutes after the scheduled end: nobody pressed complete; it happened."""
    cutoff = clock.now() - get_policy().auto_close_after_end
    sessions = due(select(Session).where(
        Session.status == "in_progress", Session.ends_at <= cutoff)
        .order_by(Session.ends_at))
    return act_on_each(sessions, lambda s: complete(
        s, reason="completed automatically after the end"))


@deadline_handler("auto_missed")
def auto_missed() -> int:
    """Never started, 30 minutes after the scheduled end: nobody attended.

    One batch at once (``mark_unattended``); if a payment in it changed meanwhile,
    the batch is undone and taken row by row, so that one row stands aside alone.
    """
    cutoff = clock.now() - get_policy().auto_close_after_end
    # A pending reschedule request is decided by its deadline (at the latest 1 h before the
    # start), well before this, so only scheduled sessions can be due here.
    ids = due(select(Session.id).where(
        Session.status == "scheduled", Session.ends_at <= cutoff)
        .order_by(Session.ends_at))
    try:
        with db.session.begin_nested():
            return len(mark_unattended(ids))
    except Conflict:
        return act_on_each(db.session.scalars(select(Session).where(Session.id.in_(ids))),
                           lambda s: mark_missed(s, missed_by="unattended",
                                                 reason=UNATTENDED_REASON))


def _reminder_kind(before) -> str:
    return f"{int(before.total_seconds() // 3600)}h"


def _timed_at(session: Session) -> datetime:
    """When the session got its current start: booked, or last moved by a reschedule."""
    moved = db.session.scalar(select(func.max(RescheduleRequest.decided_at)).where(
        RescheduleRequest.session_id == session.id,
        RescheduleRequest.approved_start == session.starts_at))
    return max(session.created_at, moved) if moved else session.created_at


def _reminder_to_send(session: Session, now: datetime, kinds) -> timedelta | None:
    """The one reminder a session is owed now, if any.

    Only the nearest window counts: a session inside the 1 h window is owed the
    1 h reminder, never the 24 h one as well. A larger window whose moment had
    already passed when the session got its time is skipped (booked 5 hours
    ahead: no "24 h" reminder); the nearest is always sent, once, so even a
    session booked minutes ahead is reminded.
    """
    due = [before for before in kinds if session.starts_at <= now + before]
    if not due:
        return None
    nearest = min(due)
    if nearest != min(kinds) and session.starts_at - nearest < _timed_at(session):
        return None
    return nearest


@deadline_handler("send_reminders")
def send_reminders() -> int:
    """Each session's nearest due reminder, once per kind and start (the unique row decides)."""
    now = clock.now()
    kinds = sorted(get_policy().reminders)
    if not kinds:
        return 0
    already = select(Reminder.id).where(Reminder.session_id == Session.id,
                                        Reminder.starts_at == Session.starts_at)
    candidates = db.session.scalars(select(Session).where(
        Session.status.in_(lifecycle.BOOKED),
        Session.starts_at > now, Session.starts_at <= now + kinds[-1],
        # A session already reminded for its smallest window is owed nothing more.
        ~already.where(Reminder.kind == _reminder_kind(kinds[0])).exists())
        .order_by(Session.starts_at)).all()
    # Which reminder a session is owed is decided here, not in SQL, so the batch
    # counts reminders sent rather than rows read.
    owed = ((session, before) for session in candidates
            if (before := _reminder_to_send(session, now, kinds)) is not None)
    return act_on_each(owed, lambda pair: _remind(*pair, now=now),
                       skip=(IntegrityError,))  # already sent for this start


def _remind(session: Session, before: timedelta, *, now: datetime) -> None:
    db.session.add(Reminder(session_id=session.id, kind=_reminder_kind(before),
                            starts_at=session.starts_at, sent_at=now))
    db.session.flush()
    payload = session.notification_payload(coach_id=session.coach_id,
                                           when_text=humanize_delta(session.starts_at, now))
    for person in (session.student, session.coach):
        notify(person, "session_reminder", payload)
