"""Feeding the slot engine from the database.

``slots.py`` is pure; this module loads a coach's rules, time off, settings and
blocking sessions and asks it for open times.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from skileez import clock
from skileez.coaches.models import AvailabilityRule, CoachProfile, TimeOff
from skileez.coaches.slots import Interval, WeeklyRule, next_open_slot, open_slots
from skileez.core.events import announce
from skileez.extensions import db
from skileez.policy import get_policy


def blocking_intervals(coach_id: int, student_id: int | None = None,
                       exclude_session_id: int | None = None) -> list[Interval]:
    """Time the coach (or the student) is already busy, from whoever books it.

    Sessions build on coaches, not the other way round, so sessions answer this
    through the event table (``skileez.sessions.listeners``) instead of being imported.
    """
    answers = announce("calendar_blocks", coach_id=coach_id, student_id=student_id,
                       exclude_session_id=exclude_session_id)
    return [interval for answer in answers for interval in answer]


def _engine_arguments(coach, duration: timedelta, student_id: int | None = None,
                      exclude_session_id: int | None = None,
                      ignore_notice: bool = False) -> dict:
    profile = db.session.scalar(select(CoachProfile).where(CoachProfile.user_id == coach.id))
    rules = [WeeklyRule(rule.weekday, rule.start_minute, rule.end_minute)
             for rule in db.session.scalars(select(AvailabilityRule)
                                            .where(AvailabilityRule.coach_id == coach.id))]
    now = clock.now()
    time_off = [Interval(item.starts_at, item.ends_at)
                for item in db.session.scalars(select(TimeOff).where(
                    TimeOff.coach_id == coach.id, TimeOff.ends_at > now))]
    return {
        "rules": rules,
        "timezone": coach.timezone,
        "time_off": time_off,
        "blocking": blocking_intervals(coach.id, student_id, exclude_session_id),
        "buffer": timedelta(minutes=profile.buffer_minutes if profile else 0),
        "notice": timedelta(0) if ignore_notice
        else timedelta(hours=profile.min_notice_hours if profile else 0),
        "horizon": timedelta(days=profile.horizon_days if profile else 60),
        "duration": duration,
        "now": now,
        "step": get_policy().slot_step,
    }


def coach_open_slots(coach, duration: timedelta, range_start: datetime, range_end: datetime,
                     student_id: int | None = None, exclude_session_id: int | None = None,
                     ignore_notice: bool = False) -> list[datetime]:
    """Open starts.

    ``exclude_session_id`` lets a session being moved ignore its own time;
    ``ignore_notice`` drops the coach's minimum booking notice, which governs new
    bookings, not moving an agreed session (that has its own one-hour rule).
    """
    arguments = _engine_arguments(coach, duration, student_id, exclude_session_id,
                                  ignore_notice)
    if not arguments["rules"]:
        return []
    return open_slots(range_start=range_start, range_end=range_end, **arguments)


def coach_next_open_slot(coach, duration: timedelta) -> datetime | None:
    arguments = _engine_arguments(coach, duration)
    if not arguments["rules"]:
        return None
    now = arguments["now"]
    return next_open_slot(range_start=now, range_end=now + arguments["horizon"], **arguments)
