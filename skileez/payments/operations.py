"""Payment writes: the book-and-pay saga, escrow release, payouts, refunds, disputes.

Every state change goes through the transition helper and, where money
moves, a ledger posting in the same transaction. Calls to the gateway
(Stripe) happen outside database transactions — from idempotent jobs keyed by
our own row ids, or from a request between two commits — so a crash or a retry
can never charge, refund or pay twice. The commits around those calls are in
``payments.attempts``; nothing here commits.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from flask import current_app
from sqlalchemy import case, exists, select, update
from sqlalchemy.orm.attributes import set_committed_value

from skileez import clock
from skileez.coaches.operations import profile_for
from skileez.core.db import among, insert_many
from skileez.core.errors import Conflict, DomainError
from skileez.core.money import format_money, share
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.core.queue import (
    QUEUE_CLAIM,
    enqueue_after_commit,
    enqueue_claimed,
    job,
    left_for_the_sweep,
)
from skileez.core.transitions import (
    expire_loaded,
    record_creation,
    record_creation_many,
    record_event,
    transition,
    transition_many,
)
from skileez.core.words import duration_words
from skileez.extensions import db
from skileez.notifications.operations import notify, notify_many
from skileez.payments import chargebacks, ledger
from skileez.payments.attempts import ProviderAttempt
from skileez.payments.gateway import CardDeclined, IntentResult, get_gateway
from skileez.payments.models import Dispute, LedgerTransaction, Payment, Payout, Refund
from skileez.policy import get_policy
from skileez.sessions import lifecycle
from skileez.sessions.models import Session
from skileez.sessions.operations import expire_hold


def _money(minor: int, currency: str) -> str:
    return format_money(minor, currency)




# --- booking and paying ---------------------------------------------------------------

def create_payment(session: Session, contract) -> Payment:
    """The payment row for a new booking, with the platform fee split out up front."""
    amount = contract.price_minor
    fee = share(amount, get_policy().platform_fee)
    payment = Payment(session_id=session.id, student_id=session.student_id,
                      coach_id=session.coach_id, amount_minor=amount, currency=contract.currency,
                      fee_minor=fee, coach_net_minor=amount - fee, status="pending",
                      gateway=get_gateway().name, created_at=clock.now())
    db.session.add(payment)
    db.session.flush()
    # The new session had no payment before this one: say so, and ``session.payment`` is
    # known without a query (booking's answer links to it).
    set_committed_value(session, "payment", payment)
    record_creation(payment, actor=session.student, reason="awaiting payment")
    return payment


def ensure_payment_intent(payment: Payment) -> Payment:
    """Create the provider's PaymentIntent once per payment (idempotency key from our row).

    A network call: run it inside ``attempts.provider_call()``, which commits
    before it and keeps the intent it stores. If two tabs race, the
    compare-and-set keeps the first intent and the provider's idempotency key
    makes the second request return that same intent.
    """
    if payment.payment_intent_id:
        return payment
    result = get_gateway().create_payment_intent(
        amount_minor=payment.amount_minor, currency=payment.currency,
        idempotency_key=f"payment-{payment.id}",
        metadata={"payment_id": str(payment.id), "session_id": str(payment.session_id),
                  "student_id": str(payment.student_id), "coach_id": str(payment.coach_id)})
    db.session.execute(
        update(Payment).where(Payment.id == payment.id, Payment.payment_intent_id.is_(None))
        .values(payment_intent_id=result.intent_id, client_secret=result.client_secret)
        .execution_options(synchronize_session=False))
    db.session.refresh(payment)
    return payment


def confirm_card(payment: Payment, payment_method: str, return_url: str) -> IntentResult:
    """Pay with a card collected by Stripe.js. A decline is recorded; the student may retry.

    A network call: run it inside ``attempts.provider_call(keep=(CardDeclined,))`` so the
    recorded decline survives the error the view answers with.
    """
    can = payment_can_be_paid(payment)
    if not can:
        raise Conflict(can.reason)
    try:
        return get_gateway().confirm_payment_intent(intent_id=payment.payment_intent_id,
                                                    payment_method=payment_method,
                                                    return_url=return_url)
    except CardDeclined as error:
        payment_failed(payment.payment_intent_id, error.message)
        raise


def payment_can_be_paid(payment: Payment) -> Decision:
    """The session's ``lifecycle.can_pay`` for its student, told in terms of the money."""
    session = payment.session
    if payment.is_funded:
        return deny("This session is already paid.")
    if payment.saved_card_charge is not None and payment.saved_card_charge.is_waiting:
        # Paying now as well could charge twice: the job is about to answer.
        return deny("Your saved card is being charged for this session right now. Reload "
                    "in a moment to see the result.")
    if not lifecycle.awaits_payment(session):
        return deny(f"The {duration_words(get_policy().payment_hold, adjective=True)} hold "
                    "on this time ran out before payment, so the slot was released. Book it "
                    "again if it is still free.")
    return lifecycle.can_pay(session, payment.student)


