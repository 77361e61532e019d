"""Saved cards: keeping a student's card at the provider, paying with it, charging it later.

A card is saved the way Stripe documents it: a Customer per student, a SetupIntent
for that customer confirmed by Stripe.js (``confirmCardSetup``), then the server
checks the SetupIntent is the student's and records the card it collected. The test
gateway has the same flow with its own card page. Nothing here commits: the network
calls run inside ``attempts.provider_call()`` (from a request) or ``ProviderAttempt``
(the off-session charge job), which own the commits around them.
"""

from __future__ import annotations

import uuid

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from skileez import clock
from skileez.core.errors import Conflict
from skileez.core.money import format_money
from skileez.core.queue import enqueue_after_commit, job
from skileez.core.transitions import record_creation, transition
from skileez.extensions import db
from skileez.notifications.operations import notify
from skileez.payments.attempts import ProviderAttempt
from skileez.payments.gateway import (
    AUTHENTICATION_REQUIRED,
    CardDeclined,
    GatewayError,
    IntentResult,
    get_gateway,
)
from skileez.payments.models import Payment, SavedCard, SavedCardCharge
from skileez.payments.operations import payment_can_be_paid, payment_failed, payment_succeeded
from skileez.policy import get_policy
from skileez.sessions import lifecycle
from skileez.sessions.models import Session


def card_record(student) -> SavedCard | None:
    """The student's card row (saved or removed), or None if they never saved one."""
    return db.session.scalar(select(SavedCard).where(SavedCard.student_id == student.id))


def saved_card_of(student) -> SavedCard | None:
    """The card the student can pay with now, on the gateway in use, or None."""
    record = card_record(student)
    if record is None or not record.is_saved or record.gateway != get_gateway().name:
        return None
    return record


def ensure_customer(student) -> SavedCard:
    """The student's row with a provider customer, created once (a network call: run it
    inside ``provider_call``). Two tabs racing: the unique student id keeps one row."""
    gateway = get_gateway()
    record = card_record(student)
    if record is not None and record.gateway == gateway.name:
        return record
    customer = gateway.create_customer(
        email=student.email, idempotency_key=f"customer-{student.id}-{gateway.name}",
        metadata={"student_id": str(student.id)})
    if record is not None:
        # Saved with another gateway (test mode before Stripe keys were set): start over.
        if record.status == "saved":
            transition(record, "removed", actor=student, reason="payment provider changed",
                       values={"payment_method_id": None})
        db.session.execute(update(SavedCard).where(SavedCard.id == record.id)
                           .values(gateway=gateway.name, customer_id=customer)
                           .execution_options(synchronize_session=False))
        db.session.refresh(record)
        return record
    record = SavedCard(student_id=student.id, gateway=gateway.name, customer_id=customer,
                       status="removed", created_at=clock.now())
    try:
        with db.session.begin_nested():
            db.session.add(record)
            db.session.flush()
    except IntegrityError:
        record = card_record(student)
        if record is None:
            raise
        return record
    record_creation(record, actor=student, reason="card holder created at the provider")
    return record


def setup_secret(student) -> str:
    """A SetupIntent's client secret for the card form (a network call, no write: before
    the first card the student has no customer yet, and the SetupIntent names them in
    its metadata; ``save_card`` creates the customer and attaches the card to it)."""
    record = card_record(student)
    gateway = get_gateway()
    customer = record.customer_id if record is not None and \
        record.gateway == gateway.name else None
    return gateway.create_setup_intent(
        idempotency_key=f"save-card-{student.id}-{uuid.uuid4().hex[:12]}",
        metadata={"student_id": str(student.id)}, customer=customer, keep=True)


def save_card(student, setup_intent_id: str) -> SavedCard:
    """Record the card a confirmed SetupIntent collected; it replaces any earlier card.

    Network calls (the SetupIntent and its card are read from the provider, so a forged
    id or another person's SetupIntent is refused there, not trusted from the page).
    """
    record = ensure_customer(student)
    details = get_gateway().saved_card_from_setup(setup_intent_id=setup_intent_id,
                                                  customer=record.customer_id,
                                                  student_id=student.id)
    previous = record.payment_method_id if record.is_saved else None
    transition(record, "saved", actor=student, expected=record.status,
               reason="card replaced" if previous else "card saved",
               values={"payment_method_id": details.payment_method_id,
                       "brand": details.brand, "last4": details.last4,
                       "exp_month": details.exp_month, "exp_year": details.exp_year})
    if previous and previous != details.payment_method_id:
        try:
            get_gateway().detach_payment_method(previous)
        except GatewayError as error:  # the new card is saved either way
            current_app.logger.warning("Could not detach replaced card %s: %s", previous,
                                       error.message)
    return record


