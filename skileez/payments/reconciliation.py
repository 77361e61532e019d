"""Reconciliation: our payments, refunds and payouts compared with what Stripe holds.

Webhooks tell us what happens at Stripe, but an event can be lost (our endpoint was
down past Stripe's retries, a secret was rolled) and someone can act in Stripe's
dashboard. So a job compares, each night and when an admin asks, everything created at
Stripe within a window with our records, and every difference becomes an item on the
admin payments page saying what we say, what Stripe says and what to do.

The window (``window_start``): objects created since the previous successful run
*started*, less ``reconciliation_overlap`` (3 days). Starting from the previous start,
not its end, leaves no gap while it ran; the overlap sees recent objects again, because
what matters about them can change after they were created and compared (a charge
still pending then, a refund or a transfer reversal made a day after, an event that
arrived late). Stripe's list endpoints filter on creation time only, so a change to an
object older than the window is not seen by the lists; our own recent records are
looked up one by one when a list did not show them. The first run reaches back
``reconciliation_lookback`` (90 days).

Each difference has a ``key`` (its kind and the object it is about), so a run that
finds it again updates its item instead of adding one. A run closes the open items it
compared and no longer finds (only those about objects inside its window: it did not
look at older ones). An item an admin resolved stays resolved while the same
difference is seen again; one that changes, or one a run had closed, opens again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.orm import joinedload

from skileez import clock
from skileez.auth.forms import ConfirmForm
from skileez.coaches.models import CoachProfile
from skileez.core.db import among
from skileez.core.money import format_money
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.core.queue import enqueue_after_commit, job
from skileez.core.transitions import record_creation, transition, transition_many
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.payments.forms import ResolveDifferenceForm
from skileez.payments.gateway import (
    Gateway,
    GatewayError,
    ListedCharge,
    ListedRefund,
    ListedTransfer,
    get_gateway,
)
from skileez.payments.models import (
    Payment,
    Payout,
    ReconciliationItem,
    ReconciliationRun,
    Refund,
    Repayment,
)
from skileez.policy import get_policy

#: How long a running comparison holds its row; a worker that died lets another take over.
RUN_LEASE = timedelta(hours=1)
#: Runs asked for longer ago than this are deleted by the next run (not the newest result).
RUN_HISTORY = timedelta(days=90)
#: Open items the page lists (the newest first); the count says how many there are.
ITEMS_SHOWN = 50
#: PostgreSQL advisory lock namespace taken while a run is claimed (7001 is the calendars').
CLAIM_LOCK_NAMESPACE = 7002
#: Our own records a run looks up one by one when Stripe's lists did not show them.
LOOKUPS_PER_RUN = 200
NOTHING_TO_COMPARE = ("Nothing to compare: payments go through the test gateway, which "
                      "moves no money at Stripe.")
#: What each kind of difference is called on the page.
KIND_LABELS = {
    "charge_unknown": "A charge at Stripe we have no payment for",
    "payment_not_funded": "Stripe collected a payment we do not hold",
    "payment_amount": "Stripe collected a different amount",
    "payment_not_collected": "A payment we hold that Stripe did not collect",
    "refund_unknown": "A refund at Stripe we did not record",
    "refund_amount": "A refund of a different amount at Stripe",
    "refund_missing": "A refund of ours that Stripe does not have",
    "transfer_unknown": "A transfer at Stripe we have no payout for",
    "payout_no_transfer": "A paid payout with no transfer at Stripe",
    "payout_amount": "A transfer of a different amount",
    "payout_destination": "A transfer to another account",
    "payout_reversed": "A transfer reversed at Stripe",
}
# A refund in these states at Stripe gives money back (or is about to).
_REFUND_MOVES_MONEY = ("succeeded", "pending", "requires_action")


@dataclass(frozen=True)
class Difference:
    key: str
    kind: str
    ours: str
    theirs: str
    action: str
    object_at: datetime
    payment_id: int | None = None
    payout_id: int | None = None
    refund_id: int | None = None
    stripe_id: str | None = None


def _money(minor: int, currency: str) -> str:
    return format_money(minor, currency.upper())


# --- the comparison ---------------------------------------------------------------------

def window_start(now: datetime) -> datetime:
    """Where a run starting ``now`` begins comparing (see the module docstring)."""
    policy = get_policy()
    previous = db.session.scalar(
        select(func.max(ReconciliationRun.started_at))
        .where(ReconciliationRun.finished_at.is_not(None), ReconciliationRun.error.is_(None),
               ReconciliationRun.started_at < now))
    if previous is None:
        return now - policy.reconciliation_lookback
    return previous - policy.reconciliation_overlap


@dataclass
class StripeRecords:
    charges: list[ListedCharge]
    refunds: list[ListedRefund]
    transfers: list[ListedTransfer]


def fetch(gateway: Gateway, since: datetime) -> StripeRecords:
    """Everything created at Stripe since ``since`` (network calls, no database)."""
    return StripeRecords(gateway.list_charges(since), gateway.list_refunds_since(since),
                         gateway.list_transfers(since))


def compare(gateway: Gateway, records: StripeRecords, since: datetime) -> list[Difference]:
    """Every difference between ``records`` and ours; looks up (a bounded number of) our
    recent records the lists did not show."""
    lookups = [LOOKUPS_PER_RUN]
    found = _charge_differences(gateway, records.charges, since, lookups)
    found += _refund_differences(gateway, records.refunds, since, lookups)
    found += _transfer_differences(gateway, records.transfers, since, lookups)
    return found


def _payments_by(column, values) -> dict[str, Payment]:
    values = sorted({v for v in values if v})
    if not values:
        return {}
    rows = db.session.scalars(select(Payment).where(among(column, values))).all()
    return {getattr(row, column.key): row for row in rows}


def _charge_differences(gateway: Gateway, charges: list[ListedCharge], since: datetime,
                        lookups: list[int]) -> list[Difference]:
    by_charge = _payments_by(Payment.charge_id, (c.id for c in charges))
    by_intent = _payments_by(Payment.payment_intent_id, (c.payment_intent_id for c in charges))
    found: list[Difference] = []
    collected: set[int] = set()  # our payments with a succeeded charge in the list
    for charge in charges:
        payment = by_charge.get(charge.id) or by_intent.get(charge.payment_intent_id or "")
        if charge.status != "succeeded":
            continue
        theirs = f"Charge {charge.id} of {_money(charge.amount, charge.currency)} succeeded."
        if payment is None:
            found.append(Difference(
                f"charge_unknown:{charge.id}", "charge_unknown",
                "No payment of ours has this charge or its PaymentIntent.", theirs,
                "Open the charge at Stripe and read its PaymentIntent's metadata (payment_id). "
                "If it is a Skileez booking, its payment confirmation never reached us: "
                "resend the payment_intent.succeeded event from Stripe's dashboard. If it is "
                "not from Skileez, resolve this with a note saying what it is.",
                charge.created, stripe_id=charge.id))
            continue
        collected.add(payment.id)
        if not payment.is_funded:
            found.append(Difference(
                f"payment_not_funded:{payment.id}", "payment_not_funded",
                f"Payment #{payment.id} is {payment.status.replace('_', ' ')}: we never "
                "recorded the money.", theirs,
                "The student was charged but the booking never held the payment. Resend the "
                "payment_intent.succeeded event from Stripe's dashboard if the session can "
                "still take place; otherwise refund the charge at Stripe.",
                charge.created, payment_id=payment.id, stripe_id=charge.id))
        elif (charge.amount, charge.currency) != (payment.amount_minor, payment.currency):
            found.append(Difference(
                f"payment_amount:{payment.id}", "payment_amount",
                f"Payment #{payment.id} expects "
                f"{_money(payment.amount_minor, payment.currency)}.",
                f"Stripe received {_money(charge.amount, charge.currency)} "
                f"(charge {charge.id}).",
                "Our books hold what we expected, not what was charged. Find out which is "
                "right; refund the excess at Stripe, or ask the student for what is missing.",
                charge.created, payment_id=payment.id, stripe_id=charge.id))
    # Ours funded, but no succeeded charge in the lists: ask Stripe about each.
    ours = db.session.scalars(
        select(Payment).where(Payment.gateway == "stripe",
                              Payment.status.in_(Payment.FUNDED_STATES),
                              Payment.paid_at >= since)
        .order_by(Payment.id)).all()
    for payment in ours:
        if payment.id in collected or lookups[0] <= 0:
            continue
        lookups[0] -= 1
        status = _intent_status(gateway, payment.payment_intent_id)
        if status == "succeeded":
            continue
        found.append(Difference(
            f"payment_not_collected:{payment.id}", "payment_not_collected",
            f"Payment #{payment.id} is {payment.status.replace('_', ' ')}: we count "
            f"{_money(payment.amount_minor, payment.currency)} as paid.",
            f"PaymentIntent {payment.payment_intent_id} is {status}." if status
            else f"Stripe has no PaymentIntent {payment.payment_intent_id}.",
            "We may release money that was never collected. Check the PaymentIntent at "
            "Stripe; if the student was not charged, hold the release (open a dispute on "
            "the payment page) and ask them to pay.",
            payment.paid_at or payment.created_at, payment_id=payment.id,
            stripe_id=payment.payment_intent_id))
    return found


def _intent_status(gateway: Gateway, intent_id: str | None) -> str | None:
    """The PaymentIntent's status at Stripe, or None if Stripe does not know it."""
    if not intent_id:
        return None
    try:
        return gateway.retrieve_payment_intent(intent_id).status
    except GatewayError as error:
        if error.retryable:
            raise
        return None


