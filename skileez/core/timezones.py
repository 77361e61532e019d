"""Showing UTC instants in a person's own time zone, always with the zone named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from skileez import clock

DEFAULT_TIMEZONE = "UTC"


@lru_cache(maxsize=1)
def all_timezones() -> tuple[str, ...]:
    """IANA names people can choose, sorted; legacy aliases like 'EST5EDT' left out."""
    names = {
        name for name in available_timezones()
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "posix/", "right/"))
    }
    names.add("UTC")
    return tuple(sorted(names))


def is_valid_timezone(name: str | None) -> bool:
    return bool(name) and name in set(all_timezones())


@lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def localize(instant: datetime, tz_name: str | None) -> datetime:
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(zone(tz_name))


def zone_label(local: datetime, tz_name: str | None) -> str:
    """'CET', 'EDT'… or the IANA name where the zone has no letters of its own ('+03')."""
    abbreviation = local.tzname() or ""
    if abbreviation and abbreviation[0].isalpha():
        return abbreviation
    return tz_name or DEFAULT_TIMEZONE


FORMATS = {
    "full": "%a %d %b %Y, %H:%M",   # Tue 24 Nov 2026, 14:00
    "short": "%a %d %b, %H:%M",     # Tue 24 Nov, 14:00
    "date": "%a %d %b %Y",
    "time": "%H:%M",
    "clock": "%H:%M",  # a bare wall-clock time, for lists whose heading names the zone
}


def format_local(instant: datetime | None, tz_name: str | None, style: str = "full") -> str:
    """An instant as the viewer reads it, e.g. 'Tue 24 Nov 2026, 14:00 CET'."""
    if instant is None:
        return ""
    local = localize(instant, tz_name)
    text = local.strftime(FORMATS.get(style, style))
    if style in ("date", "clock"):
        return text
    return f"{text} {zone_label(local, tz_name)}"


def humanize_delta(target: datetime, now: datetime | None = None) -> str:
    """'in 26 hours', '3 minutes ago': how far an instant is from now, roughly."""
    now = now or clock.now()
    delta = target - now
    future = delta >= timedelta(0)
    seconds = abs(delta.total_seconds())
    if seconds < 60:
        return "just now" if not future or seconds < 1 else "in less than a minute"
    if seconds < 3600:
        n = int(seconds // 60)
        amount = f"{n} minute{'s' if n != 1 else ''}"
    elif seconds < 48 * 3600:
        n = int(seconds // 3600)
        amount = f"{n} hour{'s' if n != 1 else ''}"
    else:
        n = int(seconds // 86400)
        amount = f"{n} days"
    return f"in {amount}" if future else f"{amount} ago"


_MICROSECOND = timedelta(microseconds=1)


def humanize_changes_at(target: datetime, now: datetime | None = None) -> datetime:
    """The first instant after ``now`` at which ``humanize_delta(target)`` may read otherwise.

    The words count whole units of the distance (seconds near the moment, then minutes,
    hours, days), so they change only where the distance crosses a whole number of the
    unit in use. Ahead of ``target`` the distance shrinks: "in 3 hours" lasts while 3 to
    4 hours are left, up to and including 3 hours exactly, so the next words begin one
    microsecond later. Behind it, "3 hours ago" begins at exactly 3 hours. A page that
    says a distance is the same until then, so a validator of it can include this.
    """
    now = now or clock.now()
    seconds = (target - now).total_seconds()
    if seconds >= 60:
        unit = 60 if seconds < 3600 else 3600 if seconds < 48 * 3600 else 86400
        whole = timedelta(seconds=unit * int(seconds // unit))
        return target - whole + _MICROSECOND
    if seconds >= 1:  # "in less than a minute", down to the last second
        return target - timedelta(seconds=1) + _MICROSECOND
    if seconds >= 0:
        # The last second ahead and the first minute after both say "just now".
        return target + timedelta(minutes=1)
    elapsed = -seconds
    unit = 60 if elapsed < 3600 else 3600 if elapsed < 48 * 3600 else 86400
    return target + timedelta(seconds=unit * (int(elapsed // unit) + 1))