def remove_card(student) -> None:
    """Detach the card at the provider, then forget it. Charges queued with it that have
    not run yet will find it gone and ask the student to pay by link instead."""
    record = card_record(student)
    if record is None or not record.is_saved:
        raise Conflict("You have no saved card.")
    if record.gateway == get_gateway().name:
        get_gateway().detach_payment_method(record.payment_method_id)
    transition(record, "removed", actor=student, expected="saved", reason="card removed",
               values={"payment_method_id": None, "brand": None, "last4": None,
                       "exp_month": None, "exp_year": None})


def _adopt_intent(payment: Payment, result: IntentResult) -> None:
    """The PaymentIntent just made with the saved card is now this payment's: the pay page
    (3-D Secure, a retry) and the webhook find the payment by it."""
    db.session.execute(
        update(Payment).where(Payment.id == payment.id,
                              Payment.status.in_(("pending", "failed")))
        .values(payment_intent_id=result.intent_id, client_secret=result.client_secret)
        .execution_options(synchronize_session=False))
    db.session.refresh(payment)


def _metadata(payment: Payment, **extra: str) -> dict[str, str]:
    return {"payment_id": str(payment.id), "session_id": str(payment.session_id),
            "student_id": str(payment.student_id), "coach_id": str(payment.coach_id),
            **extra}


def _on_session_key(payment: Payment, card: SavedCard) -> str:
    """One key per state of the payment: two clicks at once (or two tabs) read the same
    row and ask Stripe with the same key, so the card is charged once and both get that
    answer; a decline or an adopted intent changes the row, so the next try is new."""
    changed = payment.updated_at.timestamp() if payment.updated_at else 0.0
    return f"payment-{payment.id}-saved-{card.id}-{payment.status}-{changed:.6f}"


def pay_with_saved_card(payment: Payment, card: SavedCard) -> IntentResult:
    """The student, on the pay page, pays with their saved card (on-session).

    ``requires_action``: the page finishes 3-D Secure with Stripe.js. ``succeeded`` is
    recorded at once through the normal success path (the webhook then finds it done).
    A decline is recorded (the pay page shows it) and re-raised. Network call: run it
    inside ``provider_call(keep=(CardDeclined,))``.
    """
    can = payment_can_be_paid(payment)
    if not can:
        raise Conflict(can.reason)
    try:
        result = get_gateway().charge_saved_card(
            amount_minor=payment.amount_minor, currency=payment.currency,
            customer=card.customer_id, payment_method=card.payment_method_id,
            off_session=False,
            idempotency_key=_on_session_key(payment, card),
            metadata=_metadata(payment))
    except CardDeclined as error:
        payment_failed(payment.payment_intent_id, error.message,
                       metadata={"payment_id": str(payment.id)})
        raise
    _adopt_intent(payment, result)
    if result.status == "succeeded":
        payment_succeeded(result.intent_id, charge_id=result.charge_id,
                          amount_minor=result.amount_received,
                          metadata={"payment_id": str(payment.id)})
    return result


# --- off-session charges (booking the rest of a contract) ------------------------------------

def queue_saved_card_charges(payments: list[Payment], card: SavedCard) -> list[int]:
    """One charge row per payment and one job each, dispatched when the booking commits."""
    now = clock.now()
    ids = []
    for payment in payments:
        charge = SavedCardCharge(payment_id=payment.id, saved_card_id=card.id,
                                 payment_method_id=card.payment_method_id, status="pending",
                                 attempts=0, next_attempt_at=now, created_at=now)
        db.session.add(charge)
        db.session.flush()
        record_creation(charge, actor=payment.student, reason="saved card to be charged")
        enqueue_after_commit(charge_saved_card, charge.id, queue="payouts",
                             claim=(SavedCardCharge, charge.id))
        ids.append(charge.id)
    return ids