def _payment_for_intent(intent_id: str | None, metadata: dict | None) -> Payment | None:
    payment = None
    if intent_id:
        payment = db.session.scalar(select(Payment).where(Payment.payment_intent_id == intent_id))
    raw = str(metadata.get("payment_id", "")) if isinstance(metadata, dict) else ""
    # ASCII digits that fit our integer ids only: anything else is no payment of ours.
    if payment is None and raw.isascii() and raw.isdigit() and int(raw) < 2**31:
        payment = db.session.get(Payment, int(raw))
    return payment


def payment_succeeded(intent_id: str, *, charge_id: str | None = None,
                      amount_minor: int | None = None, metadata: dict | None = None) -> str:
    """The provider took the money: hold it in escrow and confirm the booking.

    Safe to receive twice and in any order with failures: a payment already
    held is left alone; one whose hold expired is taken and refunded in full.
    """
    payment = _payment_for_intent(intent_id, metadata)
    if payment is None:
        return "unknown payment"
    if payment.is_funded:
        return "already recorded"
    if amount_minor is not None and amount_minor != payment.amount_minor:
        current_app.logger.error("Payment %s: provider amount %s != ours %s", payment.id,
                                 amount_minor, payment.amount_minor)
    now = clock.now()
    session = payment.session
    if session.status == "pending_payment" and session.hold_expires_at is not None \
            and session.hold_expires_at <= now:
        # The hold ran out before the money arrived, even if no sweep has noticed yet.
        expire_hold(session)
    transition(payment, "held", reason="payment received",
               values={"paid_at": now, "charge_id": charge_id, "failure_message": None,
                       # The intent that took the money is the one refunds go to
                       # (a saved-card charge may have replaced the pay page's).
                       "payment_intent_id": intent_id or payment.payment_intent_id})
    ledger.post_payment_held(payment)
    session = payment.session
    if session.status == "pending_payment":
        transition(session, "scheduled", reason="paid", values={"hold_expires_at": None})
        payload = session.notification_payload(amount=_money(payment.amount_minor,
                                                             payment.currency))
        notify(session.student, "payment_received", payload)
        notify(session.coach, "session_booked", payload)
        return "held"
    # Paid after the hold ran out (or the session ended otherwise): give it all back.
    refund(payment, payment.amount_minor, reason="Paid after the booking hold had expired; "
           "the slot was no longer reserved.")
    return "refunded late payment"


def payment_failed(intent_id: str, message: str | None, *, metadata: dict | None = None) -> str:
    payment = _payment_for_intent(intent_id, metadata)
    if payment is None:
        return "unknown payment"
    if payment.is_funded:
        return "ignored: already paid"  # a failure reported after success changes nothing
    transition(payment, "failed", reason="payment failed",
               values={"failure_message": (message or "The payment did not go through.")[:500]})
    return "failed"


ABANDONED_BECAUSE = {
    "booking_expired": "The booking hold expired before payment.",
    "booking_released": "The coach is away at that time; the booking was released before "
                        "payment.",
    "contract_ended": "The contract was ended before this booking was paid.",
}
# Ends of a hold whose student is told by something else (the contract's ending says
# which bookings it released), not by a notice per booking.
TOLD_OTHERWISE = frozenset({"contract_ended"})


