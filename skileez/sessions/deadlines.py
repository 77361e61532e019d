"""Deadline handlers for sessions: holds, reschedule answers, auto-close, reminders.

Each finds due rows in the database and acts on each through a compare-and-set,
in its own savepoint, so a late sweep catches up and two sweeps never double-act.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from skileez import clock
from skileez.core.errors import Conflict
from skileez.core.timezones import humanize_delta
from skileez.extensions import db
from skileez.jobs.sweep import deadline_handler
from skileez.notifications.operations import notify
from skileez.policy import get_policy
from skileez.sessions.models import Reminder, RescheduleRequest, Session
from skileez.sessions.operations import (
    auto_decide_reschedule,
    complete,
    expire_stale_holds,
    mark_missed,
)

BATCH = 200


def _each(rows, action) -> int:
    done = 0
    for row in rows:
        try:
            with db.session.begin_nested():
                action(row)
            done += 1
        except Conflict:
            continue  # someone acted a moment ago
    return done


@deadline_handler("expire_payment_holds")
def expire_payment_holds() -> int:
    return expire_stale_holds()


@deadline_handler("decide_reschedule_requests")
def decide_reschedule_requests() -> int:
    due = db.session.scalars(select(RescheduleRequest).where(
        RescheduleRequest.status == "pending", RescheduleRequest.deadline <= clock.now())
        .order_by(RescheduleRequest.deadline).limit(BATCH)).all()
    return _each(due, auto_decide_reschedule)


@deadline_handler("auto_complete")
def auto_complete() -> int:
    """In progress 30 minutes after the scheduled end: nobody pressed complete; it happened."""
    cutoff = clock.now() - get_policy().auto_close_after_end
    due = db.session.scalars(select(Session).where(
        Session.status == "in_progress", Session.ends_at <= cutoff)
        .order_by(Session.ends_at).limit(BATCH)).all()
    return _each(due, lambda s: complete(s, reason="completed automatically after the end"))


@deadline_handler("auto_missed")
def auto_missed() -> int:
    """Never started, 30 minutes after the scheduled end: nobody attended."""
    cutoff = clock.now() - get_policy().auto_close_after_end
    # A pending reschedule request is decided by its deadline (at the latest 1 h before the
    # start), well before this, so only scheduled sessions can be due here.
    due = db.session.scalars(select(Session).where(
        Session.status == "scheduled", Session.ends_at <= cutoff)
        .order_by(Session.ends_at).limit(BATCH)).all()
    return _each(due, lambda s: mark_missed(s, missed_by="unattended",
                                            reason="Nobody started the session."))


def _reminder_kind(before) -> str:
    return f"{int(before.total_seconds() // 3600)}h"


@deadline_handler("send_reminders")
def send_reminders() -> int:
    """24 h and 1 h before, once per session, kind and start time (the unique row decides)."""
    now = clock.now()
    sent = 0
    for before in get_policy().reminders:
        due = db.session.scalars(select(Session).where(
            Session.status.in_(("scheduled", "reschedule_requested")),
            Session.starts_at > now, Session.starts_at <= now + before)
            .order_by(Session.starts_at).limit(BATCH)).all()
        for session in due:
            try:
                with db.session.begin_nested():
                    db.session.add(Reminder(session_id=session.id, kind=_reminder_kind(before),
                                            starts_at=session.starts_at, sent_at=now))
                    db.session.flush()
            except IntegrityError:
                continue  # already sent for this start
            payload = {"session_id": session.id, "contract_title": session.contract.title,
                       "starts_at": session.starts_at.isoformat(),
                       "coach_name": session.coach.name, "student_name": session.student.name,
                       "coach_id": session.coach_id, "when_text":
                       humanize_delta(session.starts_at, now)}
            for person in (session.student, session.coach):
                notify(person, "session_reminder", payload)
            sent += 1
    return sent
