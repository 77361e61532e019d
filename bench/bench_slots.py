"""How fast the slot engine answers for a busy coach.

The booking page lists a whole horizon and the directory asks every coach on
the page for a next slot, both on each request, so both must stay far below
the 50 ms budget for a realistic calendar: 60 days ahead, 8 hours a day,
500 sessions already booked.
"""

from __future__ import annotations

import random
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from skileez.coaches.slots import Interval, WeeklyRule, next_open_slot, open_slots

HORIZON_DAYS = 60
SESSIONS = 500
RUNS = 20
REPEATS = 5


def per_call_ms(call: Callable[[], object]) -> float:
    """Best of a few rounds: the machine is shared, and noise only ever adds time."""
    return min(timeit.repeat(call, number=RUNS, repeat=REPEATS)) / RUNS * 1e3


def busy_coach() -> dict[str, Any]:
    """A Berlin coach, Mon-Sun 09:00-17:00, whose 60 days straddle the March DST change."""
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
    session = timedelta(minutes=60)
    # Fixed seed: the figures must be comparable between runs.
    rng = random.Random(20260302)
    berlin = ZoneInfo("Europe/Berlin")
    first_day = now.astimezone(berlin).date()
    blocking = []
    for _ in range(SESSIONS):
        # Sessions sit in working hours on the half hour, local time, as real bookings do.
        day = first_day + timedelta(days=rng.randrange(HORIZON_DAYS))
        local_start = datetime.combine(day, time(9), tzinfo=berlin) + timedelta(
            minutes=30 * rng.randrange(15))
        start = local_start.astimezone(UTC)
        blocking.append(Interval(start, start + session))
    return {
        "rules": [WeeklyRule(weekday, 9 * 60, 17 * 60) for weekday in range(7)],
        "timezone": "Europe/Berlin",
        "time_off": [],
        "blocking": blocking,
        "buffer": timedelta(minutes=15),
        "notice": timedelta(hours=12),
        "horizon": timedelta(days=HORIZON_DAYS),
        "duration": session,
        "now": now,
        "range_start": now,
        "range_end": now + timedelta(days=HORIZON_DAYS),
        "step": timedelta(minutes=30),
    }


def main() -> None:
    arguments = busy_coach()
    label = f"{HORIZON_DAYS} days × 8 h, {SESSIONS} sessions"

    found = open_slots(**arguments)
    listing = per_call_ms(lambda: open_slots(**arguments))
    print(f"   open_slots, {label}: {listing:.2f} ms per call "
          f"({len(found)} slots)")

    first = next_open_slot(**arguments)
    if first != found[0]:
        raise RuntimeError(f"next_open_slot gave {first}, open_slots starts at {found[0]}")
    search = per_call_ms(lambda: next_open_slot(**arguments))
    print(f"   next_open_slot, {label}: {search:.2f} ms per call "
          f"(first {first:%Y-%m-%d %H:%M} UTC)")
