"""Provider events, from Stripe's webhook or the test gateway's card page, handled once each.

The event id is inserted in the same transaction as the change it causes:
a repeat (Stripe retries, duplicate deliveries, five at once) finds the id
taken and changes nothing. Handlers are written so that any order works: a
failure reported after a success is ignored, a success after a failure wins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError, OperationalError

from skileez.core.db import autocommit_read, is_lock_conflict
from skileez.core.errors import Conflict
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.payments.chargebacks import BankDispute, apply_bank_dispute
from skileez.payments.gateway import GatewayError, get_gateway
from skileez.payments.models import Payment, Refund, WebhookEvent
from skileez.payments.operations import (
    confirm_own_refund,
    payment_failed,
    payment_succeeded,
    record_provider_refunds,
    record_unbooked_provider_refunds,
)


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
    event = _with_refunds_listed(event)
    for _ in range(LOST_RACE_RETRIES):
        try:
            return _apply(event)
        except (Conflict, IntegrityError, OperationalError) as error:
            if isinstance(error, OperationalError) and not _lost_race(error):
                raise
    return _apply(event)


class ProviderUnavailable(Exception):
    """What the event needs from Stripe could not be fetched: nothing was recorded, so
    the webhook answers 503 and Stripe's retry of the same event is handled in full."""


def _with_refunds_listed(event: dict[str, Any]) -> dict[str, Any]:
    """A ``charge.refunded`` event with every refund of its charge in the charge.

    Stripe's API versions since 2022-11-15 leave the list out of the event (and an
    embedded list may be cut short, ``has_more``), so it is asked for here, before any
    transaction is open: the webhook never waits on Stripe while holding a lock.
    """
    if event.get("type") != "charge.refunded":
        return event
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        return event
    listing = obj.get("refunds")
    complete = isinstance(listing, dict) and isinstance(listing.get("data"), list) \
        and not listing.get("has_more")
    charge_id = obj.get("id")
    if complete or not (isinstance(charge_id, str) and charge_id):
        return event
    matches = _charge_matches(charge_id, obj.get("payment_intent"))
    # A read outside any transaction: none may be open while Stripe is asked.
    ours = autocommit_read(lambda connection: connection.execute(
        select(Payment.id).where(or_(*matches)).limit(1)).first()) is not None
    if not ours:
        # Nothing to ask Stripe about (and a replayed event must not make us call out):
        # the handler acknowledges it as a charge that is not ours.
        return event
    try:
        refunds = get_gateway().list_refunds(charge_id)
    except GatewayError as error:
        raise ProviderUnavailable(error.message) from None
    obj = {**obj, "refunds": {"object": "list", "data": refunds, "has_more": False}}
    return {**event, "data": {**event["data"], "object": obj}}


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
    elif event_type in DISPUTE_EVENTS:
        bank = _read_bank_dispute(obj)
    elif event_type == "charge.refunded":
        _id_or_none(obj.get("id"), "the charge id")
        _id_or_none(obj.get("payment_intent"), "the PaymentIntent id")
        refunds = _read_refunds(obj)
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
    if event_type in DISPUTE_EVENTS:
        return _card_dispute(obj, event_type, bank)
    if event_type == "charge.refunded":
        return _charge_refunded(obj, refunds)
    return "ignored"


class _StripeRefund(NamedTuple):
    id: str
    amount: int
    currency: str | None
    status: str | None
    # Our refund row's id, when we made it (our refund requests carry it as metadata).
    ours: int | None


# A refund in these states moved no money (or gave it back): nothing to reconcile.
_NO_MONEY_MOVED = ("failed", "canceled")


def _read_refunds(charge: dict[str, Any]) -> list[_StripeRefund]:
    """The charge's refunds as Stripe lists them, or MalformedEvent before anything changes.

    Stripe's older API versions (and localstripe) embed the list in the charge; newer
    ones leave it out unless expanded, and then there is nothing here to reconcile.
    """
    listing = charge.get("refunds")
    if listing is None:
        return []
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        raise MalformedEvent("refunds is not a list")
    refunds = []
    for item in data:
        if not isinstance(item, dict):
            raise MalformedEvent("a refund is not an object")
        refund_id = _id_or_none(item.get("id"), "the refund id")
        amount = item.get("amount")
        if refund_id is None or type(amount) is not int or not 0 < amount < 2**62:
            raise MalformedEvent("a refund has no id or no amount")
        currency, status = item.get("currency"), item.get("status")
        metadata = _read_metadata({"metadata": item.get("metadata")})
        raw = metadata.get("refund_id")
        ours = int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() \
            and int(raw) <= _MAX_ROW_ID else None
        refunds.append(_StripeRefund(refund_id, amount,
                                     currency if isinstance(currency, str) else None,
                                     status if isinstance(status, str) else None, ours))
    return refunds


