"""The slot engine: which start times a coach can still be booked at.

Everything here is a pure function of its arguments -- no database, no Flask,
and no reading of the clock (``now`` is a parameter) -- so the rules below can
be tested exhaustively, including against a brute-force reference, and the
same answer comes out in a request, a background job or a benchmark.

Semantics, and why:

* **Grid.** A coach's weekly rule becomes, on each local date, one real
  availability interval [A, B) in UTC. Candidate starts are A, A + step,
  A + 2·step, ... while candidate + duration <= B. The grid is anchored on the
  coach's own start time because students see "09:00, 09:30" in the coach's
  zone, not whatever that happens to be in UTC. Rules that overlap or touch on
  the same day are *not* merged: merging would silently move the grid of the
  second rule (10:15-12:00 next to 09:00-10:15 would yield 10:30 instead of
  10:15). Each rule keeps its own grid and identical starts are deduplicated.
* **Fit.** A slot [s, s + duration) lies entirely inside one availability
  interval; the grid guarantees it, so a 60-minute slot in 09:00-10:30 can
  start at 09:00 or 09:30 only.
* **Conflicts.** A slot must not overlap any time-off interval, and must keep
  ``buffer`` clear on both sides of every blocking interval (a booked session):
  it conflicts when s < b.end + buffer and s + duration > b.start - buffer.
  Intervals are half-open, so a slot ending exactly where time off (or a
  buffer) starts is fine -- back-to-back bookings are the normal case.
* **Notice and horizon.** The start must be >= now + notice (the coach needs
  time to prepare) and the end <= now + horizon (coaches do not want bookings
  too far ahead). The start must also lie in [range_start, range_end), which is
  the page of the calendar being shown.
* **DST.** Local wall-clock times are interpreted with ``fold=0`` and every
  result is normalised with ``astimezone(UTC)``. A rule of 09:00-12:00 in
  Europe/Berlin therefore stays 09:00-12:00 local across both changes (its UTC
  time moves by an hour), which is what the coach means by "mornings". A local
  time that does not exist (spring-forward gap, e.g. 02:30 on the last Sunday
  of March in Berlin) is read with the offset in force before the gap, which
  lands it *after* the gap (02:30 -> 03:30 CEST): a rule of 02:00-04:00 on that
  day covers only the real 03:00-04:00, because the hour 02:00-03:00 never
  happens. A repeated local time (autumn fall-back) takes its first occurrence,
  so 02:00-03:00 on the October change day runs from the first 02:00 (CEST) to
  03:00 CET: two real hours, since the coach is present for all of them. An
  end of 1440 minutes is local midnight of the next day. Should an occurrence
  come out with end <= start after conversion (only possible with unusual
  transitions), it is skipped rather than guessed at.
* **Expansion window.** Rules are expanded for every local date from one day
  before to one day after the window needed, measured in the coach's zone:
  zones such as Pacific/Kiritimati (+14) and Pacific/Pago_Pago (-11) put a
  local date's availability almost a whole day away from the UTC date.

Blocking intervals (buffer-expanded) and time off are sorted and merged once,
then each candidate is checked with a binary search, so a 60-day page with
hundreds of sessions stays in the low milliseconds.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTES_PER_DAY = 1440
_ONE_DAY = timedelta(days=1)
_SEARCH_CHUNK = timedelta(days=7)

__all__ = [
    "Interval",
    "WeeklyRule",
    "availability_intervals",
    "next_open_slot",
    "open_slots",
]


@dataclass(frozen=True)
class WeeklyRule:
    """One recurring block of availability, in the coach's own wall-clock time.

    Minutes after local midnight rather than ``time`` objects, because the end
    of a day (1440, the next midnight) has no ``time`` value.
    """

    weekday: int
    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), not {self.weekday}")
        if not 0 <= self.start_minute < MINUTES_PER_DAY:
            raise ValueError(f"start_minute must be 0..1439, not {self.start_minute}")
        if not 0 < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError(f"end_minute must be 1..1440, not {self.end_minute}")
        if self.end_minute <= self.start_minute:
            raise ValueError("end_minute must be after start_minute")


@dataclass(frozen=True)
class Interval:
    """A half-open span of real time [start, end).

    Both ends are stored in UTC even when given in another zone, so that
    adding a buffer is absolute-time arithmetic and never wall-clock
    arithmetic (which Python applies to datetimes sharing a ZoneInfo).
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _as_utc(self.start, "Interval.start"))
        object.__setattr__(self, "end", _as_utc(self.end, "Interval.end"))
        if self.end <= self.start:
            raise ValueError("Interval.end must be after Interval.start")


