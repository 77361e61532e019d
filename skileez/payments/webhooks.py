"""Provider events, from Stripe's webhook or the test gateway's card page, handled once each.

The event id is inserted in the same transaction as the change it causes:
a repeat (Stripe retries, duplicate deliveries, five at once) finds the id
taken and changes nothing. Handlers are written so that any order works: a
failure reported after a success is ignored, a success after a failure wins.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from skileez.core.transitions import record_creation, transition
from skileez.extensions import db
from skileez.notifications.operations import notify
from skileez.payments.models import Dispute, Payment, WebhookEvent
from skileez.payments.operations import payment_failed, payment_succeeded


def _charge_id(intent: dict[str, Any]) -> str | None:
    charge = intent.get("latest_charge")
    if isinstance(charge, dict):
        return charge.get("id")
    if charge:
        return str(charge)
    charges = (intent.get("charges") or {}).get("data") or []
    return charges[0].get("id") if charges else None


def handle_event(event: dict[str, Any]) -> str:
    """Apply one event; the caller commits. Returns what happened, for logs and tests."""
    event_id, event_type = str(event.get("id") or ""), str(event.get("type") or "")
    if not event_id or not event_type:
        return "malformed"
    try:
        with db.session.begin_nested():
            db.session.add(WebhookEvent(id=event_id, type=event_type))
            db.session.flush()
    except IntegrityError:
        return "duplicate"
    obj = (event.get("data") or {}).get("object") or {}
    metadata = obj.get("metadata") or {}
    if event_type == "payment_intent.succeeded":
        return payment_succeeded(obj.get("id"), charge_id=_charge_id(obj),
                                 amount_minor=obj.get("amount_received") or obj.get("amount"),
                                 metadata=metadata)
    if event_type == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        return payment_failed(obj.get("id"), error.get("message"), metadata=metadata)
    if event_type == "charge.dispute.created":
        return _card_dispute(obj)
    if event_type == "charge.refunded":
        # Our own refunds are recorded when we ask for them; this confirms them.
        return "noted"
    return "ignored"


def _card_dispute(dispute: dict[str, Any]) -> str:
    """The cardholder disputed the charge with their bank: freeze the release for an admin."""
    charge_id, intent_id = dispute.get("charge"), dispute.get("payment_intent")
    payment = db.session.scalar(select(Payment).where(or_(
        Payment.charge_id == charge_id, Payment.payment_intent_id == intent_id)))
    if payment is None:
        return "unknown payment"
    if payment.status not in ("held", "partially_refunded"):
        return f"not in escrow ({payment.status}): for an admin to handle"
    transition(payment, "disputed", reason="card dispute opened at the bank",
               expected=payment.status)
    item = Dispute(payment_id=payment.id, source="stripe", status="open",
                   reason=f"Card dispute at the bank: {dispute.get('reason') or 'unspecified'}")
    db.session.add(item)
    db.session.flush()
    record_creation(item, reason="card dispute")
    notify(payment.coach, "dispute_opened", {
        "session_id": payment.session_id, "contract_title": payment.session.contract.title,
        "starts_at": payment.session.starts_at.isoformat(), "student_name": payment.student.name,
        "coach_name": payment.coach.name, "reason": item.reason, "dispute_id": item.id})
    return "disputed"