def _charge_matches(charge_id: Any, intent_id: Any) -> list:
    # Only ids that are there: "== None" would match every payment that has no intent yet.
    return [column == value for column, value in ((Payment.charge_id, charge_id),
                                                  (Payment.payment_intent_id, intent_id))
            if isinstance(value, str) and value]


def _payment_for_charge(charge_id: Any, intent_id: Any) -> Payment | None:
    matches = _charge_matches(charge_id, intent_id)
    return db.session.scalar(select(Payment).where(or_(*matches)).limit(1)) \
        if matches else None


def _charge_refunded(charge: dict[str, Any], refunds: list[_StripeRefund]) -> str:
    """Money went back on a charge, from the app or from anywhere else (Stripe's dashboard).

    Each refund is matched by Stripe's id: one we know (ours, or one recorded from an
    earlier delivery) changes nothing. One we asked for whose job has not yet stored
    Stripe's answer is known by the refund id in its metadata, and only confirmed.
    Any other was made outside the app: recorded, posted and told to both people
    (``record_provider_refunds``), while the payment is still in undisputed escrow. What
    cannot be applied as it stands (an unknown charge, another currency, more than
    escrow holds) is logged and changes nothing; one on a payment already released or
    disputed is recorded, unbooked, for an admin to decide who bears it. Either way the
    event is acknowledged: Stripe would only retry it for days.
    """
    payment = _payment_for_charge(charge.get("id"), charge.get("payment_intent"))
    if payment is None:
        current_app.logger.warning("charge.refunded for %s: no payment of ours",
                                   charge.get("id"))
        return "unknown payment"
    moved = [item for item in refunds if item.status not in _NO_MONEY_MOVED]
    currencies = {c.lower() for c in [charge.get("currency"), *(r.currency for r in moved)]
                  if isinstance(c, str)}
    if currencies - {payment.currency.lower()}:
        current_app.logger.error("charge.refunded for payment %s in %s, ours is in %s",
                                 payment.id, sorted(currencies), payment.currency)
        return "ignored: another currency"
    known = set(db.session.scalars(select(Refund.gateway_refund_id).where(
        Refund.gateway_refund_id.in_([item.id for item in moved])))) if moved else set()
    ours = {item.id: item for item in payment.refunds if item.gateway_refund_id is None}
    confirmed, new = 0, []
    for item in moved:
        if item.id in known:
            continue
        own = ours.pop(item.ours, None) if item.ours is not None else None
        if own is not None and own.amount_minor == item.amount:
            confirm_own_refund(own, item.id)
            confirmed += 1
        else:
            new.append((item.id, item.amount))
    if not new:
        return "confirmed our refund" if confirmed else "already recorded"
    total = sum(amount for _, amount in new)
    if not payment.is_in_undisputed_escrow:
        current_app.logger.error(
            "Payment %s (%s) was refunded %s in Stripe (%s): for an admin", payment.id,
            payment.status, total, ", ".join(refund_id for refund_id, _ in new))
        record_unbooked_provider_refunds(payment, new)
        return f"not in escrow ({payment.status}): recorded for an admin"
    if total > payment.remaining_minor:
        current_app.logger.error(
            "Payment %s: Stripe refunded %s, more than the %s held: for an admin",
            payment.id, total, payment.remaining_minor)
        return "ignored: more than escrow holds"
    record_provider_refunds(payment, new)
    return "refunded in Stripe"


#: Stripe's events about a card dispute at the bank (see ``payments/chargebacks.py``).
DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                  "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated")


def _read_bank_dispute(obj: dict[str, Any]) -> BankDispute:
    """The dispute object's facts, or MalformedEvent before anything changes."""
    _id_or_none(obj.get("charge"), "the charge id")
    _id_or_none(obj.get("payment_intent"), "the PaymentIntent id")
    dispute_id = _id_or_none(obj.get("id"), "the dispute id")
    if dispute_id is None:
        raise MalformedEvent("the dispute has no id")
    words = {}
    for name, size in (("currency", 3), ("reason", 64), ("status", 32)):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise MalformedEvent(f"{name} is not text")
        words[name] = value[:size] if value else None
    details = obj.get("evidence_details")
    due_by = details.get("due_by") if isinstance(details, dict) else None
    if due_by is not None and (type(due_by) is not int or not 0 < due_by < 2**33):
        raise MalformedEvent("evidence_details.due_by is not a time")
    return BankDispute(dispute_id, _amount(obj), words["currency"], words["reason"],
                       words["status"],
                       datetime.fromtimestamp(due_by, UTC) if due_by else None)


def _card_dispute(dispute: dict[str, Any], event_type: str, bank: BankDispute) -> str:
    """The cardholder disputed the charge with their bank: follow it (chargebacks.py)."""
    payment = _payment_for_charge(dispute.get("charge"), dispute.get("payment_intent"))
    if payment is None:
        return "unknown payment"
    return apply_bank_dispute(payment, event_type, bank)
