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


def _arguments(coach, settings: tuple[dict, dict, dict], duration: timedelta,
               ignore_notice: bool = False) -> dict:
    """The slot engine's arguments for one coach, all but the busy time (``blocking``)."""
    profiles, rules, time_off = settings
    profile = profiles.get(coach.id)
    return {
        "rules": rules[coach.id],
        "timezone": coach.timezone,
        "time_off": time_off[coach.id],
        "buffer": timedelta(minutes=profile.buffer_minutes if profile else 0),
        "notice": timedelta(0) if ignore_notice
        else timedelta(hours=profile.min_notice_hours if profile else 0),
        "horizon": timedelta(days=profile.horizon_days if profile else 60),
        "duration": duration,
        "now": clock.now(),
        "step": get_policy().slot_step,
    }


def calendar_arguments(coach, duration: timedelta, ignore_notice: bool = False) -> dict:
    """What the slot engine needs besides the busy time: rules, time off and settings.

    Nothing here is serialized by the coach's calendar lock (changing hours or time off
    never takes it), so a booking reads these before taking the lock and asks for the
    busy time separately (``busy_window``, ``open_starts``).
    """
    # A page that loaded the coach with its profile has it already: not read again.
    loaded = "coach_profile" not in inspect(coach).unloaded
    profiles = {coach.id: coach.coach_profile} if loaded else None
    return _arguments(coach, _settings([coach.id], profiles), duration, ignore_notice)


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
        arguments = _arguments(coach, settings, durations[coach])
        now = arguments["now"]
        found[coach.id] = next_open_slot(range_start=now, range_end=now + arguments["horizon"],
                                         blocking=blocking[coach.id],
                                         **arguments) if arguments["rules"] else None
    return found
