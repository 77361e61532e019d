"""Rules put into words: durations, shares and deadlines, as every page and email says them.

SPEC makes every number of the policy table overridable, so no sentence may
type "24 hours" or "full refund" itself: it asks these helpers to say the
policy value it states. One set of helpers also keeps the wording the same
everywhere ("24 hours" on the booking page and in the email, never "1 day"
on one and "24 h" on the other).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from skileez.core.timezones import format_local, humanize_delta

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def duration_words(span: timedelta, *, adjective: bool = False) -> str:
    """"15 minutes", "24 hours", "3 days"; with ``adjective``, "15-minute", "2-hour".

    Whole days are said in days from two days on, as ``humanize_delta`` counts
    them, so "24 hours" stays in hours (that is how people state a deadline)
    while a week reads "7 days". Anything that is not a whole unit falls back
    to the smaller one ("90 minutes", "36 hours") rather than mixing units.
    """
    seconds = max(int(span.total_seconds()), 0)
    if seconds >= 2 * _DAY and seconds % _DAY == 0:
        count, unit = seconds // _DAY, "day"
    elif seconds >= _HOUR and seconds % _HOUR == 0:
        count, unit = seconds // _HOUR, "hour"
    elif seconds >= _MINUTE or not seconds:
        # Rules are set in minutes; a remainder of seconds is not worth a word.
        count, unit = seconds // _MINUTE, "minute"
    else:
        count, unit = seconds, "second"
    if adjective:
        return f"{count}-{unit}"
    return _plural(count, unit)


def percent_words(share: Decimal | float | int) -> str:
    """A share of 1 as a percentage: Decimal("0.5") → "50%", Decimal("0.125") → "12.5%"."""
    percent = (Decimal(str(share)) * 100).normalize()
    text = f"{percent:f}"
    return f"{text}%"


def refund_words(share: Decimal | float | int) -> str:
    """"a full refund", "a 50% refund" or "no refund": what a refund share gives back.

    "Full" is said only when the policy share really is everything.
    """
    share = Decimal(str(share))
    if share >= 1:
        return "a full refund"
    if share <= 0:
        return "no refund"
    percent = percent_words(share)
    return f"{_article(percent)} {percent} refund"


def _article(number_text: str) -> str:
    """"an 80%", "an 11%", "a 50%": the article goes by how a percentage is said."""
    whole = number_text.split(".")[0].rstrip("%")
    return "an" if whole.startswith("8") or whole in ("11", "18") else "a"


def deadline_words(moment: datetime, tz_name: str | None, now: datetime | None = None) -> str:
    """"Tue 24 Nov 2026, 14:00 CET — in 26 hours": a deadline in the viewer's zone and
    how far it is from now, so nobody has to work out either."""
    return f"{format_local(moment, tz_name)} — {humanize_delta(moment, now)}"


def list_words(items) -> str:
    """["24 hours", "1 hour"] → "24 hours and 1 hour"; three or more take commas."""
    items = [str(item) for item in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