def _refund_differences(gateway: Gateway, refunds: list[ListedRefund], since: datetime,
                        lookups: list[int]) -> list[Difference]:
    ids = sorted({r.id for r in refunds})
    known = {r.gateway_refund_id: r for r in db.session.scalars(
        select(Refund).where(among(Refund.gateway_refund_id, ids)))} if ids else {}
    by_charge = _payments_by(Payment.charge_id, (r.charge_id for r in refunds))
    by_intent = _payments_by(Payment.payment_intent_id, (r.payment_intent_id for r in refunds))
    found: list[Difference] = []
    for refund in refunds:
        if refund.status not in _REFUND_MOVES_MONEY:
            continue
        ours = known.get(refund.id)
        theirs = (f"Refund {refund.id} of {_money(refund.amount, refund.currency)} "
                  f"({refund.status}) on charge {refund.charge_id or '—'}.")
        if ours is None:
            payment = by_charge.get(refund.charge_id or "") or \
                by_intent.get(refund.payment_intent_id or "")
            found.append(Difference(
                f"refund_unknown:{refund.id}", "refund_unknown",
                (f"Payment #{payment.id} has no refund with this id; it shows "
                 f"{_money(payment.refunded_minor, payment.currency)} refunded."
                 if payment else "No payment of ours has this refund's charge."), theirs,
                "A refund was made at Stripe and its charge.refunded event never reached us. "
                "Resend that event from Stripe's dashboard so the payment and the books record "
                "it; if the coach was already paid, decide on the payment page whether to "
                "reverse their transfer.",
                refund.created, payment_id=payment.id if payment else None,
                stripe_id=refund.id))
        elif (ours.amount_minor, ours.currency) != (refund.amount, refund.currency):
            found.append(Difference(
                f"refund_amount:{ours.id}", "refund_amount",
                f"Refund #{ours.id} is {_money(ours.amount_minor, ours.currency)}.", theirs,
                "The student got back a different amount than our books say. Check the refund "
                "at Stripe and correct it there (refund the rest) or note why it differs.",
                refund.created, payment_id=ours.payment_id, refund_id=ours.id,
                stripe_id=refund.id))
    listed = set(ids)
    ours_done = db.session.scalars(
        select(Refund).join(Payment, Refund.payment_id == Payment.id)
        .where(Payment.gateway == "stripe", Refund.status == "succeeded",
               Refund.created_at >= since).order_by(Refund.id)).all()
    for item in ours_done:
        if item.gateway_refund_id in listed or lookups[0] <= 0:
            continue
        lookups[0] -= 1
        at_stripe = gateway.retrieve_refund(item.gateway_refund_id) \
            if item.gateway_refund_id else None
        if at_stripe is not None and at_stripe.status in _REFUND_MOVES_MONEY:
            continue
        found.append(Difference(
            f"refund_missing:{item.id}", "refund_missing",
            f"Refund #{item.id} of {_money(item.amount_minor, item.currency)} succeeded "
            f"(Stripe id {item.gateway_refund_id or 'none'}).",
            f"Refund {item.gateway_refund_id} is {at_stripe.status}." if at_stripe
            else "Stripe has no such refund.",
            "The student may not have got this money back. Check the charge at Stripe and, "
            "if the refund is missing, refund it there and note the new refund's id here.",
            item.created_at, payment_id=item.payment_id, refund_id=item.id,
            stripe_id=item.gateway_refund_id))
    return found


