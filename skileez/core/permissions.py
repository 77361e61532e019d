"""Permission answers that carry the reason a person sees.

``can_<verb>(user)`` methods return a ``Decision``: truthy when allowed, and
otherwise holding the sentence the page shows instead of the button, so
templates explain rather than silently hide an action.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOWED = Decision(True)


def deny(reason: str) -> Decision:
    return Decision(False, reason)