def payments_abandoned(sessions: list[Session], *, notice: str = "booking_expired") -> None:
    """The holds of ``sessions`` ended without payment; record it so the history says why,
    and tell each student with ``notice`` (the hold ran out, or the coach released it).

    A batch costs the same few statements as one: a read of the payments, one
    compare-and-set over the pending ones, one batch of notifications.
    """
    payments = db.session.execute(select(Payment.id, Payment.session_id, Payment.status)
                                  .where(among(Payment.session_id, [s.id for s in sessions]))
                                  ).all()
    transition_many(Payment, [row.id for row in payments if row.status == "pending"],
                    "failed", expected="pending", reason="hold ended before payment",
                    values={"failure_message": ABANDONED_BECAUSE[notice]})
    if notice in TOLD_OTHERWISE:
        return
    paid_for = {row.session_id for row in payments}
    notify_many(notice, [(session.student, session.notification_payload())
                         for session in sessions if session.id in paid_for])


# --- escrow release and payout ----------------------------------------------------------

def _open_dispute(payment: Payment) -> Dispute | None:
    return db.session.scalar(select(Dispute).where(Dispute.payment_id == payment.id,
                                                   Dispute.status == "open"))


def release(payment: Payment, *, actor=None, reason: str = "escrow released",
            resolving: bool = False) -> Payout:
    """Move what remains in escrow to the coach (minus the fee) and queue the payout."""
    if payment.status == "disputed" and not resolving:
        raise Conflict("This payment is disputed; resolve the dispute to release it.")
    if not payment.is_in_escrow:
        raise Conflict(f"This payment is {payment.status.replace('_', ' ')}; there is "
                       "nothing in escrow to release.")
    remaining = payment.remaining_minor
    fee = share(remaining, get_policy().platform_fee)
    net = remaining - fee
    transition(payment, "released", actor=actor, reason=reason,
               expected=payment.status, values={"released_at": clock.now()})
    ledger.post_release(payment, fee_minor=fee, net_minor=net)
    payout = Payout(payment_id=payment.id, coach_id=payment.coach_id, amount_minor=net,
                    currency=payment.currency, status="pending", next_attempt_at=clock.now())
    db.session.add(payout)
    db.session.flush()
    record_creation(payout, actor=actor, reason="payout queued")
    notify(payment.coach, "escrow_released",
           payment.session.notification_payload(amount=_money(net, payment.currency)))
    enqueue_after_commit(pay_out, payout.id, queue="payouts", claim=(Payout, payout.id))
    return payout


def _payout_account(payout: Payout) -> str | None:
    """The coach's Stripe account, if Stripe lets it receive transfers yet."""
    return payout_account(payout.coach)


def payout_account(coach) -> str | None:
    """``coach``'s Stripe account, if Stripe lets it receive transfers yet."""
    profile = profile_for(coach)
    return profile.stripe_account_id if profile.payouts_enabled else None


class PayoutAttempt(ProviderAttempt):
    """A payout's transfer to the coach's connected account."""

    model = Payout
    finished = ("paid", "reversed")
    failure_reason = "transfer failed"

    def due(self, payout: Payout, now: datetime) -> bool:
        return payout.status == "payable" or super().due(payout, now)

    def blocked(self, payout: Payout) -> str | None:
        """Without a connected account the money waits in the coach's payable balance;
        while the cardholder's bank holds the payment (a chargeback), it waits too."""
        if db.session.scalar(select(exists().where(Dispute.payment_id == payout.payment_id,
                                                   Dispute.funds_out.is_(True)))):
            return "held back: card dispute"
        if _payout_account(payout):
            return None
        if payout.status != "payable":
            transition(payout, "payable", reason="coach has no payout account yet",
                       values={"next_attempt_at": None, "queued_until": None})
        return "payable"

    def ask(self, payout: Payout) -> str:
        payment = payout.payment
        return get_gateway().create_transfer(
            amount_minor=payout.amount_minor, currency=payout.currency,
            destination=_payout_account(payout),
            transfer_group=f"session-{payment.session_id}",
            source_transaction=payment.charge_id, idempotency_key=f"payout-{payout.id}",
            metadata={"payout_id": str(payout.id), "payment_id": str(payment.id)})

    def record(self, payout: Payout, transfer_id: str, expected: str) -> str:
        transition(payout, "paid", expected=expected, reason="transferred",
                   values={"transfer_id": transfer_id, "paid_at": clock.now(),
                           "last_error": None, "next_attempt_at": None,
                           "claimed_until": None})
        ledger.post_payout(payout)
        chargebacks.payout_landed(payout)
        return "paid"


