"""The coach's "Held in escrow" list reads in time order.

Found by a tester: sessions not yet completed (no release time yet) were listed in the
order they were booked, so a Friday could come before a Wednesday.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tests.conftest import Client

WED = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
THU = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
FRI = datetime(2026, 3, 13, 9, 0, tzinfo=UTC)


def test_sessions_held_before_completion_are_listed_by_when_they_take_place(
        app, clock, coaching, paid_session):
    clock.freeze(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    for start in (FRI, WED, THU):  # booked out of order
        paid_session(coaching["student"], coaching["contract"], start)
    coach = Client(app)
    coach.login("clara@example.com")
    page = coach.get("/payments/").get_data(as_text=True)
    dates = re.findall(r'data-testid="escrow-session-date">(.*?)</span>', page, flags=re.S)
    days = [re.sub(r"<[^>]+>", "", date).split()[1] for date in dates]
    assert days == ["Wed", "Thu", "Fri"], days
