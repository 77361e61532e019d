"""Provider events, from Stripe's webhook or the test gateway's card page, handled once each.

The event id is inserted in the same transaction as the change it causes:
a repeat (Stripe retries, duplicate deliveries, five at once) finds the id
taken and changes nothing. Handlers are written so that any order works: a
failure reported after a success is ignored, a success after a failure wins.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError, OperationalError

from skileez.core.db import is_lock_conflict
from skileez.core.errors import Conflict
from skileez.core.transitions import record_creation, transition
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.notifications.operations import notify
from skileez.payments.models import Dispute, Payment, WebhookEvent
from skileez.payments.operations import payment_failed, payment_succeeded


def _charge_id(intent: dict[str, Any]) -> str | None:
    charge = intent.get("latest_charge")
    if isinstance(charge, dict):
        return charge.get("id")
    if charge:
        return charge
    charges = intent.get("charges")
    data = charges.get("data") if isinstance(charges, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    return first.get("id") if isinstance(first, dict) else None


# Our payment ids are PostgreSQL integers; a bigger number is no payment of ours.
_MAX_ROW_ID = 2**31 - 1


class MalformedEvent(ValueError):
    """A correctly signed event we cannot read (wrong shapes, impossible ids).

    ``receive`` records it, so a retry of the same event is a duplicate, and the
    webhook answers 400: never a 500, which Stripe would retry for days.
    """


def _id_or_none(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 255:
        raise MalformedEvent(f"{what} is not an id")
    return value


def _read_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if metadata is None or metadata == "":
        return {}
    if not isinstance(metadata, dict):
        raise MalformedEvent("metadata is not an object")
    payment_id = metadata.get("payment_id")
    if payment_id not in (None, ""):
        text = str(payment_id) if isinstance(payment_id, str | int) and \
            not isinstance(payment_id, bool) else ""
        if not (text.isdigit() and text.isascii() and int(text) <= _MAX_ROW_ID):
            raise MalformedEvent("metadata.payment_id is not one of our payment ids")
    return metadata


def _amount(obj: dict[str, Any]) -> int | None:
    for name in ("amount_received", "amount"):
        value = obj.get(name)
        if value in (None, 0):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**62:
            raise MalformedEvent(f"{name} is not an amount")
        return value
    return None


def _record(event_id: str, event_type: str, outcome: str | None = None) -> bool:
    """Claim the event id; False if it was already processed (or is being, right now)."""
    try:
        with db.session.begin_nested():
            db.session.add(WebhookEvent(id=event_id[:255], type=event_type[:100],
                                        outcome=outcome))
            db.session.flush()
    except IntegrityError:
        return False
    return True


# A delivery that lost a race with a concurrent one is run again this many times.
LOST_RACE_RETRIES = 2


def receive(event: dict[str, Any]) -> str:
    """One delivery of a provider event, as the webhook's own unit of work.

    It owns its transactions because Stripe must get an answer it will not
    retry for days. A delivery that lost a race with a concurrent one for the
    same object (a ``Conflict``, the event id or a unique row taken, a lock
    conflict) rolls back and runs again on a fresh transaction, where it finds
    the winner's effect in place and changes nothing; a real database failure,
    or a race lost every time, is raised.
    """
    for _ in range(LOST_RACE_RETRIES):
        try:
            return _apply(event)
        except (Conflict, IntegrityError, OperationalError) as error:
            if isinstance(error, OperationalError) and not _lost_race(error):
                raise
    return _apply(event)


def _apply(event: dict[str, Any]) -> str:
    """Handle the event and commit; an unreadable one is recorded as refused, then raised."""
    try:
        with transaction():
            return handle_event(event)
    except MalformedEvent as error:
        with transaction():
            _record(event["id"], event["type"], outcome=f"rejected: {error}")
        raise


def _lost_race(error: OperationalError) -> bool:
    return is_lock_conflict(error) or "database is locked" in str(error.orig)


def handle_event(event: dict[str, Any]) -> str:
    """Apply one event; the caller commits. Returns what happened, for logs and tests.

    Raises ``MalformedEvent`` when it cannot be read, before changing anything.
    """
    event_id, event_type = event.get("id"), event.get("type")
    if not (isinstance(event_id, str) and event_id and isinstance(event_type, str)
            and event_type):
        return "malformed"
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        raise MalformedEvent("data.object is not an object")
    metadata = _read_metadata(obj)
    if event_type.startswith("payment_intent."):
        intent_id = _id_or_none(obj.get("id"), "the PaymentIntent id")
        charge_id = _id_or_none(_charge_id(obj), "the charge id")
        amount = _amount(obj)
    elif event_type == "charge.dispute.created":
        _id_or_none(obj.get("charge"), "the charge id")
        _id_or_none(obj.get("payment_intent"), "the PaymentIntent id")
    if not _record(event_id, event_type):
        return "duplicate"
    if event_type == "payment_intent.succeeded":
        return payment_succeeded(intent_id, charge_id=charge_id, amount_minor=amount,
                                 metadata=metadata)
    if event_type == "payment_intent.payment_failed":
        error = obj.get("last_payment_error")
        message = error.get("message") if isinstance(error, dict) else None
        return payment_failed(intent_id, message if isinstance(message, str) else None,
                              metadata=metadata)
    if event_type == "charge.dispute.created":
        return _card_dispute(obj)
    if event_type == "charge.refunded":
        # Our own refunds are recorded when we ask for them; this confirms them.
        return "noted"
    return "ignored"


def _card_dispute(dispute: dict[str, Any]) -> str:
    """The cardholder disputed the charge with their bank: freeze the release for an admin."""
    charge_id, intent_id = dispute.get("charge"), dispute.get("payment_intent")
    # Only ids that are there: "== None" would match every payment that has no intent yet.
    matches = [column == value for column, value in ((Payment.charge_id, charge_id),
                                                     (Payment.payment_intent_id, intent_id))
               if isinstance(value, str) and value]
    payment = db.session.scalar(select(Payment).where(or_(*matches)).limit(1)) \
        if matches else None
    if payment is None:
        return "unknown payment"
    if not payment.is_in_undisputed_escrow:
        return f"not in escrow ({payment.status}): for an admin to handle"
    transition(payment, "disputed", reason="card dispute opened at the bank",
               expected=payment.status)
    item = Dispute(payment_id=payment.id, source="stripe", status="open",
                   reason=f"Card dispute at the bank: {dispute.get('reason') or 'unspecified'}")
    db.session.add(item)
    db.session.flush()
    record_creation(item, reason="card dispute")
    notify(payment.coach, "dispute_opened",
           payment.session.notification_payload(reason=item.reason, dispute_id=item.id))
    return "disputed"
