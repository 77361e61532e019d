"""Feeding the slot engine from the database.

``slots.py`` is pure; this module loads a coach's rules, time off, settings and
blocking sessions and asks it for open times.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import inspect, select

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


def _settings(coach_ids: list[int], profiles: dict | None = None) -> tuple[dict, dict, dict]:
    """Profiles (unless given), weekly rules and coming time off of these coaches: three
    queries for any number of coaches (the directory asks for a page of them at once)."""
    if profiles is None:
        profiles = {profile.user_id: profile for profile in db.session.scalars(
            select(CoachProfile).where(CoachProfile.user_id.in_(coach_ids)))}
    rules: dict[int, list[WeeklyRule]] = {coach_id: [] for coach_id in coach_ids}
    for rule in db.session.scalars(select(AvailabilityRule)
                                   .where(AvailabilityRule.coach_id.in_(coach_ids))):
        rules[rule.coach_id].append(WeeklyRule(rule.weekday, rule.start_minute,
                                               rule.end_minute))
    time_off: dict[int, list[Interval]] = {coach_id: [] for coach_id in coach_ids}
    for item in db.session.scalars(select(TimeOff).where(
            TimeOff.coach_id.in_(coach_ids), TimeOff.ends_at > clock.now())):
        time_off[item.coach_id].append(Interval(item.starts_at, item.ends_at))
    return profiles, rules, time_off


def _arguments(coach, settings: tuple[dict, dict, dict], blocking: list[Interval],
               duration: timedelta, ignore_notice: bool = False) -> dict:
    profiles, rules, time_off = settings
    profile = profiles.get(coach.id)
    return {
        "rules": rules[coach.id],
        "timezone": coach.timezone,
        "time_off": time_off[coach.id],
        "blocking": blocking,
        "buffer": timedelta(minutes=profile.buffer_minutes if profile else 0),
        "notice": timedelta(0) if ignore_notice
        else timedelta(hours=profile.min_notice_hours if profile else 0),
        "horizon": timedelta(days=profile.horizon_days if profile else 60),
        "duration": duration,
        "now": clock.now(),
        "step": get_policy().slot_step,
    }


def _engine_arguments(coach, duration: timedelta, student_id: int | None = None,
                      exclude_session_id: int | None = None,
                      ignore_notice: bool = False) -> dict:
    # A page that loaded the coach with its profile has it already: not read again.
    loaded = "coach_profile" not in inspect(coach).unloaded
    profiles = {coach.id: coach.coach_profile} if loaded else None
    return _arguments(coach, _settings([coach.id], profiles),
                      blocking_intervals(coach.id, student_id, exclude_session_id),
                      duration, ignore_notice)


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


def coaches_next_open_slots(durations: dict) -> dict[int, datetime | None]:
    """``coach_next_open_slot`` for many coaches (``{coach: duration}``) in a fixed number
    of queries, whatever their number: the directory shows a page of them."""
    coaches = list(durations)
    ids = [coach.id for coach in coaches]
    if not ids:
        return {}
    # The directory loads each coach's profile with the page: not read a second time.
    settings = _settings(ids, {coach.id: coach.coach_profile for coach in coaches})
    answers = announce("calendar_blocks_of_coaches", coach_ids=ids)
    blocking: dict[int, list[Interval]] = {coach_id: [] for coach_id in ids}
    for answer in answers:
        for coach_id, intervals in answer.items():
            blocking[coach_id].extend(intervals)
    found = {}
    for coach in coaches:
        arguments = _arguments(coach, settings, blocking[coach.id], durations[coach])
        now = arguments["now"]
        found[coach.id] = next_open_slot(range_start=now, range_end=now + arguments["horizon"],
                                         **arguments) if arguments["rules"] else None
    return found
