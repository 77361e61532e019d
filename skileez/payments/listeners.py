"""What payments do when a session changes: the money half of the book-and-pay saga.

Sessions know nothing of payments (payments sit above them in the layers); they
announce what happened through ``skileez.core.events`` and these listeners move the
money in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from skileez.core.events import listen
from skileez.payments.operations import create_payment, payments_abandoned, settle_escrows


@listen("session_booked")
def open_payment(*, session, contract) -> None:
    create_payment(session, contract)


@listen("holds_expired")
def abandon_payments(*, sessions, notice: str = "booking_expired") -> None:
    payments_abandoned(sessions, notice=notice)


@listen("sessions_closed")
def settle_escrow(*, sessions, refund_share: Decimal | int, actor, reason: str,
                  release_from: datetime) -> int:
    """Refund each student's share of what escrow holds; release the rest on schedule.

    Returns what was refunded in all, in minor units (a session's message quotes it).
    """
    return settle_escrows(sessions, refund_share, actor=actor, reason=reason,
                          release_from=release_from)
