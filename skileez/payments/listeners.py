"""What payments do when a session changes: the money half of the book-and-pay saga.

Sessions know nothing of payments (payments sit above them in the layers); they
announce what happened through ``skileez.core.events`` and these listeners move the
money in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from skileez.core.events import listen
from skileez.core.money import share
from skileez.extensions import db
from skileez.payments.operations import (
    create_payment,
    payment_abandoned,
    refund,
    schedule_release,
)


@listen("session_booked")
def open_payment(*, session, contract) -> None:
    create_payment(session, contract)


@listen("hold_expired")
def abandon_payment(*, session, notice: str = "booking_expired") -> None:
    if session.payment is not None:
        payment_abandoned(session.payment, notice=notice)


@listen("session_closed")
def settle_escrow(*, session, refund_share: Decimal | int, actor, reason: str,
                  release_from: datetime) -> int:
    """Refund the student's share of what escrow holds; release the rest on schedule.

    Returns what was refunded, in minor units (the session's message quotes it).
    """
    payment = session.payment
    if payment is None or not payment.is_in_undisputed_escrow:
        return 0
    refunded = share(payment.remaining_minor, refund_share)
    if refunded:
        refund(payment, refunded, actor=actor, reason=reason)
        db.session.refresh(payment)
    if payment.remaining_minor:
        # What is not refunded goes to the coach on the normal schedule.
        schedule_release(payment, completed_at=release_from)
    return refunded