def availability_intervals(
    rules: Sequence[WeeklyRule],
    timezone: str,
    range_start: datetime,
    range_end: datetime,
) -> list[Interval]:
    """The rules as real intervals overlapping [range_start, range_end).

    Intervals are not clipped to the range, because clipping would move the
    grid origin away from the coach's start time; nor merged, for the same
    reason (see the module docstring). Sorted by start, then end.
    """
    zone = _zone(timezone)
    window_start = _as_utc(range_start, "range_start")
    window_end = _as_utc(range_end, "range_end")
    return [
        Interval(start, end)
        for start, end in _expand(_by_weekday(rules), zone, window_start, window_end)
    ]


def open_slots(
    *,
    rules: Sequence[WeeklyRule],
    timezone: str,
    time_off: Sequence[Interval],
    blocking: Sequence[Interval],
    buffer: timedelta,
    notice: timedelta,
    horizon: timedelta,
    duration: timedelta,
    now: datetime,
    range_start: datetime,
    range_end: datetime,
    step: timedelta = timedelta(minutes=30),
) -> list[datetime]:
    """Open start times (aware UTC datetimes, sorted ascending, no duplicates)."""
    query = _Query.build(
        rules=rules, timezone=timezone, time_off=time_off, blocking=blocking, buffer=buffer,
        notice=notice, horizon=horizon, duration=duration, now=now,
        range_start=range_start, range_end=range_end, step=step,
    )
    if query.earliest_start >= query.start_before:
        return []
    windows = _expand(query.rules_by_weekday, query.zone, query.earliest_start,
                      query.start_before)
    starts: set[datetime] = set()
    for window in windows:
        starts.update(query.open_starts_in(window, query.earliest_start, query.start_before))
    return sorted(starts)


def next_open_slot(
    *,
    rules: Sequence[WeeklyRule],
    timezone: str,
    time_off: Sequence[Interval],
    blocking: Sequence[Interval],
    buffer: timedelta,
    notice: timedelta,
    horizon: timedelta,
    duration: timedelta,
    now: datetime,
    range_start: datetime,
    range_end: datetime,
    step: timedelta = timedelta(minutes=30),
) -> datetime | None:
    """The first open slot, or None.

    A directory page shows this for every coach, so rather than listing a
    whole horizon it expands one week at a time and stops at the first week
    with anything open; the conflict index is built only once.
    """
    query = _Query.build(
        rules=rules, timezone=timezone, time_off=time_off, blocking=blocking, buffer=buffer,
        notice=notice, horizon=horizon, duration=duration, now=now,
        range_start=range_start, range_end=range_end, step=step,
    )
    chunk_start = query.earliest_start
    while chunk_start < query.start_before:
        chunk_end = min(chunk_start + _SEARCH_CHUNK, query.start_before)
        # Grids of overlapping rules interleave, so the earliest first start wins.
        first_per_window = (
            next(query.open_starts_in(window, chunk_start, chunk_end), None)
            for window in _expand(query.rules_by_weekday, query.zone, chunk_start, chunk_end)
        )
        found = [start for start in first_per_window if start is not None]
        if found:
            return min(found)
        chunk_start = chunk_end
    return None


@dataclass(frozen=True)
class _BusyIndex:
    """Merged, sorted busy intervals, so a conflict check is one binary search.

    Because merged intervals are disjoint, their ends are sorted too, and the
    only interval that can overlap a slot is the first one ending after the
    slot starts.
    """

    starts: list[datetime]
    ends: list[datetime]

    @classmethod
    def merge(cls, spans: Iterable[tuple[datetime, datetime]]) -> _BusyIndex:
        starts: list[datetime] = []
        ends: list[datetime] = []
        for start, end in sorted(spans):
            if ends and start <= ends[-1]:
                if end > ends[-1]:
                    ends[-1] = end
            else:
                starts.append(start)
                ends.append(end)
        return cls(starts, ends)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        index = bisect_right(self.ends, start)
        return index < len(self.starts) and self.starts[index] < end


