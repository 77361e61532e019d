"""In-process events: how a lower package tells a higher one, or asks it, without importing it.

The packages are layered (see ``[tool.importlinter]`` in pyproject.toml): a payment
belongs to a session, so payments import sessions and never the reverse; sessions
book a coach's time, so sessions import coaches. Yet booking a session must open its
payment, and a coach's open times depend on the sessions already booked. The lower
package names what happened (or what it needs to know) here; the higher package
listens. A listener runs at once, in the caller's transaction, so what it writes
commits or rolls back with the change that announced it.

Listeners register when their module is imported; the app factory imports every
listening module (``skileez.create_app`` → ``_connect_listeners``), so a worker, the
CLI and a test see the same table as a web request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

Listener = Callable[..., Any]
_listeners: dict[str, list[Listener]] = defaultdict(list)


def listen(name: str) -> Callable[[Listener], Listener]:
    """Register the decorated function for ``name``; registering it twice keeps one."""

    def register(fn: Listener) -> Listener:
        if fn not in _listeners[name]:
            _listeners[name].append(fn)
        return fn

    return register


def announce(name: str, **data: Any) -> list[Any]:
    """Call every listener of ``name`` in registration order; return their answers."""
    return [listener(**data) for listener in _listeners[name]]


def listeners(name: str) -> list[Listener]:
    return list(_listeners[name])
