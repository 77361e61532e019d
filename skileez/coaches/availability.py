"""Feeding the slot engine from the database.

``slots.py`` is pure; this module loads a coach's rules, time off, settings and
blocking sessions and asks it for open times.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from skileez import clock
from skileez.auth.models import User
from skileez.coaches.models import AvailabilityRule, CoachProfile, TimeOff
from skileez.coaches.slots import Interval, WeeklyRule, next_open_slot, open_slots
from skileez.core.events import announce
from skileez.extensions import db
from skileez.policy import get_policy


def blocking_intervals(coach_id: int, student_id: int | None = None,
                       exclude_session_id: int | None = None,
                       within: Interval | None = None) -> list[Interval]:
    """Time the coach (or the student) is already busy, from whoever books it.

    ``within`` keeps only what overlaps that span (None: everything still ahead), so a
    week's page or one booking reads the sessions near it, not a popular coach's year.
    Sessions build on coaches, not the other way round, so sessions answer this
    through the event table (``skileez.sessions.listeners``) instead of being imported.
    """
    answers = announce("calendar_blocks", coach_id=coach_id, student_id=student_id,
                       exclude_session_id=exclude_session_id, within=within)
    return [interval for answer in answers for interval in answer]


def calendar_arguments(coach, duration: timedelta, ignore_notice: bool = False) -> dict:
    """What the slot engine needs besides the busy time: rules, time off and settings.

    Nothing here is serialized by the coach's calendar lock (changing hours or time off
    never takes it), so a booking reads these before taking the lock and only the busy
    time under it (``busy_window``, ``open_starts``).
    """
    # The settings and the weekly hours in one statement (a row per rule, or one row of
    # NULL hours), from the coach's own row so a coach without a profile still has hours.
    rows = db.session.execute(
        select(CoachProfile.buffer_minutes, CoachProfile.min_notice_hours,
               CoachProfile.horizon_days, AvailabilityRule.weekday,
               AvailabilityRule.start_minute, AvailabilityRule.end_minute)
        .select_from(User)
        .outerjoin(CoachProfile, CoachProfile.user_id == User.id)
        .outerjoin(AvailabilityRule, AvailabilityRule.coach_id == User.id)
        .where(User.id == coach.id)).all()
    settings = rows[0] if rows else None
    rules = [WeeklyRule(row.weekday, row.start_minute, row.end_minute)
             for row in rows if row.weekday is not None]
    now = clock.now()
    time_off = [Interval(starts_at, ends_at) for starts_at, ends_at in db.session.execute(
        select(TimeOff.starts_at, TimeOff.ends_at).where(TimeOff.coach_id == coach.id,
                                                         TimeOff.ends_at > now))]
    # A coach without a profile row yet: no buffer, no notice, a 60-day horizon.
    buffer, notice, horizon = ((0, 0, 60) if settings is None or settings.horizon_days is None
                               else settings[:3])
    return {
        "rules": rules,
        "timezone": coach.timezone,
        "time_off": time_off,
        "buffer": timedelta(minutes=buffer),
        "notice": timedelta(0) if ignore_notice else timedelta(hours=notice),
        "horizon": timedelta(days=horizon),
        "duration": duration,
        "now": now,
        "step": get_policy().slot_step,
    }


def busy_window(arguments: dict, range_start: datetime, range_end: datetime) -> Interval:
    """The only time whose sessions can close a start in [range_start, range_end): a slot
    starting there ends by range_end + duration, and keeps the buffer clear either side."""
    margin = arguments["buffer"]
    return Interval(range_start - margin, range_end + arguments["duration"] + margin)


def open_starts(arguments: dict, blocking: list[Interval], range_start: datetime,
                range_end: datetime) -> list[datetime]:
    """Open starts in the range, given the calendar's arguments and its busy time there."""
    if not arguments["rules"]:
        return []
    return open_slots(range_start=range_start, range_end=range_end, blocking=blocking,
                      **arguments)


def coach_open_slots(coach, duration: timedelta, range_start: datetime, range_end: datetime,
                     student_id: int | None = None, exclude_session_id: int | None = None,
                     ignore_notice: bool = False) -> list[datetime]:
    """Open starts.

    ``exclude_session_id`` lets a session being moved ignore its own time;
    ``ignore_notice`` drops the coach's minimum booking notice, which governs new
    bookings, not moving an agreed session (that has its own one-hour rule).
    """
    arguments = calendar_arguments(coach, duration, ignore_notice)
    if not arguments["rules"]:
        return []
    blocking = blocking_intervals(coach.id, student_id, exclude_session_id,
                                  within=busy_window(arguments, range_start, range_end))
    return open_starts(arguments, blocking, range_start, range_end)


def coach_next_open_slot(coach, duration: timedelta) -> datetime | None:
    arguments = calendar_arguments(coach, duration)
    if not arguments["rules"]:
        return None
    now = arguments["now"]
    return next_open_slot(range_start=now, range_end=now + arguments["horizon"],
                          blocking=blocking_intervals(coach.id), **arguments)