def _transfer_differences(gateway: Gateway, transfers: list[ListedTransfer], since: datetime,
                          lookups: list[int]) -> list[Difference]:
    ids = sorted({t.id for t in transfers})
    payouts = {p.transfer_id: p for p in db.session.scalars(
        select(Payout).where(among(Payout.transfer_id, ids)))} if ids else {}
    # A won chargeback's coach paid again (``Repayment``): ours, not unknown.
    repaid = set(db.session.scalars(select(Repayment.transfer_id).where(
        among(Repayment.transfer_id, ids)))) if ids else set()
    found: list[Difference] = []
    checked: list[tuple[Payout, ListedTransfer | None]] = []
    for transfer in transfers:
        payout = payouts.get(transfer.id)
        if payout is None and transfer.id in repaid:
            continue
        if payout is None:
            found.append(Difference(
                f"transfer_unknown:{transfer.id}", "transfer_unknown",
                "No payout of ours has this transfer.",
                f"Transfer {transfer.id} of {_money(transfer.amount, transfer.currency)} to "
                f"{transfer.destination or '—'}.",
                "Money left the platform's balance for a connected account with no payout on "
                "record. Read the transfer's transfer group (session-…) and metadata at "
                "Stripe; if it is not from Skileez, resolve this with a note saying what it "
                "is.", transfer.created, stripe_id=transfer.id))
        else:
            checked.append((payout, transfer))
    listed = set(ids)
    ours_paid = db.session.scalars(
        select(Payout).where(Payout.status == "paid", Payout.paid_at >= since,
                             Payout.transfer_id.is_not(None)).order_by(Payout.id)).all()
    for payout in ours_paid:
        if payout.transfer_id in listed or lookups[0] <= 0:
            continue
        lookups[0] -= 1
        checked.append((payout, gateway.retrieve_transfer(payout.transfer_id)))
    accounts = dict(db.session.execute(
        select(CoachProfile.user_id, CoachProfile.stripe_account_id)
        .where(among(CoachProfile.user_id, sorted({p.coach_id for p, _ in checked}))))
        .all()) if checked else {}
    for payout, transfer in checked:
        found += _payout_differences(payout, transfer, accounts.get(payout.coach_id))
    return found