def _ask_student(charge: SavedCardCharge, expected: str, status: str, message: str,
                 intent_id: str | None = None) -> str:
    """The card could not be charged without the student: the session stays unpaid with a
    fresh pay window (the policy's hold, from this notice) and they are told, with a link."""
    now = clock.now()
    transition(charge, status, expected=expected,
               reason="the bank asks for the student" if status == "needs_action"
               else "saved card declined",
               values={"last_error": message[:1000], "claimed_until": None,
                       "next_attempt_at": None, "intent_id": intent_id or charge.intent_id})
    payment = charge.payment
    payment_failed(payment.payment_intent_id, message, metadata={"payment_id": str(payment.id)})
    session = payment.session
    hold_until = now + get_policy().payment_hold
    transition(session, "pending_payment", expected="pending_payment",
               reason="saved card not charged: the pay window starts again",
               where=(Session.hold_expires_at > now,),
               values={"hold_expires_at": max(hold_until, session.hold_expires_at)})
    notify(payment.student, "saved_card_not_charged", session.notification_payload(
        payment_id=payment.id, amount=format_money(payment.amount_minor, payment.currency),
        needs_action=status == "needs_action", reason=message,
        pay_until=session.hold_expires_at.isoformat()))
    return status


class SavedCardChargeAttempt(ProviderAttempt):
    """One payment of a pattern booking, charged to the saved card off-session, once.

    The idempotency key is the charge row, so a retry after a crash gets Stripe's first
    answer back. A refusal needing the student (SCA) or a decline is final for the job:
    recorded, the student told; a network failure is retried with backoff by the sweep.
    """

    model = SavedCardCharge
    finished = SavedCardCharge.FINISHED
    failure_reason = "saved card charge failed at provider"

    def blocked(self, charge: SavedCardCharge) -> str | None:
        payment = charge.payment
        if payment.is_funded or not lifecycle.awaits_payment(payment.session):
            transition(charge, "cancelled", expected=charge.status,
                       reason="payment settled before the card was charged",
                       values={"queued_until": None, "next_attempt_at": None})
            return "cancelled"
        card = charge.saved_card
        if not card.is_saved or card.payment_method_id != charge.payment_method_id:
            return _ask_student(charge, charge.status, "declined",
                                "Your saved card was removed before this session was "
                                "charged.")
        return None

    def ask(self, charge: SavedCardCharge):
        payment, card = charge.payment, charge.saved_card
        try:
            return get_gateway().charge_saved_card(
                amount_minor=payment.amount_minor, currency=payment.currency,
                customer=card.customer_id, payment_method=charge.payment_method_id,
                off_session=True, idempotency_key=f"saved-card-charge-{charge.id}",
                metadata=_metadata(payment, saved_card_charge_id=str(charge.id)))
        except GatewayError as error:
            if error.retryable and not isinstance(error, CardDeclined):
                raise  # network trouble: recorded as failed, retried with backoff
            return error  # the provider's answer: the student has to act

    def record(self, charge: SavedCardCharge, answer, expected: str) -> str:
        if isinstance(answer, GatewayError):
            needs = getattr(answer, "code", None) == AUTHENTICATION_REQUIRED
            return _ask_student(charge, expected, "needs_action" if needs else "declined",
                                answer.message if isinstance(answer, CardDeclined)
                                else "Your saved card could not be charged.")
        payment = charge.payment
        _adopt_intent(payment, answer)
        if answer.status == "requires_action":
            return _ask_student(charge, expected, "needs_action",
                                "Your bank asks you to confirm this payment.",
                                intent_id=answer.intent_id)
        if answer.status not in ("succeeded", "processing"):
            return _ask_student(charge, expected, "declined",
                                answer.error_message or "Your saved card was declined.",
                                intent_id=answer.intent_id)
        transition(charge, "succeeded", expected=expected, reason="saved card charged",
                   values={"intent_id": answer.intent_id, "last_error": None,
                           "claimed_until": None, "next_attempt_at": None})
        if answer.status == "succeeded":
            payment_succeeded(answer.intent_id, charge_id=answer.charge_id,
                              amount_minor=answer.amount_received,
                              metadata={"payment_id": str(payment.id)})
        return "succeeded"


@job
def charge_saved_card(charge_id: int) -> str:
    """Charge one pattern booking's payment to the saved card, off-session, exactly once.

    Re-checks its row first (finished, not due, another job calling out: nothing to do;
    the payment settled or its hold ended: cancelled), so a duplicate never charges twice.
    """
    return SavedCardChargeAttempt().run(charge_id)
