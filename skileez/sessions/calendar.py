"""Sessions as iCalendar: a private feed per person, and one file per session.

Calendar apps poll the feed without cookies, so the feed URL itself is the secret
(``User.calendar_token``); generating a new token is how someone revokes a URL that
leaked. Times go out in UTC — every calendar app shows them in its own zone — and each
session keeps one UID forever, so a rescheduled session moves instead of duplicating.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from datetime import timedelta

from flask import current_app
from icalendar import Calendar, Event, vDuration
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload

from skileez import clock
from skileez.auth.models import User
from skileez.contracts.models import Contract
from skileez.extensions import db
from skileez.policy import get_policy
from skileez.sessions import lifecycle
from skileez.sessions.models import Session

PRODUCT_ID = "-//Skileez//Sessions//EN"
# Sessions someone still plans around; completed ones stay a while as a record.
FEED_STATUSES = lifecycle.MEETING_ON
RECENT_COMPLETED = timedelta(days=30)
# How often we ask calendar apps to refresh (most poll at their own pace regardless).
REFRESH_INTERVAL = timedelta(hours=1)
EVENT_STATUS = {"pending_payment": "TENTATIVE", "cancelled": "CANCELLED",
                "expired": "CANCELLED", "missed": "CANCELLED"}
# What secrets.token_urlsafe produces, within the column's 64 characters.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def ensure_token(user: User) -> str:
    """The user's feed token, created the first time they need one."""
    if not user.calendar_token:
        user.calendar_token = new_token()
        db.session.flush()
    return user.calendar_token


def rotate_token(user: User) -> str:
    """A new feed token; the old URL stops working at once (calendar apps get 404)."""
    user.calendar_token = new_token()
    db.session.flush()
    return user.calendar_token


def user_for_token(token: str) -> User | None:
    """The active user owning ``token``, or None (unknown, revoked, or deactivated)."""
    if not TOKEN_SHAPE.fullmatch(token or ""):
        return None  # not one we could have issued; spares the database odd input (NUL)
    user = db.session.scalar(select(User).where(User.calendar_token == token))
    return user if user is not None and user.is_active else None


def feed_sessions(user: User) -> list[Session]:
    """Sessions for the feed: those still ahead or running, and recently completed ones,
    within the policy's horizon (a feed of every session ever booked grows without end)."""
    now = clock.now()
    policy = get_policy()
    since = now - RECENT_COMPLETED
    return list(db.session.scalars(
        select(Session)
        .where(or_(Session.student_id == user.id, Session.coach_id == user.id),
               Session.starts_at >= now - policy.calendar_feed_past,
               Session.starts_at <= now + policy.calendar_feed_ahead,
               or_(Session.status.in_(FEED_STATUSES),
                   and_(Session.status == "completed", Session.starts_at >= since)))
        # "Session 3 of 5" counts the contract's sessions: loaded with the feed.
        .options(selectinload(Session.contract).selectinload(Contract.sessions),
                 selectinload(Session.coach), selectinload(Session.student))
        .order_by(Session.starts_at, Session.id)))


def meeting_url(session: Session) -> str:
    base = current_app.config.get("MEETING_BASE_URL", "https://meet.jit.si").rstrip("/")
    return f"{base}/{session.meeting_room}"


def session_event(session: Session, viewer: User, page_url: str) -> Event:
    """One session as the viewer sees it: titled with the other person's name."""
    other = session.coach if viewer.id == session.student_id else session.student
    join_url = meeting_url(session)
    event = Event()
    event.add("uid", f"session-{session.id}@skileez")
    event.add("dtstamp", clock.now())
    event.add("dtstart", session.starts_at)
    event.add("dtend", session.ends_at)
    event.add("summary", f"{session.contract.title} with {other.name}")
    event.add("description",
              f"{session.place_label} with {other.name}.\n\nJoin the meeting: {join_url}\n"
              f"Session page: {page_url}")
    event.add("location", join_url)
    event.add("url", page_url)
    event.add("status", EVENT_STATUS.get(session.status, "CONFIRMED"))
    if session.updated_at:
        event.add("last-modified", session.updated_at)
    return event


def build_calendar(sessions: Iterable[Session], viewer: User,
                   page_url: Callable[[Session], str], *, name: str | None = None) -> bytes:
    """An iCalendar document with one VEVENT per session.

    ``page_url`` turns a session into the absolute URL of its page; it is passed in
    because only the route knows the host the request came to.
    """
    calendar = Calendar()
    calendar.add("prodid", PRODUCT_ID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    if name:
        calendar.add("x-wr-calname", name)
        calendar.add("refresh-interval", REFRESH_INTERVAL, parameters={"VALUE": "DURATION"})
        calendar.add("x-published-ttl", vDuration(REFRESH_INTERVAL).to_ical().decode())
    for session in sessions:
        calendar.add_component(session_event(session, viewer, page_url(session)))
    return calendar.to_ical()
