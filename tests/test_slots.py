"""The slot engine against its documented semantics.

Examples pin each constraint at its exact boundary and the DST behaviour on
the 2026 change days; Hypothesis properties then compare the engine with a
deliberately naive reference (expand every rule, walk every grid point, check
every constraint against every interval), on random and on heavily booked
calendars, so any shortcut the engine takes -- merging, binary search, grid
jumping, week-by-week search -- must give the same answer as the slow,
obvious computation.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skileez.coaches.slots import (
    Interval,
    WeeklyRule,
    availability_intervals,
    next_open_slot,
    open_slots,
)

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EVERY_DAY = range(7)


def at(zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       fold: int = 0) -> datetime:
    """A local wall-clock time as the UTC instant it denotes."""
    local = datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)
    return local.astimezone(UTC)


def local_midnight(zone: str, day: date) -> datetime:
    return at(zone, day.year, day.month, day.day)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def rule(weekday: int, start: str, end: str) -> WeeklyRule:
    def minutes(text: str) -> int:
        hours, mins = text.split(":")
        return int(hours) * 60 + int(mins)

    return WeeklyRule(weekday, minutes(start), minutes(end))


def slots(**overrides: Any) -> list[datetime]:
    """open_slots with permissive defaults, so each test states only what it is about."""
    return open_slots(**_arguments(overrides))


def _arguments(overrides: dict[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "rules": [rule(0, "09:00", "17:00")],
        "timezone": "UTC",
        "time_off": [],
        "blocking": [],
        "buffer": timedelta(0),
        "notice": timedelta(0),
        "horizon": timedelta(days=365),
        "duration": timedelta(minutes=60),
        "now": utc(2026, 1, 1),
        # 2 March 2026 is a Monday.
        "range_start": utc(2026, 3, 2),
        "range_end": utc(2026, 3, 3),
        "step": timedelta(minutes=30),
    }
    arguments.update(overrides)
    return arguments


def local_times(starts: list[datetime], zone: str) -> list[str]:
    return [start.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M") for start in starts]


def hhmm(starts: list[datetime]) -> list[str]:
    return [start.strftime("%H:%M") for start in starts]


# --- DST -------------------------------------------------------------------------------

MORNING_LOCAL = ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]


@pytest.mark.parametrize(
    ("zone", "change_day", "utc_hour_before", "utc_hour_after"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 8, 7),
        ("Europe/Berlin", date(2026, 10, 25), 7, 8),
        ("America/New_York", date(2026, 3, 8), 14, 13),
        ("America/New_York", date(2026, 11, 1), 13, 14),
    ],
)
def test_morning_rule_keeps_local_time_across_dst(
    zone: str, change_day: date, utc_hour_before: int, utc_hour_after: int,
) -> None:
    # The changes happen at night, so the change day itself already has the new offset.
    days = {change_day - DAY: utc_hour_before, change_day: utc_hour_after,
            change_day + DAY: utc_hour_after}
    found = slots(
        rules=[rule(weekday, "09:00", "12:00") for weekday in EVERY_DAY],
        timezone=zone,
        duration=timedelta(minutes=30),
        range_start=local_midnight(zone, change_day - DAY),
        range_end=local_midnight(zone, change_day + 2 * DAY),
    )
    expected_local = [f"{day:%m-%d} {time}" for day in days for time in MORNING_LOCAL]
    assert local_times(found, zone) == expected_local
    expected_utc = [
        datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + offset * 30 * MINUTE
        for day, hour in days.items()
        for offset in range(6)
    ]
    assert found == expected_utc


@pytest.mark.parametrize(
    ("zone", "change_day", "real_start", "real_end"),
    [
        # 02:00 does not exist; fold=0 reads it with the winter offset, i.e. 03:00 summer time.
        ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),
        ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)),
    ],
)
def test_nonexistent_local_time_lands_after_the_gap(
    zone: str, change_day: date, real_start: datetime, real_end: datetime,
) -> None:
    sunday = [rule(6, "02:00", "04:00")]
    day_start = local_midnight(zone, change_day)
    intervals = availability_intervals(sunday, zone, day_start, day_start + DAY)
    assert intervals == [Interval(real_start, real_end)]
    assert real_end - real_start == HOUR

    found = slots(rules=sunday, timezone=zone, duration=timedelta(minutes=30),
                  range_start=day_start, range_end=day_start + DAY)
    assert local_times(found, zone) == [f"{change_day:%m-%d} 03:00", f"{change_day:%m-%d} 03:30"]

    # 02:30 itself becomes 03:30 summer time.
    half_past = availability_intervals([rule(6, "02:30", "04:00")], zone, day_start,
                                       day_start + DAY)
    assert local_times([half_past[0].start], zone) == [f"{change_day:%m-%d} 03:30"]


@pytest.mark.parametrize(
    ("zone", "change_day", "repeated_hour"),
    [
        ("Europe/Berlin", date(2026, 10, 25), 2),
        ("America/New_York", date(2026, 11, 1), 1),
    ],
)
def test_repeated_local_time_takes_its_first_occurrence(
    zone: str, change_day: date, repeated_hour: int,
) -> None:
    sunday = [WeeklyRule(6, repeated_hour * 60, (repeated_hour + 1) * 60)]
    y, m, d = change_day.year, change_day.month, change_day.day
    day_start = at(zone, y, m, d)
    first_occurrence = at(zone, y, m, d, repeated_hour, fold=0)
    end_after_change = at(zone, y, m, d, repeated_hour + 1)
    intervals = availability_intervals(sunday, zone, day_start, day_start + DAY)
    assert intervals == [Interval(first_occurrence, end_after_change)]
    assert end_after_change - first_occurrence == 2 * HOUR

    found = slots(rules=sunday, timezone=zone, duration=timedelta(minutes=30),
                  range_start=day_start, range_end=day_start + DAY)
    assert found == [first_occurrence + n * 30 * MINUTE for n in range(4)]
    # Local clock reads :00, :30, then the same two again after falling back.
    assert [s.astimezone(ZoneInfo(zone)).strftime("%H:%M") for s in found] == [
        f"{repeated_hour:02d}:00", f"{repeated_hour:02d}:30",
    ] * 2


def test_end_of_day_means_next_local_midnight() -> None:
    # Saturday 28 March: the following midnight is still winter time in Berlin.
    intervals = availability_intervals([rule(5, "22:00", "24:00")], "Europe/Berlin",
                                       utc(2026, 3, 28), utc(2026, 3, 29))
    assert intervals == [Interval(utc(2026, 3, 28, 21), utc(2026, 3, 28, 23))]


@pytest.mark.parametrize(
    ("zone", "monday", "utc_day", "expected_start"),
    [
        # Monday 09:00 at +14 is Sunday 19:00 UTC.
        ("Pacific/Kiritimati", rule(0, "09:00", "10:00"), utc(2026, 3, 1), utc(2026, 3, 1, 19)),
        # Monday 20:00 at -11 is Tuesday 07:00 UTC.
        ("Pacific/Pago_Pago", rule(0, "20:00", "21:00"), utc(2026, 3, 3), utc(2026, 3, 3, 7)),
    ],
)
def test_zones_far_from_utc_find_rules_on_the_neighbouring_utc_day(
    zone: str, monday: WeeklyRule, utc_day: datetime, expected_start: datetime,
) -> None:
    found = slots(rules=[monday], timezone=zone, range_start=utc_day,
                  range_end=utc_day + DAY)
    assert found == [expected_start]


# --- Each constraint at its boundary ----------------------------------------------------

MONDAY = (2026, 3, 2)


def test_slot_must_fit_inside_its_availability_interval() -> None:
    assert hhmm(slots(rules=[rule(0, "09:00", "10:30")])) == ["09:00", "09:30"]


def test_touching_rules_keep_their_own_grids_and_duplicates_collapse() -> None:
    touching = [rule(0, "09:00", "10:15"), rule(0, "10:15", "12:00")]
    assert hhmm(slots(rules=touching, duration=30 * MINUTE)) == [
        "09:00", "09:30", "10:15", "10:45", "11:15",
    ]
    nested = [rule(0, "09:00", "11:00"), rule(0, "09:00", "10:00")]
    assert hhmm(slots(rules=nested)) == ["09:00", "09:30", "10:00"]


@pytest.mark.parametrize(
    ("off_start", "off_end", "ten_oclock_open"),
    [
        ((11, 0), (12, 0), True),    # time off starts exactly when the slot ends
        ((10, 59), (12, 0), False),  # one minute earlier
        ((9, 0), (10, 0), True),     # time off ends exactly when the slot starts
        ((9, 0), (10, 1), False),    # one minute later
    ],
)
def test_time_off_boundary(off_start: tuple[int, int], off_end: tuple[int, int],
                           ten_oclock_open: bool) -> None:
    off = Interval(utc(*MONDAY, *off_start), utc(*MONDAY, *off_end))
    found = slots(time_off=[off], range_start=utc(*MONDAY, 10), range_end=utc(*MONDAY, 10, 1))
    assert (found == [utc(*MONDAY, 10)]) is ten_oclock_open


@pytest.mark.parametrize(
    ("session_start", "session_end", "ten_oclock_open"),
    [
        ((11, 15), (12, 15), True),   # slot ends exactly `buffer` before the session
        ((11, 14), (12, 14), False),  # one minute closer
        ((8, 45), (9, 45), True),     # slot starts exactly `buffer` after the session
        ((8, 46), (9, 46), False),    # one minute closer
    ],
)
def test_buffer_boundary(session_start: tuple[int, int], session_end: tuple[int, int],
                         ten_oclock_open: bool) -> None:
    session = Interval(utc(*MONDAY, *session_start), utc(*MONDAY, *session_end))
    found = slots(blocking=[session], buffer=15 * MINUTE,
                  range_start=utc(*MONDAY, 10), range_end=utc(*MONDAY, 10, 1))
    assert (found == [utc(*MONDAY, 10)]) is ten_oclock_open


def test_notice_boundary() -> None:
    now = utc(*MONDAY, 7, 17, 0)  # deliberately off the grid
    exactly = slots(now=now, notice=timedelta(hours=2, minutes=43))
    assert exactly[0] == utc(*MONDAY, 10)
    one_second_late = slots(now=now, notice=timedelta(hours=2, minutes=43, seconds=1))
    assert one_second_late[0] == utc(*MONDAY, 10, 30)


def test_horizon_boundary() -> None:
    now = utc(2026, 3, 1, 0, 0, 0)
    exactly = slots(now=now, horizon=timedelta(days=1, hours=12))
    assert exactly[-1] == utc(*MONDAY, 11)  # ends at 12:00, exactly now + horizon
    one_second_short = slots(now=now, horizon=timedelta(days=1, hours=12) - timedelta(seconds=1))
    assert one_second_short[-1] == utc(*MONDAY, 10, 30)


def test_range_start_is_inclusive_and_range_end_exclusive() -> None:
    found = slots(range_start=utc(*MONDAY, 10), range_end=utc(*MONDAY, 12))
    assert hhmm(found) == ["10:00", "10:30", "11:00", "11:30"]
    assert slots(range_start=utc(*MONDAY, 12), range_end=utc(*MONDAY, 12)) == []


def test_a_session_inside_a_longer_one_does_not_shorten_it() -> None:
    long_session = Interval(utc(*MONDAY, 9), utc(*MONDAY, 13))
    inside = Interval(utc(*MONDAY, 10), utc(*MONDAY, 11))
    holiday_morning = Interval(utc(*MONDAY, 0), utc(*MONDAY, 12))
    assert slots(blocking=[long_session, inside])[0] == utc(*MONDAY, 13)
    assert slots(time_off=[holiday_morning], blocking=[inside])[0] == utc(*MONDAY, 12)


def test_availability_intervals_are_sorted_whatever_the_rule_order() -> None:
    afternoon_first = [rule(0, "13:00", "17:00"), rule(0, "09:00", "12:00")]
    intervals = availability_intervals(afternoon_first, "UTC", utc(*MONDAY), utc(2026, 3, 3))
    assert intervals == [Interval(utc(*MONDAY, 9), utc(*MONDAY, 12)),
                         Interval(utc(*MONDAY, 13), utc(*MONDAY, 17))]


def test_availability_intervals_overlap_the_range_and_are_not_clipped() -> None:
    rules = [rule(0, "09:00", "12:00"), rule(0, "09:00", "12:01"), rule(0, "20:00", "21:00")]
    intervals = availability_intervals(rules, "UTC", utc(*MONDAY, 12), utc(*MONDAY, 20))
    assert intervals == [Interval(utc(*MONDAY, 9), utc(*MONDAY, 12, 1))]


def test_default_day_is_the_full_grid() -> None:
    found = slots()
    assert len(found) == 15  # 09:00 ... 16:00
    assert hhmm(found[:2]) == ["09:00", "09:30"] and hhmm(found[-1:]) == ["16:00"]
    assert all(start.tzinfo is UTC for start in found)


# --- Validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"now": datetime(2026, 3, 1)},
        {"range_start": datetime(2026, 3, 2)},
        {"range_end": datetime(2026, 3, 3)},
        {"duration": timedelta(0)},
        {"step": timedelta(0)},
        {"step": -MINUTE},
        {"buffer": -MINUTE},
        {"notice": -MINUTE},
        {"timezone": "Mars/Olympus_Mons"},
    ],
)
def test_bad_arguments_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        slots(**overrides)
    with pytest.raises(ValueError):
        next_open_slot(**_arguments(overrides))


@pytest.mark.parametrize(
    "build",
    [
        lambda: WeeklyRule(7, 0, 60),
        lambda: WeeklyRule(0, 600, 600),
        lambda: WeeklyRule(0, 0, 1441),
        lambda: WeeklyRule(0, -1, 60),
        lambda: Interval(datetime(2026, 3, 2), utc(2026, 3, 3)),
        lambda: Interval(utc(2026, 3, 3), utc(2026, 3, 3)),
    ],
)
def test_bad_rules_and_intervals_are_refused(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


def test_intervals_given_in_another_zone_are_stored_in_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    interval = Interval(datetime(2026, 3, 29, 1, 30, tzinfo=berlin),
                        datetime(2026, 3, 29, 3, 30, tzinfo=berlin))
    assert interval.start == utc(2026, 3, 29, 0, 30) and interval.start.tzinfo is UTC
    assert interval.end - interval.start == HOUR  # real time, not wall-clock difference


# --- next_open_slot --------------------------------------------------------------------


def test_next_open_slot_searches_past_fully_booked_weeks() -> None:
    weekdays = [rule(weekday, "09:00", "17:00") for weekday in range(5)]
    holiday = Interval(utc(2026, 3, 1), utc(2026, 3, 25, 12))
    arguments = _arguments({
        "rules": weekdays, "time_off": [holiday], "now": utc(2026, 3, 1),
        "range_start": utc(2026, 3, 1), "range_end": utc(2026, 6, 1),
    })
    assert next_open_slot(**arguments) == utc(2026, 3, 25, 12)
    assert next_open_slot(**arguments) == open_slots(**arguments)[0]


def test_next_open_slot_takes_the_earliest_of_interleaved_grids() -> None:
    # The day rule's grid is blocked until 10:30, but the overlapping 10:15 rule is free at 10:15.
    arguments = _arguments({
        "rules": [rule(0, "09:00", "17:00"), rule(0, "10:15", "11:15")],
        "blocking": [Interval(utc(*MONDAY, 9), utc(*MONDAY, 10, 15))],
    })
    assert next_open_slot(**arguments) == utc(*MONDAY, 10, 15)
    assert hhmm(open_slots(**arguments)[:2]) == ["10:15", "10:30"]


def test_next_open_slot_is_none_when_nothing_is_open() -> None:
    everything_off = Interval(utc(2025, 1, 1), utc(2027, 1, 1))
    arguments = _arguments({"time_off": [everything_off], "range_start": utc(2026, 1, 1),
                            "range_end": utc(2026, 12, 31)})
    assert open_slots(**arguments) == []
    assert next_open_slot(**arguments) is None
    assert next_open_slot(**_arguments({"rules": []})) is None


# --- Property: the engine equals a brute-force reference --------------------------------

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # half-hour DST shift
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "UTC",
]
# Windows that straddle the 2026 DST changes of the zones above, and one that does not.
ANCHORS = [
    utc(2026, 3, 26), utc(2026, 10, 22),  # Europe
    utc(2026, 3, 5), utc(2026, 10, 29),   # United States
    utc(2026, 4, 1), utc(2026, 10, 1),    # Lord Howe
    utc(2026, 6, 15),
]
FIVE_MINUTES = 5 * MINUTE


@st.composite
def weekly_rules(draw: st.DrawFn) -> WeeklyRule:
    weekday = draw(st.integers(0, 6))
    start_quarter = draw(st.integers(0, 95))
    # Mostly working-day lengths, sometimes slivers shorter than a slot.
    length = draw(st.one_of(st.integers(12, 64), st.integers(1, 12)))
    end_quarter = min(96, start_quarter + length)
    return WeeklyRule(weekday, start_quarter * 15, end_quarter * 15)


@st.composite
def intervals_near(draw: st.DrawFn, origin: datetime, max_length: timedelta) -> Interval:
    start = origin + draw(st.integers(-288, 11 * 288)) * FIVE_MINUTES
    length = draw(st.integers(1, max_length // FIVE_MINUTES)) * FIVE_MINUTES
    return Interval(start, start + length)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    origin = draw(st.sampled_from(ANCHORS)) + draw(st.integers(0, 24 * 60)) * MINUTE
    # Seconds, so that `now` is usually off the grid.
    now = origin + draw(st.integers(0, 2 * 24 * 3600)) * timedelta(seconds=1)
    # Half the time the page covers the whole horizon, as on the booking page.
    range_start, range_end = draw(st.one_of(
        st.just((now - DAY, now + 11 * DAY)),
        st.tuples(st.integers(-DAY // MINUTE, 3 * DAY // MINUTE),
                  st.integers(0, 8 * DAY // MINUTE)).map(
            lambda offsets: (now + offsets[0] * MINUTE,
                             now + (offsets[0] + offsets[1]) * MINUTE)),
    ))
    return {
        "rules": draw(st.lists(weekly_rules(), min_size=1, max_size=4)),
        "timezone": draw(st.sampled_from(ZONES)),
        "blocking": draw(st.lists(intervals_near(origin, 4 * HOUR), max_size=20)),
        "time_off": draw(st.lists(intervals_near(origin, DAY), max_size=3)),
        "buffer": draw(st.integers(0, 12)) * FIVE_MINUTES,
        "notice": draw(st.integers(0, 48 * 60)) * MINUTE,
        "horizon": draw(st.integers(24 * 60, 10 * 24 * 60)) * MINUTE,
        "duration": draw(st.integers(3, 48)) * FIVE_MINUTES,
        "step": draw(st.sampled_from([15, 30, 60])) * MINUTE,
        "now": now,
        "range_start": range_start,
        "range_end": range_end,
    }


@st.composite
def busy_calendars(draw: st.DrawFn) -> dict[str, Any]:
    """A coach available every day and booked often, so conflicts decide most slots.

    Fully random scenarios are mostly empty (one short rule, a long notice);
    this one makes sure buffers, merging and the binary search are exercised.
    """
    scenario = draw(scenarios())
    now = scenario["now"]
    daily = []
    for weekday in range(7):
        start_quarter = draw(st.integers(24, 48))
        daily.append(WeeklyRule(weekday, start_quarter * 15,
                                min(96, start_quarter + draw(st.integers(16, 48))) * 15))
    session_starts = st.integers(0, 10 * 288).map(lambda n: now + n * FIVE_MINUTES)
    session_lengths = st.integers(3, 36).map(lambda n: n * FIVE_MINUTES)
    sessions = draw(st.lists(st.tuples(session_starts, session_lengths), min_size=5,
                             max_size=40))
    scenario.update(
        rules=daily + draw(st.lists(weekly_rules(), max_size=2)),
        blocking=[Interval(start, start + length) for start, length in sessions],
        notice=draw(st.integers(0, 12 * 60)) * MINUTE,
        horizon=draw(st.integers(3 * 24 * 60, 10 * 24 * 60)) * MINUTE,
    )
    return scenario


def reference_windows(rules: list[WeeklyRule], zone_name: str, around: datetime,
                      ) -> list[tuple[datetime, datetime]]:
    """Every rule occurrence on every local date within three weeks of `around`."""
    zone = ZoneInfo(zone_name)
    windows = []
    for day_offset in range(-7, 28):
        day = (around + day_offset * DAY).date()
        for weekly in rules:
            if weekly.weekday != day.weekday():
                continue
            start = datetime(day.year, day.month, day.day, weekly.start_minute // 60,
                             weekly.start_minute % 60, tzinfo=zone)
            if weekly.end_minute == 1440:
                following = day + DAY
                end = datetime(following.year, following.month, following.day, tzinfo=zone)
            else:
                end = datetime(day.year, day.month, day.day, weekly.end_minute // 60,
                               weekly.end_minute % 60, tzinfo=zone)
            start, end = start.astimezone(UTC), end.astimezone(UTC)
            if end > start:
                windows.append((start, end))
    return windows


def reference_slots(scenario: dict[str, Any]) -> list[datetime]:
    duration, now = scenario["duration"], scenario["now"]
    buffer = scenario["buffer"]
    found = set()
    for window_start, window_end in reference_windows(scenario["rules"], scenario["timezone"],
                                                      now):
        start = window_start
        while start + duration <= window_end:
            end = start + duration
            if (
                start >= now + scenario["notice"]
                and end <= now + scenario["horizon"]
                and scenario["range_start"] <= start < scenario["range_end"]
                and not any(start < off.end and end > off.start
                            for off in scenario["time_off"])
                and not any(start < session.end + buffer and end > session.start - buffer
                            for session in scenario["blocking"])
            ):
                found.add(start)
            start += scenario["step"]
    return sorted(found)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_open_slots_equal_brute_force(scenario: dict[str, Any]) -> None:
    found = open_slots(**scenario)
    duration, buffer, now = scenario["duration"], scenario["buffer"], scenario["now"]

    assert all(start.tzinfo is UTC for start in found)
    assert all(earlier < later for earlier, later in pairwise(found))
    windows = reference_windows(scenario["rules"], scenario["timezone"], now)
    for start in found:
        end = start + duration
        # (a) clear of time off and of buffer-expanded sessions
        assert not any(start < off.end and end > off.start for off in scenario["time_off"])
        assert not any(start < session.end + buffer and end > session.start - buffer
                       for session in scenario["blocking"])
        # (b) inside one availability interval, on that interval's grid
        assert any(a <= start and end <= b and (start - a) % scenario["step"] == timedelta(0)
                   for a, b in windows)
        # (c) notice, horizon and range
        assert start >= now + scenario["notice"]
        assert end <= now + scenario["horizon"]
        assert scenario["range_start"] <= start < scenario["range_end"]
    # (d) complete: nothing the naive walk finds is missing, and nothing extra
    assert found == reference_slots(scenario)


@settings(max_examples=200, deadline=None)
@given(busy_calendars())
def test_open_slots_equal_brute_force_on_busy_calendars(scenario: dict[str, Any]) -> None:
    assert open_slots(**scenario) == reference_slots(scenario)


@settings(max_examples=200, deadline=None)
@given(st.one_of(scenarios(), busy_calendars()))
def test_next_open_slot_is_the_first_open_slot(scenario: dict[str, Any]) -> None:
    found = open_slots(**scenario)
    assert next_open_slot(**scenario) == (found[0] if found else None)
