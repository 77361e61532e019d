"""Deadline handlers for money: escrow releases, payouts and refunds that are due."""

from __future__ import annotations

from sqlalchemy import and_, exists, or_, select

from skileez import clock
from skileez.coaches.models import CoachProfile
from skileez.core.deadlines import act_on_each, deadline_handler, due
from skileez.core.queue import dispatch_claimed
from skileez.payments.cards import charge_saved_card
from skileez.payments.chargebacks import funds_held_by_bank, repay_coach, reverse_transfer
from skileez.payments.models import (
    Dispute,
    Payment,
    Payout,
    Refund,
    Repayment,
    SavedCardCharge,
    TransferReversal,
)
from skileez.payments.operations import execute_refund, pay_out, release


def _unclaimed(model, now) -> tuple:
    """No job waiting in a queue for the row, and none calling out for it right now."""
    return (or_(model.queued_until.is_(None), model.queued_until <= now),
            or_(model.claimed_until.is_(None), model.claimed_until <= now))


@deadline_handler("release_escrow")
def release_escrow() -> int:
    """Payments whose release time has come and that nobody disputes."""
    payments = due(
        select(Payment).where(
            Payment.status.in_(Payment.UNDISPUTED_ESCROW_STATES),
            Payment.release_at.is_not(None), Payment.release_at <= clock.now(),
            ~exists().where(Dispute.payment_id == Payment.id, Dispute.status == "open"))
        .order_by(Payment.release_at))
    return act_on_each(payments, lambda payment: release(
        payment, reason="released automatically after completion"))


@deadline_handler("pay_out")
def pay_out_due() -> int:
    """Payouts never attempted, failed ones due for a retry, and balances now payable."""
    now = clock.now()
    connected = exists().where(CoachProfile.user_id == Payout.coach_id,
                               CoachProfile.payouts_enabled.is_(True))
    due_ids = due(
        select(Payout.id).where(or_(
            and_(Payout.status.in_(("pending", "failed")), Payout.next_attempt_at <= now),
            and_(Payout.status == "payable", connected),
        ), ~funds_held_by_bank(Payout.payment_id), *_unclaimed(Payout, now))
        .order_by(Payout.id))
    return dispatch_claimed(pay_out, Payout, due_ids, queue="payouts")


@deadline_handler("retry_refunds")
def retry_refunds() -> int:
    now = clock.now()
    due_ids = due(
        select(Refund.id).where(Refund.status.in_(("pending", "failed")),
                                Refund.next_attempt_at <= now, *_unclaimed(Refund, now))
        .order_by(Refund.id))
    return dispatch_claimed(execute_refund, Refund, due_ids, queue="payouts")


@deadline_handler("retry_saved_card_charges")
def retry_saved_card_charges() -> int:
    """Off-session charges whose job never ran (Redis lost it) or failed on the network."""
    now = clock.now()
    due_ids = due(
        select(SavedCardCharge.id).where(SavedCardCharge.status.in_(("pending", "failed")),
                                         SavedCardCharge.next_attempt_at <= now,
                                         *_unclaimed(SavedCardCharge, now))
        .order_by(SavedCardCharge.id))
    return dispatch_claimed(charge_saved_card, SavedCardCharge, due_ids, queue="payouts")


@deadline_handler("retry_transfer_reversals")
def retry_transfer_reversals() -> int:
    """Transfer reversals never sent (their job was lost) or failed and due for a retry."""
    now = clock.now()
    due_ids = due(
        select(TransferReversal.id).where(
            TransferReversal.status.in_(("pending", "failed")),
            TransferReversal.next_attempt_at <= now, *_unclaimed(TransferReversal, now))
        .order_by(TransferReversal.id))
    return dispatch_claimed(reverse_transfer, TransferReversal, due_ids, queue="payouts")


@deadline_handler("repay_coaches")
def repay_coaches() -> int:
    """Repayments after a won chargeback never sent, failed and due, or payable now that
    the coach has a connected account (as ``pay_out_due``)."""
    now = clock.now()
    connected = exists().where(CoachProfile.user_id == Repayment.coach_id,
                               CoachProfile.payouts_enabled.is_(True))
    due_ids = due(
        select(Repayment.id).where(or_(
            and_(Repayment.status.in_(("pending", "failed")), Repayment.next_attempt_at <= now),
            and_(Repayment.status == "payable", connected),
        ), ~funds_held_by_bank(Repayment.payment_id), *_unclaimed(Repayment, now))
        .order_by(Repayment.id))
    return dispatch_claimed(repay_coach, Repayment, due_ids, queue="payouts")