@job
def pay_out(payout_id: int) -> str:
    """Transfer a payout to the coach's connected account, exactly once.

    The transfer's idempotency key is the payout row, so if we crash after
    Stripe accepted it but before our commit, the retry gets the same transfer
    back and records it; the status compare-and-set means only one attempt
    ever posts to the ledger. The job re-checks its row before calling out (not
    due yet, or another job holding the running claim: nothing to do), so a
    duplicate job never sends a second request. Without a connected account the
    money stays in the coach's payable balance until they connect one.
    """
    return PayoutAttempt().run(payout_id)


# --- refunds ---------------------------------------------------------------------------

def refund(payment: Payment, amount_minor: int, *, reason: str, actor=None,
           resolving: bool = False) -> Refund:
    """Give money back to the student from escrow; Stripe is called by a job after commit."""
    if payment.status == "disputed" and not resolving:
        raise Conflict("This payment is disputed; resolve the dispute instead.")
    if not payment.is_in_escrow:
        raise Conflict(f"This payment is {payment.status.replace('_', ' ')}; only money "
                       "still held in escrow can be refunded.")
    if not 0 < amount_minor <= payment.remaining_minor:
        raise DomainError(f"Refund between {_money(1, payment.currency)} and "
                          f"{_money(payment.remaining_minor, payment.currency)}.",
                          field="amount")
    # Stripe may have refunded some of it already (in its dashboard) without the books
    # knowing: never ask it for more than the charge minus what it gave back.
    already = sum(item.amount_minor for item in unbooked_provider_refunds(payment))
    if amount_minor > payment.remaining_minor - already:
        raise Conflict(f"{_money(already, payment.currency)} of this payment was already "
                       "refunded in Stripe and is not in the books yet; decide its dispute "
                       "to book it.")
    [refund_id] = refund_many([(payment, amount_minor)], {payment.session_id: payment.session},
                              reason=reason, actor=actor)
    return db.session.get(Refund, refund_id)


LOST_REFUND_RACE = ("This payment was changed by someone else a moment ago. Reload the page "
                    "to see its current state.")


def refund_many(refunds: list[tuple[Payment, int]], sessions: dict[int, Session], *,
                reason: str, actor=None) -> list[int]:
    """Record refunds of ``(payment, amount)`` from escrow, in a few statements per batch.

    Each payment moves by compare-and-set on the status it was read in (grouped by
    from → to state, so at most a handful of updates whatever the batch's size); if
    any was changed by someone else meanwhile, ``Conflict`` is raised and the caller
    rolls back (the sweep then acts on that batch row by row). Then, in one insert
    each: the refund rows, their audit events, their ledger postings and the
    students' notifications. Stripe is called by ``execute_refund`` jobs after commit
    (in-process, a batch waits for the sweep's ``retry_refunds``). Returns the refund
    ids, in the order given. ``sessions`` maps each payment's session id to its
    session, loaded with the people its notification names.
    """
    if not refunds:
        return []
    groups: dict[tuple[str, str], list[tuple[Payment, int]]] = defaultdict(list)
    for payment, amount in refunds:
        target = ("refunded" if payment.refunded_minor + amount == payment.amount_minor
                  else "partially_refunded")
        groups[(payment.status, target)].append((payment, amount))
    for (expected, target), group in groups.items():
        amounts = {payment.id: amount for payment, amount in group}
        won = transition_many(Payment, list(amounts), target, expected=expected, actor=actor,
                              reason=reason, values={"refunded_minor": Payment.refunded_minor
                                                     + case(amounts, value=Payment.id)})
        if len(won) != len(amounts):
            raise Conflict(LOST_REFUND_RACE)
    now = clock.now()
    queued_until = None if left_for_the_sweep(len(refunds)) else now + QUEUE_CLAIM
    refund_ids = insert_many(Refund, [
        {"payment_id": payment.id, "amount_minor": amount, "currency": payment.currency,
         "reason": reason, "status": "pending", "attempts": 0, "next_attempt_at": now,
         "queued_until": queued_until, "created_by_id": getattr(actor, "id", None),
         "created_at": now, "updated_at": now} for payment, amount in refunds],
        key=("payment_id",))
    record_creation_many(Refund, refund_ids, to_state="pending", actor=actor, reason=reason)
    ledger.post_refunds([(refund_id, payment.id, amount, payment.currency)
                         for refund_id, (payment, amount) in zip(refund_ids, refunds,
                                                                 strict=True)])
    notify_many("refund_issued", [
        (sessions[payment.session_id].student, sessions[payment.session_id]
         .notification_payload(amount=_money(amount, payment.currency), reason=reason))
        for payment, amount in refunds])
    if queued_until is not None:
        enqueue_claimed(execute_refund, Refund, refund_ids, until=queued_until,
                        queue="payouts")
    return refund_ids