def _payout_differences(payout: Payout, transfer: ListedTransfer | None,
                        account: str | None) -> list[Difference]:
    ours = (f"Payout #{payout.id} of {_money(payout.amount_minor, payout.currency)} is "
            f"{payout.status}")
    at = payout.paid_at or payout.created_at
    common = {"payment_id": payout.payment_id, "payout_id": payout.id,
              "stripe_id": payout.transfer_id}
    if transfer is None:
        if payout.status != "paid":
            return []
        return [Difference(
            f"payout_no_transfer:{payout.id}", "payout_no_transfer",
            f"{ours} (transfer {payout.transfer_id}).", "Stripe has no such transfer.",
            "The coach may never have been paid. Check their connected account at Stripe; "
            "if the money is not there, pay them again from Stripe and note the transfer.",
            at, **common)]
    found = []
    if (transfer.amount, transfer.currency) != (payout.amount_minor, payout.currency):
        found.append(Difference(
            f"payout_amount:{payout.id}", "payout_amount", f"{ours}.",
            f"Transfer {transfer.id} moved {_money(transfer.amount, transfer.currency)}.",
            "The coach was paid a different amount than their share. Correct it at Stripe "
            "(a further transfer or a partial reversal) and note what was done.", at, **common))
    if account and transfer.destination != account:
        found.append(Difference(
            f"payout_destination:{payout.id}", "payout_destination",
            f"{ours}, to the coach's account {account}.",
            f"Transfer {transfer.id} went to {transfer.destination or '—'}.",
            "The money went to another connected account. Reverse the transfer at Stripe and "
            "pay the coach's own account.", at, **common))
    if transfer.amount_reversed and payout.status == "paid":
        found.append(Difference(
            f"payout_reversed:{payout.id}", "payout_reversed", f"{ours}: we count it as the "
            "coach's.",
            f"{_money(transfer.amount_reversed, transfer.currency)} of transfer {transfer.id} "
            "was reversed at Stripe.",
            "Someone reversed the coach's transfer at Stripe without it reaching our books. "
            "Find out why (a refund or dispute at Stripe?); pay the coach again or record the "
            "refund on the payment page.", at, **common))
    return found


