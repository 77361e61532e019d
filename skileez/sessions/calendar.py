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
from datetime import UTC, datetime, timedelta

from flask import current_app
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
        # "Session 3 of 5" counts the contract's sessions: loaded with the feed, only
        # the columns that decide whether a session holds a place and where it stands.
        .options(selectinload(Session.contract).selectinload(Contract.sessions).load_only(
                     Session.contract_id, Session.starts_at, Session.status,
                     Session.hold_expires_at),
                 selectinload(Session.coach), selectinload(Session.student))
        .order_by(Session.starts_at, Session.id)))


def meeting_url(session: Session) -> str:
    base = current_app.config.get("MEETING_BASE_URL", "https://meet.jit.si").rstrip("/")
    return f"{base}/{session.meeting_room}"


# The document is written here rather than through icalendar's object model, which costs
# about 1.5 ms per event: a busy coach's year ahead (well over a thousand sessions) took
# seconds per poll. The few property types we use are simple; the tests parse every
# document with icalendar to prove it reads what we write.
ICAL_LINE_OCTETS = 75
TEXT_ESCAPES = str.maketrans({"\\": "\\\\", ";": "\\;", ",": "\\,", "\n": "\\n",
                              "\r": ""})


def _text(value: str) -> str:
    """RFC 5545 TEXT: backslash, semicolon, comma and line breaks escaped."""
    return value.translate(TEXT_ESCAPES)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> str:
    """A content line folded to 75 octets (RFC 5545 3.1), never inside a UTF-8 character."""
    if line.isascii():  # one octet per character: cut by slicing (most lines, and fast)
        if len(line) <= ICAL_LINE_OCTETS:
            return line
        step = ICAL_LINE_OCTETS - 1  # after the continuation line's leading space
        return "\r\n ".join([line[:ICAL_LINE_OCTETS]] + [
            line[start:start + step] for start in range(ICAL_LINE_OCTETS, len(line), step)])
    if len(line.encode()) <= ICAL_LINE_OCTETS:
        return line
    pieces, current, size = [], [], 0
    for character in line:
        octets = len(character.encode())
        if size + octets > ICAL_LINE_OCTETS:
            pieces.append("".join(current))
            current, size = [" "], 1  # a continuation line starts with one space
        current.append(character)
        size += octets
    pieces.append("".join(current))
    return "\r\n".join(pieces)


def session_event(session: Session, viewer: User, page_url: str, stamp: datetime,
                  place_label: str) -> list[str]:
    """One session's VEVENT lines as the viewer sees it: titled with the other person's name."""
    other = session.coach if viewer.id == session.student_id else session.student
    join_url = meeting_url(session)
    lines = [
        "BEGIN:VEVENT",
        f"SUMMARY:{_text(f'{session.contract.title} with {other.name}')}",
        f"DTSTART:{_utc(session.starts_at)}",
        f"DTEND:{_utc(session.ends_at)}",
        f"DTSTAMP:{_utc(stamp)}",
        f"UID:session-{session.id}@skileez",
        "DESCRIPTION:" + _text(f"{place_label} with {other.name}.\n\n"
                               f"Join the meeting: {join_url}\nSession page: {page_url}"),
        f"LOCATION:{_text(join_url)}",
        f"STATUS:{EVENT_STATUS.get(session.status, 'CONFIRMED')}",
        f"URL:{page_url}",
    ]
    if session.updated_at:
        lines.append(f"LAST-MODIFIED:{_utc(session.updated_at)}")
    lines.append("END:VEVENT")
    return lines


def build_calendar(sessions: Iterable[Session], viewer: User,
                   page_url: Callable[[Session], str], *, name: str | None = None) -> bytes:
    """An iCalendar document with one VEVENT per session.

    ``page_url`` turns a session into the absolute URL of its page; it is passed in
    because only the route knows the host the request came to.
    """
    lines = ["BEGIN:VCALENDAR", f"PRODID:{PRODUCT_ID}", "VERSION:2.0", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH"]
    if name:
        refresh = _duration(REFRESH_INTERVAL)
        lines += [f"X-WR-CALNAME:{_text(name)}", f"REFRESH-INTERVAL;VALUE=DURATION:{refresh}",
                  f"X-PUBLISHED-TTL:{refresh}"]
    stamp = clock.now()
    place_numbers: dict[int, dict[int, int]] = {}
    for session in sessions:
        numbers = place_numbers.get(session.contract_id)
        if numbers is None:
            numbers = place_numbers[session.contract_id] = session.contract.place_numbers()
        lines += session_event(session, viewer, page_url(session), stamp,
                               session.place_label_among(numbers))
    lines.append("END:VCALENDAR")
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode()


def _duration(length: timedelta) -> str:
    """A length as an RFC 5545 DURATION in its largest whole unit (PT1H, PT90M, PT45S)."""
    seconds = int(length.total_seconds())
    if seconds % 3600 == 0:
        return f"PT{seconds // 3600}H"
    if seconds % 60 == 0:
        return f"PT{seconds // 60}M"
    return f"PT{seconds}S"
