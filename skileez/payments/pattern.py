"""Booking the rest of a contract at once: a weekly pattern, checked, booked, charged.

The student gives a weekday, a time in their own zone, a first date and a count. Each
start is that wall-clock time on successive weeks, converted to UTC with zoneinfo, so
a weekly 18:00 in Europe/Berlin stays 18:00 local across a DST change (its UTC hour
moves). Every start is checked against the slot engine; a taken one is offered the
nearest free time instead. Confirming books every chosen start with the normal
booking operation, in one transaction (all or nothing), and queues one off-session
charge of the saved card per payment.

It lives in payments because it needs the saved card; the booking itself is
``sessions.operations.book``, so each session is exactly what a single booking makes.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from skileez.coaches.availability import busy_window, calendar_arguments, open_starts
from skileez.core.errors import Conflict
from skileez.core.timezones import zone
from skileez.payments.cards import queue_saved_card_charges, saved_card_of
from skileez.sessions.operations import blocking_sessions, book

#: How far from a taken start the nearest free alternative is looked for, either way.
ALTERNATIVE_WINDOW = timedelta(days=3)


def weekly_starts(weekday: int, minute_of_day: int, first_day: date, count: int,
                  timezone: str) -> list[datetime]:
    """``count`` weekly starts (UTC) at a wall-clock time in ``timezone``.

    The first is on the first ``weekday`` (0 = Monday) on or after ``first_day``. Each
    is built from its local date and time, never by adding 7 × 24 hours to the last, so
    the local time holds across DST changes. A time that does not exist that day (the
    spring-forward gap) is read with the offset before the gap, as the slot engine reads
    coaches' hours (02:30 → 03:30); a repeated one takes its first occurrence.
    """
    local_zone = zone(timezone)
    day = first_day + timedelta(days=(weekday - first_day.weekday()) % 7)
    at = time(minute_of_day // 60, minute_of_day % 60)
    return [datetime.combine(day + timedelta(weeks=n), at, tzinfo=local_zone).astimezone(UTC)
            for n in range(count)]


@dataclass(frozen=True)
class PatternStart:
    """One week of the pattern: the start asked for, whether it is free, and if not the
    nearest free time (or None when nothing is free within ``ALTERNATIVE_WINDOW``)."""

    wanted: datetime
    free: bool
    alternative: datetime | None

    @property
    def chosen(self) -> datetime | None:
        """What the page ticks for this week: the time asked for when it is free. The
        nearest free time is offered unticked, since it can fall at night for the student."""
        return self.wanted if self.free else None


def preview(contract, student, starts: list[datetime]) -> list[PatternStart]:
    """Each start checked against the slot engine, in one read of the calendar.

    An alternative is the free start nearest to the one asked for that does not collide
    with another week's start (so taking every suggestion books no two at once).
    """
    if not starts:
        return []
    duration = timedelta(minutes=contract.duration_minutes)
    calendar = calendar_arguments(contract.coach, duration)
    first, last = min(starts) - ALTERNATIVE_WINDOW, max(starts) + ALTERNATIVE_WINDOW
    blocking = blocking_sessions(contract.coach_id, student.id,
                                 within=busy_window(calendar, first, last))
    open_now = open_starts(calendar, blocking, first, last + timedelta(seconds=1))
    free = set(open_now)
    gap = duration + calendar["buffer"]
    taken_by_pattern = sorted(start for start in starts if start in free)

    def collides(candidate: datetime) -> bool:
        index = bisect_left(taken_by_pattern, candidate - gap)
        return index < len(taken_by_pattern) and taken_by_pattern[index] < candidate + gap

    result = []
    for start in starts:
        if start in free:
            result.append(PatternStart(start, True, None))
            continue
        nearby = [candidate for candidate in open_now
                  if abs(candidate - start) <= ALTERNATIVE_WINDOW and not collides(candidate)]
        alternative = min(nearby, key=lambda c: (abs(c - start), c)) if nearby else None
        if alternative is not None:
            taken_by_pattern.append(alternative)
            taken_by_pattern.sort()
        result.append(PatternStart(start, False, alternative))
    return result


NO_SAVED_CARD = ("Save a card first: each session of the pattern is charged to it when "
                 "you confirm.")


def book_pattern(student, contract, starts: list[datetime]) -> list:
    """Book every start as a normal session, then queue each payment's charge.

    One transaction: the caller's unit of work (serialized on SQLite). A start taken
    meanwhile (or the contract filling up) raises ``Conflict`` from ``book`` and the
    unit of work rolls back every booking of the pattern. Returns the sessions.
    """
    card = saved_card_of(student)
    if card is None:
        raise Conflict(NO_SAVED_CARD)
    if not starts:
        raise Conflict("Choose at least one time to book.")
    if len(set(starts)) != len(starts):
        raise Conflict("Two of the chosen times are the same; choose another for one.")
    sessions = [book(student, contract.id, start) for start in sorted(starts)]
    queue_saved_card_charges([session.payment for session in sessions], card)
    return sessions