# --- the items ------------------------------------------------------------------------------

def record(run_id: int, differences: list[Difference], since: datetime) -> tuple[int, int]:
    """Open, update and close items for one run's findings; returns (opened, closed)."""
    now = clock.now()
    differences = list({d.key: d for d in differences}.values())
    keys = [d.key for d in differences]
    existing = {item.key: item for item in db.session.scalars(
        select(ReconciliationItem).where(among(ReconciliationItem.key, keys)))} if keys else {}
    opened = 0
    for difference in differences:
        details = {"kind": difference.kind, "ours": difference.ours,
                   "theirs": difference.theirs, "action": difference.action,
                   "object_at": difference.object_at, "payment_id": difference.payment_id,
                   "payout_id": difference.payout_id, "refund_id": difference.refund_id,
                   "stripe_id": difference.stripe_id, "last_seen_at": now}
        item = existing.get(difference.key)
        if item is None:
            item = ReconciliationItem(key=difference.key, status="open", first_seen_at=now,
                                      **details)
            db.session.add(item)
            record_creation(item, reason=f"found by reconciliation run #{run_id}")
            opened += 1
            continue
        changed = (item.ours, item.theirs) != (difference.ours, difference.theirs)
        closed_by_a_run = item.resolved_by_id is None
        db.session.execute(update(ReconciliationItem).where(ReconciliationItem.id == item.id)
                           .values(**details).execution_options(synchronize_session=False))
        if not item.is_open and (changed or closed_by_a_run):
            transition(item, "open", reason=f"found again by reconciliation run #{run_id}",
                       values={"resolved_at": None, "resolved_by_id": None,
                               "resolution": None})
            opened += 1
    seen = set(keys)
    stale = [item_id for item_id, key in db.session.execute(
        select(ReconciliationItem.id, ReconciliationItem.key)
        .where(ReconciliationItem.status == "open", ReconciliationItem.object_at >= since))
        if key not in seen]
    closed = transition_many(
        ReconciliationItem, stale, "resolved", expected="open",
        reason=f"no longer differs (reconciliation run #{run_id})",
        values={"resolved_at": now,
                "resolution": f"No longer differs: closed by comparison #{run_id}."})
    return opened, len(closed)


def can_resolve(item: ReconciliationItem) -> Decision:
    """Only an open difference can be resolved (a second admin's click is refused)."""
    return ALLOWED if item.is_open else deny("This difference is already resolved.")


def resolve_item(item: ReconciliationItem, admin, *, note: str) -> None:
    """An admin handled the difference: closed with their note, in the audit log."""
    note = note.strip()
    transition(item, "resolved", actor=admin, reason=f"resolved by an admin: {note}",
               values={"resolved_at": clock.now(), "resolved_by_id": admin.id,
                       "resolution": note},
               lost_race_message="This difference was resolved a moment ago.")


# --- runs, off the request path -------------------------------------------------------------