@dataclass(frozen=True)
class _Query:
    """Validated, UTC-normalised arguments shared by open_slots and next_open_slot."""

    rules_by_weekday: dict[int, list[WeeklyRule]]
    zone: ZoneInfo
    busy: _BusyIndex
    duration: timedelta
    step: timedelta
    earliest_start: datetime
    start_before: datetime
    latest_end: datetime

    @classmethod
    def build(
        cls,
        *,
        rules: Sequence[WeeklyRule],
        timezone: str,
        time_off: Sequence[Interval],
        blocking: Sequence[Interval],
        buffer: timedelta,
        notice: timedelta,
        horizon: timedelta,
        duration: timedelta,
        now: datetime,
        range_start: datetime,
        range_end: datetime,
        step: timedelta,
    ) -> _Query:
        if duration <= timedelta(0):
            raise ValueError("duration must be positive")
        if step <= timedelta(0):
            raise ValueError("step must be positive")
        if buffer < timedelta(0):
            raise ValueError("buffer must not be negative")
        if notice < timedelta(0):
            raise ValueError("notice must not be negative")
        if horizon < timedelta(0):
            raise ValueError("horizon must not be negative")
        now = _as_utc(now, "now")
        range_start = _as_utc(range_start, "range_start")
        range_end = _as_utc(range_end, "range_end")
        latest_end = now + horizon
        busy = _BusyIndex.merge(
            [(off.start, off.end) for off in time_off]
            + [(session.start - buffer, session.end + buffer) for session in blocking]
        )
        return cls(
            rules_by_weekday=_by_weekday(rules),
            zone=_zone(timezone),
            busy=busy,
            duration=duration,
            step=step,
            earliest_start=max(range_start, now + notice),
            # Any start at or after this cannot end by the horizon or is off the page.
            start_before=min(range_end, latest_end - duration + timedelta.resolution),
            latest_end=latest_end,
        )

    def open_starts_in(
        self,
        window: tuple[datetime, datetime],
        earliest: datetime,
        start_before: datetime,
    ) -> Iterator[datetime]:
        """Open grid starts of one availability interval in [earliest, start_before)."""
        window_start, window_end = window
        candidate = window_start
        if candidate < earliest:
            # Jump straight to the first grid point at or after `earliest` (ceiling division).
            candidate += -((window_start - earliest) // self.step) * self.step
        end_limit = min(window_end, self.latest_end)
        while candidate < start_before and candidate + self.duration <= end_limit:
            if not self.busy.overlaps(candidate, candidate + self.duration):
                yield candidate
            candidate += self.step


def _expand(
    rules_by_weekday: dict[int, list[WeeklyRule]],
    zone: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
) -> list[tuple[datetime, datetime]]:
    """Rule occurrences as UTC (start, end) pairs overlapping [window_start, window_end)."""
    if window_end <= window_start or not rules_by_weekday:
        return []
    day = window_start.astimezone(zone).date() - _ONE_DAY
    last_day = window_end.astimezone(zone).date() + _ONE_DAY
    occurrences: list[tuple[datetime, datetime]] = []
    while day <= last_day:
        for rule in rules_by_weekday.get(day.weekday(), ()):
            start = _local_minute_to_utc(day, rule.start_minute, zone)
            end = _local_minute_to_utc(day, rule.end_minute, zone)
            if start < end and start < window_end and end > window_start:
                occurrences.append((start, end))
        day += _ONE_DAY
    occurrences.sort()
    return occurrences


def _local_minute_to_utc(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """Wall-clock minute of a local date, read with fold=0 (see the module docstring)."""
    days, minute_of_day = divmod(minute, MINUTES_PER_DAY)
    local = datetime.combine(day + timedelta(days=days),
                             time(minute_of_day // 60, minute_of_day % 60), tzinfo=zone)
    return local.astimezone(UTC)


def _by_weekday(rules: Sequence[WeeklyRule]) -> dict[int, list[WeeklyRule]]:
    grouped: dict[int, list[WeeklyRule]] = {}
    for rule in rules:
        grouped.setdefault(rule.weekday, []).append(rule)
    return grouped


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)