def settle_escrows(sessions: list[Session], refund_share: Decimal | int, *, actor,
                   reason: str, release_from: datetime) -> int:
    """The sessions are over: refund each student's share of what escrow holds, and
    schedule the rest for release to the coach on the normal schedule.

    Payments not in undisputed escrow (never paid, disputed, already settled) are
    left alone. Returns what was refunded in all, in minor units.
    """
    by_id = {session.id: session for session in sessions}
    payments = list(db.session.scalars(select(Payment).where(
        among(Payment.session_id, by_id),
        Payment.status.in_(Payment.UNDISPUTED_ESCROW_STATES)).order_by(Payment.id)))
    remaining = {payment.id: payment.remaining_minor for payment in payments}
    refunds = [(payment, share(remaining[payment.id], refund_share)) for payment in payments]
    refunds = [(payment, amount) for payment, amount in refunds if amount]
    refund_many(refunds, by_id, reason=reason, actor=actor)
    refunded = {payment.id: amount for payment, amount in refunds}
    to_release = [payment_id for payment_id, left in remaining.items()
                  if left - refunded.get(payment_id, 0)]
    if to_release:
        db.session.execute(update(Payment).where(among(Payment.id, to_release))
                           .values(release_at=release_from + get_policy().escrow_release_delay)
                           .execution_options(synchronize_session=False))
        expire_loaded(Payment, to_release, ["release_at"])
    return sum(refunded.values())


#: The reason a refund made outside the app (in Stripe's dashboard, say) is recorded with.
REFUNDED_IN_STRIPE = "Refunded in Stripe"


def record_provider_refunds(payment: Payment, refunds: list[tuple[str, int]]) -> list[int]:
    """Refunds the provider made that we never asked for: record them as they are.

    ``refunds`` are (provider refund id, amount) pairs we know nothing of yet. The
    money has already gone back to the card, so each becomes a ``succeeded`` refund
    carrying the provider's id (which makes a second delivery find it), posted from
    escrow like any refund, with no job to call the provider. The payment moves by
    compare-and-set to ``refunded`` or ``partially_refunded``; a full refund also
    drops its release time (nothing is left to pay out), while a partial one keeps
    it, and ``release`` then pays the coach their share of what is left. Both people
    are told. The caller has checked that the payment is in undisputed escrow and
    that the amounts fit what it still holds.
    """
    total = sum(amount for _, amount in refunds)
    left = payment.remaining_minor - total
    target = "refunded" if left == 0 else "partially_refunded"
    values: dict = {"refunded_minor": Payment.refunded_minor + total}
    if left == 0:
        values["release_at"] = None
    transition(payment, target, expected=payment.status, reason=REFUNDED_IN_STRIPE.lower(),
               values=values, lost_race_message=LOST_REFUND_RACE)
    now = clock.now()
    refund_ids = insert_many(Refund, [
        {"payment_id": payment.id, "amount_minor": amount, "currency": payment.currency,
         "reason": REFUNDED_IN_STRIPE, "status": "succeeded", "gateway_refund_id": gateway_id,
         "attempts": 0, "created_at": now, "updated_at": now}
        for gateway_id, amount in refunds], key=("gateway_refund_id",))
    record_creation_many(Refund, refund_ids, to_state="succeeded",
                         reason=REFUNDED_IN_STRIPE.lower())
    ledger.post_refunds([(refund_id, payment.id, amount, payment.currency)
                         for refund_id, (_, amount) in zip(refund_ids, refunds, strict=True)])
    session = payment.session
    amount = _money(total, payment.currency)
    notify(payment.student, "refund_issued",
           session.notification_payload(amount=amount, reason=REFUNDED_IN_STRIPE))
    notify(payment.coach, "payment_refunded",
           session.notification_payload(amount=amount, reason=REFUNDED_IN_STRIPE,
                                        remaining=_money(left, payment.currency) if left
                                        else None))
    return refund_ids