def pending_run(now: datetime | None = None) -> ReconciliationRun | None:
    """The newest run waiting for a worker or running, while its claim is live."""
    now = now or clock.now()
    return db.session.scalar(
        select(ReconciliationRun)
        .where(ReconciliationRun.finished_at.is_(None),
               or_(ReconciliationRun.queued_until > now, ReconciliationRun.claimed_until > now))
        .order_by(ReconciliationRun.requested_at.desc(), ReconciliationRun.id.desc()).limit(1))


def request_run(*, actor=None, source: str = "admin") -> tuple[ReconciliationRun, bool]:
    """Queue a comparison unless one is waiting or running; returns (run, queued).

    The row is claimed in this transaction and the job dispatched when it commits (RQ
    with Redis, in this process without). The job claims the row again before it
    starts, so two jobs for one row, or two rows at once, never compare twice at once
    (see ``run_reconciliation``).
    """
    waiting = pending_run()
    if waiting is not None:
        return waiting, False
    run = ReconciliationRun(source=source, requested_by_id=getattr(actor, "id", None),
                            requested_at=clock.now())
    db.session.add(run)
    db.session.flush()
    enqueue_after_commit(run_reconciliation, run.id, claim=(ReconciliationRun, run.id),
                         queue="reconciliation", job_timeout=int(RUN_LEASE.total_seconds()))
    return run, True


def scheduled_moment(now: datetime) -> datetime:
    """The latest nightly moment (``reconciliation_time`` after midnight UTC) at or before
    ``now``."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    moment = midnight + get_policy().reconciliation_time
    return moment if moment <= now else moment - timedelta(days=1)


def request_run_if_due() -> int:
    """The nightly schedule: queue a run once after each night's moment has passed."""
    due = scheduled_moment(clock.now())
    last = db.session.scalar(select(func.max(ReconciliationRun.requested_at))
                             .where(ReconciliationRun.source == "schedule"))
    if last is not None and last >= due:
        return 0
    _, queued = request_run(source="schedule")
    return int(queued)


@job
def run_reconciliation(run_id: int) -> int | None:
    """Compare with Stripe for one requested run and keep its result and items.

    The row is claimed first (compare-and-set, and only while no other run is running),
    so a duplicate job finds it claimed or finished and does nothing. Stripe's lists
    are read outside any transaction; our side is read and the items written in one.
    An error is kept on the row and re-raised so the worker records it too. Returns the
    number of differences found (None when another job had the row).
    """
    with transaction(serialized=True):
        claimed = _claim_run(run_id)
    if claimed is None:
        return None
    claim, since = claimed
    gateway = get_gateway()
    if gateway.name != "stripe":
        with transaction():
            _finish_run(run_id, claim, counts=(0, 0, 0), opened=0, closed=0,
                        note=NOTHING_TO_COMPARE)
        return 0
    try:
        records = fetch(gateway, since)
        with transaction():
            differences = compare(gateway, records, since)
            opened, closed = record(run_id, differences, since)
            _finish_run(run_id, claim, counts=(len(records.charges), len(records.refunds),
                                               len(records.transfers)),
                        opened=opened, closed=closed)
    except Exception as error:
        with transaction():
            _finish_run(run_id, claim, error=f"{type(error).__name__}: {error}")
        raise
    return len(differences)


def _claim_run(run_id: int) -> tuple[datetime, datetime] | None:
    """Claim the row and fix its window; None if it is taken, finished, or another run is
    running (that one's result will do). Claimers take turns, so two runs never overlap."""
    if db.engine.dialect.name == "postgresql":
        # Two jobs claiming two rows at once would each see the other's row unclaimed;
        # queued on this lock (released at commit), the second sees the first's claim.
        # SQLite: the serialized transaction holds the write lock for the same purpose.
        db.session.execute(text("SELECT pg_advisory_xact_lock(:namespace, 0)"),
                           {"namespace": CLAIM_LOCK_NAMESPACE})
    now = clock.now()
    running = db.session.scalar(
        select(func.count()).select_from(ReconciliationRun)
        .where(ReconciliationRun.id != run_id, ReconciliationRun.finished_at.is_(None),
               ReconciliationRun.claimed_until > now))
    if running:
        return None
    since = window_start(now)
    until = now + RUN_LEASE
    result = db.session.execute(
        update(ReconciliationRun)
        .where(ReconciliationRun.id == run_id, ReconciliationRun.finished_at.is_(None),
               or_(ReconciliationRun.claimed_until.is_(None),
                   ReconciliationRun.claimed_until <= now))
        .values(claimed_until=until, started_at=now, queued_until=None, since=since)
        .execution_options(synchronize_session=False))
    return (until, since) if result.rowcount == 1 else None


