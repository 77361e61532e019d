"""What sessions answer when a lower package asks: a coach's calendar is busy while booked."""

from __future__ import annotations

from skileez.coaches.slots import Interval
from skileez.core.events import listen
from skileez.sessions.operations import blocking_sessions, blocking_sessions_of_coaches


@listen("calendar_blocks_of_coaches")
def booked_time_of_coaches(*, coach_ids: list[int]) -> dict[int, list[Interval]]:
    return blocking_sessions_of_coaches(coach_ids)


@listen("calendar_blocks")
def booked_time(*, coach_id: int, student_id: int | None, exclude_session_id: int | None,
                within: Interval | None = None) -> list[Interval]:
    return blocking_sessions(coach_id, student_id, exclude_session_id, within=within)
