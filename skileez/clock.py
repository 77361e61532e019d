"""The only source of the current time.

Deadlines, windows and reminders are all compared against ``now()``, so tests
freeze and move time here instead of sleeping. The frozen value is process
wide on purpose: a live server thread in a browser test sees the same clock as
the test that froze it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_frozen: datetime | None = None


def now() -> datetime:
    """Current time, timezone-aware, in UTC."""
    with _lock:
        if _frozen is not None:
            return _frozen
    return datetime.now(UTC)


def freeze(at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError("freeze() needs an aware datetime")
    global _frozen
    with _lock:
        _frozen = at.astimezone(UTC)


def advance(delta: timedelta) -> datetime:
    global _frozen
    with _lock:
        if _frozen is None:
            raise RuntimeError("advance() only works on a frozen clock")
        _frozen = _frozen + delta
        return _frozen


def unfreeze() -> None:
    global _frozen
    with _lock:
        _frozen = None


def is_frozen() -> bool:
    return _frozen is not None