def _finish_run(run_id: int, claim: datetime, *, counts: tuple[int, int, int] | None = None,
                opened: int | None = None, closed: int | None = None,
                note: str | None = None, error: str | None = None) -> None:
    now = clock.now()
    charges, refunds, transfers = counts or (None, None, None)
    db.session.execute(
        update(ReconciliationRun)
        .where(ReconciliationRun.id == run_id, ReconciliationRun.claimed_until == claim,
               ReconciliationRun.finished_at.is_(None))
        .values(finished_at=now, claimed_until=None, charges_compared=charges,
                refunds_compared=refunds, transfers_compared=transfers, opened=opened,
                closed=closed, note=note, error=error[:2000] if error else None)
        .execution_options(synchronize_session=False))
    newest = (select(ReconciliationRun.id).where(ReconciliationRun.finished_at.is_not(None))
              .order_by(ReconciliationRun.started_at.desc(), ReconciliationRun.id.desc())
              .limit(1).scalar_subquery())
    db.session.execute(delete(ReconciliationRun)
                       .where(ReconciliationRun.requested_at < now - RUN_HISTORY,
                              ReconciliationRun.id != newest)
                       .execution_options(synchronize_session=False))


# --- what the admin page shows ----------------------------------------------------------------

def reconciliation_state(form=None, form_for: int | None = None,
                         refusal: str | None = None) -> dict:
    """Everything ``admin/_reconciliation.html`` shows, in two queries: the open items
    (newest first, with how many there are) and the runs to mention (the last finished,
    and one on its way)."""
    rows = db.session.execute(
        select(ReconciliationItem, func.count().over())
        .where(ReconciliationItem.status == "open")
        .order_by(ReconciliationItem.first_seen_at.desc(), ReconciliationItem.id.desc())
        .limit(ITEMS_SHOWN)).all()
    last_run, waiting = _runs_to_show()
    return {"last_run": last_run, "pending_run": waiting,
            "open_items": [row[0] for row in rows], "open_count": rows[0][1] if rows else 0,
            "run_form": ConfirmForm(), "resolve_form": form or ResolveDifferenceForm(),
            "form_for": form_for, "refusal": refusal, "labels": KIND_LABELS,
            "nightly_at": _time_of_day(get_policy().reconciliation_time)}


def _runs_to_show() -> tuple[ReconciliationRun | None, ReconciliationRun | None]:
    """The newest finished run and ``pending_run()``, in one statement."""
    now = clock.now()
    Run = ReconciliationRun
    newest_finished = (select(Run.id).where(Run.finished_at.is_not(None))
                       .order_by(Run.started_at.desc(), Run.id.desc()).limit(1)
                       .scalar_subquery())
    runs = db.session.scalars(
        select(Run).options(joinedload(Run.requested_by))
        .where(or_(Run.id == newest_finished,
                   and_(Run.finished_at.is_(None),
                        or_(Run.queued_until > now, Run.claimed_until > now))))
        .order_by(Run.requested_at.desc(), Run.id.desc()).limit(3)).all()
    finished = next((run for run in runs if run.is_finished), None)
    waiting = next((run for run in runs if not run.is_finished), None)
    return finished, waiting


def _time_of_day(after_midnight: timedelta) -> str:
    minutes = int(after_midnight.total_seconds() // 60) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d} UTC"


__all__ = ["Difference", "can_resolve", "compare", "fetch", "pending_run",
           "reconciliation_state", "record", "request_run", "request_run_if_due",
           "resolve_item", "run_reconciliation", "window_start"]
