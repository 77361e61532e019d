"""Whether the session page's live fragment would read differently, told without drawing it.

Every open session page asks for the fragment every 10 s, both participants, for as long as
the session can still change: most of those answers are the same as the one before. So the
fragment carries a validator (an ETag) of everything that decides what it says, read in one
indexed query: the session's ``version`` (one more on every write to it), the names and time
zones it is said in, the viewer's form token, the code that draws it, and the next instant
at which its words change by themselves (a countdown's unit, a rule's window). The browser
asks again with ``If-None-Match`` and gets "304 Not Modified" when all of that is the same,
and keeps the fragment it has.

The one thing it shows that no cheap column tells is the list of open times offered to
whoever answers a reschedule request (it depends on every booking of the coach): that
fragment carries no validator and is drawn on every poll.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from flask import session as cookie_session
from sqlalchemy import bindparam, case, or_, select

from skileez.auth.models import User
from skileez.core.db import PreparedRead
from skileez.core.timezones import humanize_changes_at
from skileez.policy import get_policy
from skileez.sessions import lifecycle
from skileez.sessions.models import RescheduleRequest, Session

_MICROSECOND = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
_GENERATION = "skileez_live_generation"
_KNOWN = "skileez_live_validators"
_KNOWN_AT_MOST = 10_000


def _state_query():
    """Built once, of tables rather than mapped classes, and prepared: a statement that is
    only parameters, sent by the driver, is all a poll may cost to build and run."""
    sessions = Session.__table__
    viewer = User.__table__.alias("viewer")
    other = User.__table__.alias("other")
    pending = RescheduleRequest.__table__.alias("pending")
    return (
        select(sessions.c.id, sessions.c.version, sessions.c.status, sessions.c.starts_at,
               sessions.c.ends_at, sessions.c.started_at, sessions.c.hold_expires_at,
               viewer.c.id.label("viewer_id"), viewer.c.name.label("viewer_name"),
               viewer.c.timezone.label("viewer_timezone"),
               other.c.name.label("other_name"), other.c.timezone.label("other_timezone"),
               pending.c.requested_by_id.label("request_by"),
               pending.c.deadline.label("request_deadline"))
        .select_from(sessions)
        .join(viewer, (viewer.c.session_token == bindparam("token"))
              & (viewer.c.status == "active")
              & or_(viewer.c.id == sessions.c.coach_id, viewer.c.id == sessions.c.student_id))
        .join(other, other.c.id == case((sessions.c.coach_id == viewer.c.id,
                                         sessions.c.student_id), else_=sessions.c.coach_id))
        .outerjoin(pending, (pending.c.session_id == sessions.c.id)
                   & (pending.c.status == "pending"))
        .where(sessions.c.id == bindparam("session_id")))


_STATE = _state_query()
_READ_STATE = PreparedRead(_STATE)


def live_state(session_id: int, token: str) -> tuple | None:
    """What the validator is made of, in one query by primary key and sign-in token.

    None unless the token is an active account's (as ``auth.session.load_user`` asks) and
    that person takes part in the session, so a validator never tells anyone else that
    the session exists.
    """
    return _READ_STATE.first(session_id=session_id, token=token)


def words_change_at(state, now: datetime) -> datetime | None:
    """The first instant after ``now`` at which the fragment may say something else with
    nothing written. None for a final session: nothing in it depends on the time any more.

    Otherwise the earliest of: a rule's instant reached or passed (``lifecycle.moments``);
    the distance to one still ahead moving to its next whole unit (a rule says how far
    away its instant is only while it is ahead: "you can start from … — in 3 hours"); the
    distance to the start, which the clock line says on both sides of it; and while the
    session is on, its minutes elapsed and remaining ticking.
    """
    if lifecycle.is_final(state):
        return None
    candidates = [humanize_changes_at(state.starts_at, now)]
    for moment in lifecycle.moments(state, getattr(state, "request_deadline", None)):
        candidates += [moment, moment + _MICROSECOND]
        if moment > now:
            candidates.append(humanize_changes_at(moment, now))
    if lifecycle.is_in_progress(state):
        for anchor in filter(None, (state.started_at, state.ends_at)):
            last_tick = anchor + ((now - anchor) // _MINUTE) * _MINUTE
            candidates += [last_tick + _MICROSECOND, last_tick + _MINUTE]
    return min(moment for moment in candidates if moment > now)


def validator(state, now: datetime) -> str | None:
    """The fragment's ETag for the person ``state`` was read for, at ``now`` (None: draw it
    every time)."""
    if state.request_by is not None and state.request_by != state.viewer_id:
        return None  # the open times offered for an answer change with every booking
    token = cookie_session.get(current_app.config["WTF_CSRF_FIELD_NAME"], "")
    known = current_app.extensions.setdefault(_KNOWN, {})
    key = (state, token)
    found = known.get(key)
    if found is not None and found[1] <= now and (found[2] is None or now < found[2]):
        return found[0]
    changes_at = words_change_at(state, now)
    parts = (_generation(), state.id, state.version, state.viewer_id, state.viewer_name,
             state.viewer_timezone, state.other_name, state.other_timezone, token, changes_at)
    tag = hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()
    # Remembered for the same row and token until the words may change: within [now,
    # changes_at) ``words_change_at`` gives the same instant (it is the first one at which
    # anything drawn may read otherwise), so the tag is the one computed here. The row is
    # read on every poll, so a write (a new version, name, zone) is a new key, never this tag.
    if len(known) >= _KNOWN_AT_MOST:
        known.clear()
    known[key] = (tag, now, changes_at)
    return tag


def _generation() -> str:
    """The code, templates and policy in force, so a deploy or a setting changed between two
    polls is never answered "not modified". Read once per process."""
    app = current_app._get_current_object()
    cached = app.extensions.get(_GENERATION)
    if cached is None:
        digest = hashlib.blake2b(repr(get_policy()).encode(), digest_size=16)
        package = Path(__file__).resolve().parent.parent
        for path in sorted(package.rglob("*")):
            if path.suffix in (".py", ".html"):
                digest.update(path.read_bytes())
        cached = app.extensions[_GENERATION] = digest.hexdigest()
    return cached
