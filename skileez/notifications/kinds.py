"""What each kind of notification says, in the app and by email.

A kind's ``summary`` is the one line shown in the bell and the notifications
page; its email bodies live in ``templates/emails/<kind>.txt`` and ``.html``.
All are rendered from the payload, so the same notification reads the same
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    subject: str
    summary: str
    # Endpoint the notification links to; payload keys fill its arguments.
    endpoint: str | None = None
    endpoint_args: tuple[str, ...] = ()
    email: bool = True


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise LookupError(f"Unknown notification kind {name!r}") from None


register(Kind(
    name="welcome",
    subject="Welcome to Skileez, {{ recipient.name }}",
    summary="Welcome to Skileez! {% if payload.role == 'coach' %}Set up your offerings "
            "and availability so students can find you.{% else %}Find a coach and "
            "propose your first sessions.{% endif %}",
    endpoint="core.dashboard",
))
