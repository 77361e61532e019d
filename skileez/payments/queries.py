"""Read-only money views: a coach's earnings."""

from __future__ import annotations

from sqlalchemy import select

from skileez.extensions import db
from skileez.payments.models import Payment, Payout


def coach_earnings(coach) -> dict:
    """Held (by release date), paid out, and payable balances, per currency."""
    held = list(db.session.scalars(
        select(Payment).where(Payment.coach_id == coach.id,
                              Payment.status.in_(Payment.ESCROW_STATES))
        .order_by(Payment.release_at.is_(None), Payment.release_at, Payment.id)))
    payouts = list(db.session.scalars(
        select(Payout).where(Payout.coach_id == coach.id)
        .order_by(Payout.created_at.desc(), Payout.id.desc()).limit(100)))
    totals: dict[str, dict[str, int]] = {}
    for payment in held:
        bucket = totals.setdefault(payment.currency, {"held": 0, "paid": 0, "payable": 0})
        bucket["held"] += payment.remaining_minor
    for payout in payouts:
        bucket = totals.setdefault(payout.currency, {"held": 0, "paid": 0, "payable": 0})
        if payout.status == "paid":
            bucket["paid"] += payout.amount_minor
        elif payout.status in ("payable", "pending", "failed"):
            bucket["payable"] += payout.amount_minor
    return {"held": held, "payouts": payouts, "totals": totals}