#: How a refund made in Stripe that the books cannot take as it stands is recorded.
REFUNDED_IN_STRIPE_UNBOOKED = ("Refunded in Stripe after the money left escrow; not in the "
                               "ledger: an admin must reverse the payout or absorb it")


def record_unbooked_provider_refunds(payment: Payment, refunds: list[tuple[str, int]]) -> None:
    """Refunds made in Stripe on a payment whose money is no longer (only) in escrow.

    Released money is the coach's (and may be transferred already), and a disputed
    payment waits for an admin: which account pays the refund back is a decision
    (a payout reversal, issue 11's chargeback part, or the platform absorbing it),
    not something a webhook may guess. So the refund is recorded with Stripe's id,
    which makes a repeat find it, and with no posting and no change to the payment;
    the admin payment page lists such refunds as needing a decision.
    """
    now = clock.now()
    refund_ids = insert_many(Refund, [
        {"payment_id": payment.id, "amount_minor": amount, "currency": payment.currency,
         "reason": REFUNDED_IN_STRIPE_UNBOOKED, "status": "succeeded",
         "gateway_refund_id": gateway_id, "attempts": 0, "created_at": now, "updated_at": now}
        for gateway_id, amount in refunds], key=("gateway_refund_id",))
    record_creation_many(Refund, refund_ids, to_state="succeeded",
                         reason="refunded in Stripe after release: for an admin")


def unbooked_provider_refunds(payment: Payment) -> list[Refund]:
    """Refunds Stripe made on this payment that the books have not taken (no posting):
    recorded by ``record_unbooked_provider_refunds``, oldest first, in one statement."""
    return list(db.session.scalars(select(Refund).where(
        Refund.payment_id == payment.id, Refund.status == "succeeded",
        Refund.gateway_refund_id.is_not(None),
        ~exists().where(LedgerTransaction.refund_id == Refund.id,
                        LedgerTransaction.kind == "refund")).order_by(Refund.id)))


def _book_provider_refunds(payment: Payment, items: list[Refund], *, actor,
                           reason: str) -> int:
    """Post refunds Stripe already made to the books, as a decision on a disputed payment
    does: escrow pays them (the student has the money), the payment's refunded amount
    grows by compare-and-set and nothing is sent to Stripe. Returns what was booked."""
    total = sum(item.amount_minor for item in items)
    if not total:
        return 0
    left = payment.remaining_minor - total
    if left < 0:
        raise Conflict(f"Stripe refunded {_money(total, payment.currency)}, more than the "
                       f"{_money(payment.remaining_minor, payment.currency)} escrow holds; "
                       "the books cannot take it as a decision.")
    values: dict = {"refunded_minor": Payment.refunded_minor + total}
    if left == 0:
        values["release_at"] = None
    transition(payment, "refunded" if left == 0 else "partially_refunded",
               expected=payment.status, actor=actor, reason=reason,
               values=values, lost_race_message=LOST_REFUND_RACE)
    ledger.post_refunds([(item.id, payment.id, item.amount_minor, payment.currency)
                         for item in items])
    for item in items:
        record_event(item, field="booked", from_state=None, to_state="booked", actor=actor,
                     reason=f"refund made in Stripe booked: {reason}"[:255])
    db.session.refresh(payment)
    return total


def confirm_own_refund(item: Refund, gateway_id: str) -> str:
    """The provider reports a refund we asked for before our job recorded its answer.

    Our refund was recorded and posted when we asked; only the provider's id and the
    success are missing. Recording them here (compare-and-set) makes the job's own
    record lose the race harmlessly, so the refund stays one refund.
    """
    if item.status == "succeeded":
        return "already recorded"
    transition(item, "succeeded", expected=item.status, reason="refunded at provider",
               values={"gateway_refund_id": gateway_id, "last_error": None,
                       "next_attempt_at": None})
    return "confirmed"


