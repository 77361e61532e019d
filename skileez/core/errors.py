"""Errors that carry a message meant for the person who caused them."""

from __future__ import annotations


class DomainError(Exception):
    """A rule was broken; ``message`` is shown to the user as it is.

    ``field`` names the form field the message belongs beside, when there is one.
    """

    status_code = 422

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class Conflict(DomainError):
    """The action is not legal in the object's current state, or a race was lost.

    Shown as 409: nothing was changed and retrying the same request will not help
    until the situation changes.
    """

    status_code = 409