class RefundAttempt(ProviderAttempt):
    """A recorded refund, sent back to the student's card."""

    model = Refund
    finished = ("succeeded",)
    failure_reason = "refund failed at provider"

    def ask(self, item: Refund) -> str:
        payment = item.payment
        return get_gateway().refund(
            intent_id=payment.payment_intent_id, amount_minor=item.amount_minor,
            idempotency_key=f"refund-{item.id}",
            metadata={"refund_id": str(item.id), "payment_id": str(payment.id)})

    def record(self, item: Refund, gateway_id: str, expected: str) -> str:
        transition(item, "succeeded", expected=expected, reason="refunded at provider",
                   values={"gateway_refund_id": gateway_id, "last_error": None,
                           "next_attempt_at": None, "claimed_until": None})
        return "succeeded"


@job
def execute_refund(refund_id: int) -> str:
    """Send a recorded refund to the provider; the idempotency key is the refund row.

    Re-checks the row first (succeeded, not due yet, another job calling out:
    nothing to do), so duplicate jobs never call the provider again.
    """
    return RefundAttempt().run(refund_id)


# --- disputes --------------------------------------------------------------------------

def can_dispute(payment: Payment, user) -> Decision:
    """The student may dispute a completed session's payment until it is released."""
    if getattr(user, "id", None) != payment.student_id:
        return deny("Only the student who paid can open a dispute.")
    if not lifecycle.is_completed(payment.session) or payment.release_at is None:
        return deny("A dispute can be opened once the session is completed.")
    if not payment.is_in_undisputed_escrow:
        return deny(f"This payment is {payment.status.replace('_', ' ')}.")
    if clock.now() >= payment.release_at:
        return deny("The payment has already been released to the coach.")
    return ALLOWED


def open_dispute(payment: Payment, student, *, reason: str) -> Dispute:
    decision = can_dispute(payment, student)
    if not decision:
        raise Conflict(decision.reason)
    transition(payment, "disputed", actor=student, reason="dispute opened",
               expected=payment.status)
    dispute = Dispute(payment_id=payment.id, opened_by_id=student.id, source="student",
                      reason=reason.strip(), status="open")
    db.session.add(dispute)
    db.session.flush()
    record_creation(dispute, actor=student, reason="dispute opened")
    payload = payment.session.notification_payload(reason=reason.strip()[:300],
                                                   dispute_id=dispute.id)
    # The coach's copy says they can answer (on the session page, until the decision).
    notify(payment.coach, "dispute_opened", {**payload, "can_answer": True})
    notify(payment.student, "dispute_opened", {**payload, "yours": True})
    return dispute


def can_answer_dispute(dispute: Dispute, user) -> Decision:
    """The coach of the disputed session may answer, and edit the answer, until the decision."""
    if getattr(user, "id", None) != dispute.payment.coach_id:
        return deny("Only the coach of this session can answer the dispute.")
    if not dispute.is_open:
        return deny("An admin has already decided this dispute; the answer can no longer "
                    "be changed.")
    return ALLOWED


def answer_dispute(dispute: Dispute, coach, *, answer: str) -> Dispute:
    """Write (or rewrite) the coach's side of an open dispute and tell the student.

    The write is a compare-and-set on the dispute still being open: an answer sent in
    the moment the admin decides is refused (409), not saved on a closed dispute.
    """
    decision = can_answer_dispute(dispute, coach)
    if not decision:
        raise Conflict(decision.reason)
    answer = answer.strip()
    if not answer:
        raise DomainError("Write your side of what happened.", field="answer")
    if answer == dispute.coach_answer:
        return dispute  # sent again unchanged: nothing to record, nobody to tell
    edited = dispute.coach_answer is not None
    transition(dispute, "open", actor=coach, expected="open",
               reason="coach edited their answer to the dispute" if edited
               else "coach answered the dispute",
               lost_race_message="An admin decided this dispute a moment ago; your answer "
                                 "was not saved.",
               values={"coach_answer": answer, "coach_answered_at": clock.now()})
    payment = dispute.payment
    notify(payment.student, "dispute_answered", payment.session.notification_payload(
        payment_id=payment.id, dispute_id=dispute.id, answer=answer[:300], edited=edited))
    return dispute


def dispute_outcome(payment: Payment, resolution: str, refund_minor: int = 0, *,
                    already_refunded: int | None = None) -> dict:
    """What each person gets from a decision, in minor units, as ``resolve_dispute`` pays it.

    The coach's share of what is released is net of the platform fee, computed exactly as
    ``release`` computes it, so the sentence the admin confirms is the money that moves.
    What Stripe already refunded (``already_refunded``, read if not given) is the
    student's whatever the decision: it counts towards their refund, only the rest is
    sent to Stripe (``stripe_minor``), and a release releases what is left after it.
    """
    if already_refunded is None:
        already_refunded = sum(item.amount_minor for item in unbooked_provider_refunds(payment))
    remaining = payment.remaining_minor
    back = {"release": already_refunded, "refund": remaining,
            "partial": max(refund_minor, already_refunded)}.get(resolution, already_refunded)
    released = remaining - back
    fee = share(released, get_policy().platform_fee) if released > 0 else 0
    return {"student_minor": back, "coach_minor": released - fee, "fee_minor": fee,
            "already_minor": already_refunded, "stripe_minor": back - already_refunded,
            "currency": payment.currency}


def outcome_words(outcome: dict) -> str:
    """'Student gets €45.00 back; coach gets €0.00.' — the decision in one sentence, with
    what of the student's money Stripe already refunded."""
    currency = outcome["currency"]
    already = outcome.get("already_minor", 0)
    return (f"Student gets {_money(outcome['student_minor'], currency)} back"
            + (f" ({_money(already, currency)} of it already refunded in Stripe)"
               if already else "")
            + f"; coach gets {_money(outcome['coach_minor'], currency)}.")


def partial_refund_problem(payment: Payment, already: int) -> str:
    """Why a partial refund's amount is refused: at least what Stripe already refunded
    (it cannot be taken back from the card), less than what escrow holds."""
    held = _money(payment.remaining_minor, payment.currency)
    if already:
        return (f"{_money(already, payment.currency)} was already refunded in Stripe: a "
                f"partial refund must be at least that and less than the {held} held.")
    return ("A partial refund must be more than nothing and less than the full amount. "
            f"{held} is held.")


def resolve_dispute(dispute: Dispute, admin, *, resolution: str, refund_minor: int = 0,
                    note: str = "") -> None:
    """Release to the coach, refund the student in full, or refund part and release the rest.

    A refund already made in Stripe's dashboard on the disputed payment (recorded, not
    booked, by the webhook) is booked first as part of the decision and counts towards
    the student's refund, so Stripe is only asked for the rest: never a second refund.
    """
    payment = dispute.payment
    if resolution not in ("release", "refund", "partial"):
        raise DomainError("Choose how to resolve the dispute.", field="resolution")
    made_in_stripe = unbooked_provider_refunds(payment)
    already = sum(item.amount_minor for item in made_in_stripe)
    if resolution == "partial" and not max(already, 1) <= refund_minor < payment.remaining_minor:
        raise DomainError(partial_refund_problem(payment, already), field="refund_amount")
    # Told before the money moves: afterwards nothing is left in escrow to reckon from.
    outcome = dispute_outcome(payment, resolution, refund_minor, already_refunded=already)
    transition(dispute, "resolved", actor=admin, reason=f"resolved: {resolution}",
               illegal_message="This dispute is already resolved.",
               values={"resolution": resolution, "resolved_by_id": admin.id,
                       "resolved_at": clock.now(), "note": note.strip() or None,
                       "refund_minor": refund_minor if resolution == "partial" else None})
    why = f"dispute #{dispute.id} resolved by {admin.name}" + (f": {note.strip()}" if note else "")
    _book_provider_refunds(payment, made_in_stripe, actor=admin, reason=why)
    if outcome["stripe_minor"]:
        refund(payment, outcome["stripe_minor"], reason=why, actor=admin, resolving=True)
        db.session.refresh(payment)
    if resolution == "release" and not already:
        release(payment, actor=admin, reason=why, resolving=True)
    elif resolution != "refund" and payment.remaining_minor:
        # Its own words: the timeline would otherwise show the refund's line twice.
        release(payment, actor=admin, resolving=True,
                reason=f"the rest released to the coach (dispute #{dispute.id})")
    payload = payment.session.notification_payload(
        resolution=resolution, note=note.strip(),
        student_gets=_money(outcome["student_minor"], payment.currency),
        coach_gets=_money(outcome["coach_minor"], payment.currency))
    notify(payment.coach, "dispute_resolved", payload)
    notify(payment.student, "dispute_resolved", payload)
