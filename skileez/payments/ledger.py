"""The double-entry ledger behind escrow: every money movement as balanced entries.

Accounts (``ACCOUNTS``) and the sign convention: a positive amount is money
arriving in that account, a negative amount is money leaving it, so the entries
of one transaction always sum to zero per currency and so does the whole ledger.
Money is never created or destroyed, only moved:

    payment held      student_funding -amount         escrow +amount
    release           escrow -(fee + net)             coach_payable +net, platform_revenue +fee
    refund            escrow -amount                  refunds +amount
    payout            coach_payable -amount           paid_out +amount
    payout reversal   paid_out -amount                coach_payable +amount

Chargebacks (issue 11; ``payments/chargebacks.py`` decides when each is posted):

    chargeback_withdrawn   the bank took a disputed payment back.
        after release:     platform_revenue -fee, coach_payable -net    chargebacks +(fee+net)
        lost in escrow:    escrow -remaining                           chargebacks +remaining
    chargeback_reinstated  the bank gave it back (after release only: the mirror)
                           chargebacks -(fee+net)     platform_revenue +fee, coach_payable +net
    transfer_reversal      a coach's transfer taken back from their Stripe account
        for a chargeback:  paid_out -amount           coach_payable +amount (repays the debt)
        by an admin:       paid_out -amount           reversed_payouts +amount

``chargebacks`` is what cardholders' banks hold of ours; ``reversed_payouts`` is money an
admin took back from a coach (after a fraud finding, say): returned to the platform's
Stripe balance and owed to no one until an admin refunds the student or pays the coach.
A chargeback after release is the only way a coach's ``coach_payable`` goes below zero
(the money was transferred and the bank took it back); the transfer reversal brings it
back to zero, and ``check_invariants`` allows a negative balance only to that extent.

``student_funding`` is the mirror of what students put in, so it only ever goes
down; the other accounts hold what that money became. ``coach_payable`` and
``paid_out`` entries carry the coach they belong to.

Ledger rows are immutable: once flushed, a transaction or entry is never
updated or deleted (an ORM attempt raises ``LedgerImmutableError``). A mistake is
corrected by posting a new transaction, so the history of what the books said
and when is never lost.

Like every write in Skileez, the posting functions add and flush but never
commit: the posting commits (or rolls back) with the state change that caused it.
``check_invariants`` answers, with SQL aggregates, whether the books agree with
themselves and with the payments and payouts they describe. It reads the whole
ledger, so pages never call it: ``run_check`` (a job, queued by ``request_check`` on
the sweep's schedule or when an admin asks) runs it and keeps the result in a
``LedgerCheck`` row, which the money page shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    and_,
    case,
    delete,
    event,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, joinedload

from skileez import clock
from skileez.core.db import insert_many, insert_rows
from skileez.core.queue import enqueue_after_commit, job
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.payments.models import (
    ACCOUNTS,
    Dispute,
    LedgerCheck,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Payout,
    Refund,
    Repayment,
    TransferReversal,
)

KINDS = ("payment_held", "release", "refund", "payout", "payout_reversal",
         "chargeback_withdrawn", "chargeback_reinstated", "transfer_reversal", "repayment")
#: Postings that move a coach's payable balance for a chargeback (and may make it negative).
CHARGEBACK_KINDS = ("chargeback_withdrawn", "chargeback_reinstated")

# Accounts that belong to one coach: their entries must name the coach.
COACH_ACCOUNTS = ("coach_payable", "paid_out")


class LedgerImmutableError(RuntimeError):
    """Something tried to change or delete a ledger row; post a correction instead."""


class Line(NamedTuple):
    """One entry to post: ``amount_minor`` is signed (positive = arriving in ``account``)."""

    account: str
    amount_minor: int
    currency: str
    coach_id: int | None = None


# --- posting -------------------------------------------------------------------

def post_payment_held(payment: Payment) -> LedgerTransaction:
    """The student's money arrived and is held in escrow until the session is released."""
    amount = _non_negative(payment.amount_minor, "amount")
    return _post("payment_held", [
        Line("student_funding", -amount, payment.currency),
        Line("escrow", amount, payment.currency),
    ], payment=payment)


def post_release(payment: Payment, *, fee_minor: int, net_minor: int) -> LedgerTransaction:
    """Escrow pays out what remains of the payment: the coach's share and the platform fee.

    The caller computes ``fee_minor`` and ``net_minor`` on what is left after partial
    refunds; if they add up to more than escrow holds for this payment,
    ``check_invariants`` reports it (per payment, and as negative escrow overall).
    """
    fee = _non_negative(fee_minor, "fee")
    net = _non_negative(net_minor, "net")
    return _post("release", [
        Line("escrow", -(fee + net), payment.currency),
        Line("coach_payable", net, payment.currency, payment.coach_id),
        Line("platform_revenue", fee, payment.currency),
    ], payment=payment)


def post_refund(refund: Refund) -> LedgerTransaction:
    """Money goes back to the student. It comes out of escrow: refunds only happen
    before release, while the payment's money is still held."""
    amount = _non_negative(refund.amount_minor, "refund amount")
    _id_of(refund)
    payment = db.session.get(Payment, refund.payment_id)
    if payment is None:
        raise ValueError(f"Refund {refund.id} has no payment.")
    if payment.currency != refund.currency:
        raise ValueError(f"Refund in {refund.currency} for a payment in {payment.currency}.")
    return _post("refund", [
        Line("escrow", -amount, refund.currency),
        Line("refunds", amount, refund.currency),
    ], payment=payment, refund=refund)


def post_payout(payout: Payout) -> LedgerTransaction:
    """The coach's balance was transferred to them."""
    amount = _non_negative(payout.amount_minor, "payout amount")
    return _post("payout", [
        Line("coach_payable", -amount, payout.currency, payout.coach_id),
        Line("paid_out", amount, payout.currency, payout.coach_id),
    ], payout=payout)


def post_payout_reversal(payout: Payout, *, reason: str) -> LedgerTransaction:
    """A transfer was reversed: the money is owed to the coach again, not lost."""
    amount = _non_negative(payout.amount_minor, "payout amount")
    return _post("payout_reversal", [
        Line("paid_out", -amount, payout.currency, payout.coach_id),
        Line("coach_payable", amount, payout.currency, payout.coach_id),
    ], payout=payout, memo=reason)


# --- chargebacks and transfer reversals (issue 11) -------------------------------------

def _released_split(payment: Payment) -> tuple[int, int]:
    """(fee, net) that the payment's release posting moved: what a chargeback claws back."""
    rows = db.session.execute(
        select(LedgerEntry.account, LedgerEntry.amount_minor)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.payment_id == payment.id,
               LedgerTransaction.kind == "release")).all()
    amounts = {account: amount for account, amount in rows}
    return amounts.get("platform_revenue", 0), amounts.get("coach_payable", 0)


def post_chargeback_withdrawn(payment: Payment, *, memo: str = "") -> LedgerTransaction:
    """The cardholder's bank took the payment back.

    Still in escrow (a dispute lost before release): the escrowed money is what went.
    Released: what the release moved is clawed back from the platform's fee and from the
    coach's payable balance, which goes negative if the coach was already paid; the
    transfer reversal then repays it.
    """
    if payment.status in Payment.ESCROW_STATES:
        amount = _non_negative(payment.remaining_minor, "chargeback")
        lines = [Line("escrow", -amount, payment.currency),
                 Line("chargebacks", amount, payment.currency)]
    else:
        fee, net = _released_split(payment)
        lines = [Line("platform_revenue", -fee, payment.currency),
                 Line("coach_payable", -net, payment.currency, payment.coach_id),
                 Line("chargebacks", fee + net, payment.currency)]
    return _post("chargeback_withdrawn", lines, payment=payment, memo=memo)


def post_chargeback_reinstated(payment: Payment, *, memo: str = "") -> LedgerTransaction:
    """The bank returned a chargeback on a released payment: the fee is the platform's
    again and the coach is owed their share again."""
    fee, net = _released_split(payment)
    return _post("chargeback_reinstated", [
        Line("chargebacks", -(fee + net), payment.currency),
        Line("platform_revenue", fee, payment.currency),
        Line("coach_payable", net, payment.currency, payment.coach_id),
    ], payment=payment, memo=memo)


def post_transfer_reversal(payout: Payout, *, amount_minor: int, to_coach: bool,
                           memo: str = "") -> LedgerTransaction:
    """A transfer came back from the coach's account: to their payable balance (repaying a
    chargeback) or, for an admin's reversal, to ``reversed_payouts`` (owed to no one)."""
    amount = _non_negative(amount_minor, "reversal amount")
    target = Line("coach_payable", amount, payout.currency, payout.coach_id) if to_coach \
        else Line("reversed_payouts", amount, payout.currency)
    return _post("transfer_reversal", [
        Line("paid_out", -amount, payout.currency, payout.coach_id), target,
    ], payout=payout, memo=memo)


def post_repayment(repayment: Repayment) -> LedgerTransaction:
    """A won chargeback's coach was paid again (``Repayment``): their payable balance,
    owed again by the reinstatement, is transferred. Linked to the payment; the memo
    names the repayment (``_repayment_mismatches`` checks it was posted once)."""
    amount = _non_negative(repayment.amount_minor, "repayment amount")
    return _post("repayment", [
        Line("coach_payable", -amount, repayment.currency, repayment.coach_id),
        Line("paid_out", amount, repayment.currency, repayment.coach_id),
    ], payment=repayment.payment, memo=f"repayment #{repayment.id} after a won chargeback")


def _non_negative(amount: int, what: str) -> int:
    if amount < 0:
        raise ValueError(f"A {what} cannot be negative ({amount}).")
    return amount


def _post(
    kind: str,
    entries: Iterable[Line | tuple[Any, ...]],
    *,
    payment: Payment | None = None,
    payout: Payout | None = None,
    refund: Refund | None = None,
    memo: str = "",
) -> LedgerTransaction:
    """Validate ``entries`` and write them as one transaction; nothing is added if invalid.

    Refused with ``ValueError``: an unknown kind or account, a non-integer amount,
    mixed currencies, a coach account line without a coach, entries that do not sum
    to zero, and a transaction with no (non-zero) entries. Zero lines (a 0 fee, say)
    are dropped: they move nothing and would only clutter statements.
    """
    lines = _checked(kind, entries)
    transaction = LedgerTransaction(
        kind=kind,
        payment_id=_id_of(payment),
        payout_id=_id_of(payout),
        refund_id=_id_of(refund),
        memo=memo[:255],
    )
    for line in lines:
        LedgerEntry(transaction=transaction, account=line.account, coach_id=line.coach_id,
                    amount_minor=line.amount_minor, currency=line.currency)
    db.session.add(transaction)
    db.session.flush()
    return transaction


def post_refunds(refunds: list[tuple[int, int, int, str]]) -> list[int]:
    """``post_refund`` for a batch of (refund id, payment id, amount, currency).

    Two inserts whatever the batch's size: the transactions, then their entries,
    each checked as ``_post`` checks one. Returns the transaction ids.
    """
    checked = [(refund_id, payment_id, _checked("refund", [
        Line("escrow", -_non_negative(amount, "refund amount"), currency),
        Line("refunds", amount, currency)])) for refund_id, payment_id, amount, currency
        in refunds]
    if not checked:
        return []
    now = clock.now()
    transaction_ids = insert_many(LedgerTransaction, [
        {"kind": "refund", "payment_id": payment_id, "refund_id": refund_id, "memo": "",
         "created_at": now} for refund_id, payment_id, _lines in checked], key=("refund_id",))
    insert_rows(LedgerEntry, [
        {"transaction_id": transaction_id, "account": line.account, "coach_id": line.coach_id,
         "amount_minor": line.amount_minor, "currency": line.currency}
        for transaction_id, (_refund, _payment, lines) in zip(transaction_ids, checked,
                                                                strict=True)
        for line in lines])
    return transaction_ids


def _checked(kind: str, entries: Iterable[Line | tuple[Any, ...]]) -> list[Line]:
    """The entries of one transaction as lines, refused with ``ValueError`` if invalid."""
    if kind not in KINDS:
        raise ValueError(f"Unknown ledger transaction kind {kind!r}.")
    lines = [Line(*entry) for entry in entries]
    for line in lines:
        if line.account not in ACCOUNTS:
            raise ValueError(f"Unknown ledger account {line.account!r}.")
        # bool is an int subclass; floats and Decimals are never money here.
        if type(line.amount_minor) is not int:
            raise ValueError(f"Ledger amounts are integer minor units, not "
                             f"{line.amount_minor!r}.")
        if line.account in COACH_ACCOUNTS and line.coach_id is None:
            raise ValueError(f"A {line.account} entry must name its coach.")
    lines = [line for line in lines if line.amount_minor != 0]
    if not lines:
        raise ValueError(f"A {kind} transaction needs at least one non-zero entry.")
    currencies = {line.currency for line in lines}
    if len(currencies) != 1:
        raise ValueError(f"A ledger transaction has one currency, not {sorted(currencies)}.")
    total = sum(line.amount_minor for line in lines)
    if total != 0:
        raise ValueError(f"Ledger entries of a {kind} transaction sum to {total}, not 0.")
    return lines


def _id_of(obj: Any) -> int | None:
    """The primary key of ``obj``, flushing first if it is new (postings need real ids)."""
    if obj is None:
        return None
    if obj.id is None:
        db.session.flush()
    if obj.id is None:
        raise ValueError(f"{type(obj).__name__} must be saved before it can be posted.")
    return obj.id


# --- immutability ----------------------------------------------------------------

_LEDGER_MODELS = (LedgerTransaction, LedgerEntry)
_LEDGER_TABLES = frozenset(model.__table__.name for model in _LEDGER_MODELS)


def _refuse_ledger_changes(session: Session, _context: UOWTransaction, _instances) -> None:
    """Refuse, before anything reaches the database, a flush that would change history.

    Runs ahead of the flush's own transaction, so the caller's session stays usable
    (after it rolls back or expires the offending object).
    """
    for obj in session.deleted:
        if isinstance(obj, _LEDGER_MODELS):
            raise LedgerImmutableError(
                f"Ledger rows are never deleted ({type(obj).__name__} {obj.id}); "
                "post a correcting transaction instead.")
    for obj in session.dirty:
        if isinstance(obj, _LEDGER_MODELS) and session.is_modified(obj):
            raise LedgerImmutableError(
                f"Ledger rows are never changed ({type(obj).__name__} {obj.id}); "
                "post a correcting transaction instead.")
    for obj in session.new:
        # An entry added to a transaction that is already written would unbalance it.
        if isinstance(obj, LedgerEntry) and obj.transaction not in session.new:
            raise LedgerImmutableError(
                "Entries are only written together with their new transaction.")


def _refuse_bulk_ledger_changes(state: ORMExecuteState) -> None:
    """``session.execute(update(LedgerEntry))`` skips the unit of work; refuse it here.

    Plain SQL text (used by the test suite to empty tables, and by nothing else) is
    not inspected.
    """
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in _LEDGER_TABLES:
        raise LedgerImmutableError(
            f"Ledger rows are never changed or deleted ({table.name}); "
            "post a correcting transaction instead.")


def _register_guards() -> None:
    for name, listener in (("before_flush", _refuse_ledger_changes),
                           ("do_orm_execute", _refuse_bulk_ledger_changes)):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


_register_guards()


# --- balances --------------------------------------------------------------------

def balance(account: str, *, currency: str, coach_id: int | None = None) -> int:
    """The balance of ``account`` in ``currency``; of one coach's share if ``coach_id``."""
    if account not in ACCOUNTS:
        raise ValueError(f"Unknown ledger account {account!r}.")
    query = select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
        LedgerEntry.account == account, LedgerEntry.currency == currency)
    if coach_id is not None:
        query = query.where(LedgerEntry.coach_id == coach_id)
    # PostgreSQL's SUM(bigint) is NUMERIC (a Decimal here); money stays int.
    return int(db.session.scalar(query))


def coach_balances(coach_id: int) -> dict[str, dict[str, int]]:
    """``{currency: {"coach_payable": owed, "paid_out": transferred}}`` for one coach."""
    rows = db.session.execute(
        select(LedgerEntry.currency, LedgerEntry.account, func.sum(LedgerEntry.amount_minor))
        .where(LedgerEntry.coach_id == coach_id, LedgerEntry.account.in_(COACH_ACCOUNTS))
        .group_by(LedgerEntry.currency, LedgerEntry.account)
    )
    result: dict[str, dict[str, int]] = {}
    for currency, account, total in rows:
        result.setdefault(currency, dict.fromkeys(COACH_ACCOUNTS, 0))[account] = int(total)
    return result


# --- invariants ------------------------------------------------------------------

def check_invariants() -> list[str]:
    """Every way the books disagree with themselves or with payments and payouts.

    An empty list means healthy. Each check is a grouped SQL query that returns
    only the offending rows, so the cost does not grow with a healthy ledger's
    size on the Python side. Stripe-side amounts are reconciled elsewhere.
    """
    problems: list[str] = []
    problems += _unbalanced_transactions()
    problems += _malformed_transactions()
    problems += _negative_balances()
    problems += _escrow_mismatch()
    problems += _payment_mismatches()
    problems += _refund_mismatches()
    problems += _payout_mismatches()
    problems += _chargeback_mismatches()
    problems += _repayment_mismatches()
    return problems


def _entry_sum(condition: Any) -> Any:
    """SUM of the amounts of the entries meeting ``condition`` (0 when none do)."""
    return func.coalesce(func.sum(case((condition, LedgerEntry.amount_minor), else_=0)), 0)


def _count_kind(kind: str) -> Any:
    """COUNT of the distinct transactions of ``kind`` in a group of joined entries."""
    return func.count(func.distinct(
        case((LedgerTransaction.kind == kind, LedgerTransaction.id), else_=None)))


def _unbalanced_transactions() -> list[str]:
    """(a) Each transaction moves money, it does not create it: entries sum to zero."""
    total = func.sum(LedgerEntry.amount_minor)
    rows = db.session.execute(
        select(LedgerEntry.transaction_id, LedgerEntry.currency, total)
        .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
        .having(total != 0)
        .order_by(LedgerEntry.transaction_id, LedgerEntry.currency)
    )
    return [f"Ledger transaction {tx_id} does not balance: its {currency} entries sum to "
            f"{int(amount):+d}, not 0." for tx_id, currency, amount in rows]


def _malformed_transactions() -> list[str]:
    """Transactions that cannot be attributed: no entries, an unknown kind, a missing
    link to what caused them, coach accounts without a coach."""
    problems = []
    has_entries = exists().where(LedgerEntry.transaction_id == LedgerTransaction.id)
    for tx_id, kind in db.session.execute(
            select(LedgerTransaction.id, LedgerTransaction.kind)
            .where(~has_entries).order_by(LedgerTransaction.id)):
        problems.append(f"Ledger transaction {tx_id} ({kind}) has no entries.")

    T = LedgerTransaction
    unlinked = or_(
        T.kind.not_in(KINDS),
        and_(T.kind.in_(("payment_held", "release", "refund", "repayment",
                         *CHARGEBACK_KINDS)), T.payment_id.is_(None)),
        and_(T.kind == "refund", T.refund_id.is_(None)),
        and_(T.kind.in_(("payout", "payout_reversal", "transfer_reversal")),
             T.payout_id.is_(None)),
    )
    for tx_id, kind in db.session.execute(
            select(T.id, T.kind).where(unlinked).order_by(T.id)):
        if kind not in KINDS:
            problems.append(f"Ledger transaction {tx_id} has an unknown kind {kind!r}.")
        else:
            problems.append(f"Ledger transaction {tx_id} ({kind}) is not linked to the "
                            "payment, refund or payout it records.")

    for tx_id, account in db.session.execute(
            select(LedgerEntry.transaction_id, LedgerEntry.account)
            .where(LedgerEntry.account.in_(COACH_ACCOUNTS), LedgerEntry.coach_id.is_(None))
            .distinct().order_by(LedgerEntry.transaction_id)):
        problems.append(f"Ledger transaction {tx_id} has a {account} entry without a coach.")

    for tx_id, kind, entry_currency, expected in db.session.execute(
            select(T.id, T.kind, LedgerEntry.currency, Payment.currency)
            .join(LedgerEntry, LedgerEntry.transaction_id == T.id)
            .join(Payment, Payment.id == T.payment_id)
            .where(LedgerEntry.currency != Payment.currency)
            .distinct().order_by(T.id)):
        problems.append(f"Ledger transaction {tx_id} ({kind}) is in {entry_currency} but its "
                        f"payment is in {expected}.")
    for tx_id, kind, entry_currency, expected in db.session.execute(
            select(T.id, T.kind, LedgerEntry.currency, Payout.currency)
            .join(LedgerEntry, LedgerEntry.transaction_id == T.id)
            .join(Payout, Payout.id == T.payout_id)
            .where(LedgerEntry.currency != Payout.currency)
            .distinct().order_by(T.id)):
        problems.append(f"Ledger transaction {tx_id} ({kind}) is in {entry_currency} but its "
                        f"payout is in {expected}.")
    return problems


def _negative_balances() -> list[str]:
    """(b) Escrow only pays out what payments put in, so below zero it has released or
    refunded money twice (or more than was held). A coach's payable balance only pays
    out what was released to them, so below zero they were paid money they were
    never owed — except by a chargeback: the bank took back money already transferred,
    and the balance may be negative by what chargeback postings took from it, no more.
    What the banks hold (``chargebacks``) and reversed transfers owed to no one
    (``reversed_payouts``) are never negative either."""
    problems = []
    total = func.sum(LedgerEntry.amount_minor)
    for account, currency, amount in db.session.execute(
            select(LedgerEntry.account, LedgerEntry.currency, total)
            .where(LedgerEntry.account.in_(("escrow", "chargebacks", "reversed_payouts")))
            .group_by(LedgerEntry.account, LedgerEntry.currency).having(total < 0)
            .order_by(LedgerEntry.account, LedgerEntry.currency)):
        label = {"escrow": "Escrow", "chargebacks": "Chargebacks",
                 "reversed_payouts": "Reversed payouts"}[account]
        problems.append(f"{label} is negative in {currency}: {int(amount)}.")
    by_chargebacks = func.coalesce(func.sum(case(
        (LedgerTransaction.kind.in_(CHARGEBACK_KINDS), LedgerEntry.amount_minor), else_=0)), 0)
    for coach_id, currency, amount, clawed in db.session.execute(
            select(LedgerEntry.coach_id, LedgerEntry.currency, total, by_chargebacks)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.account == "coach_payable")
            .group_by(LedgerEntry.coach_id, LedgerEntry.currency)
            .having(total - by_chargebacks < 0)
            .order_by(LedgerEntry.coach_id, LedgerEntry.currency)):
        problems.append(f"Coach {coach_id}'s payable balance is negative in {currency}: "
                        f"{int(amount)}" + (f" (chargebacks account for {int(clawed)})"
                                            if clawed else "") + ".")
    return problems


def _escrow_mismatch() -> list[str]:
    """(c) Escrow holds exactly what payments still have there, per currency: the amount
    less refunds for payments held, disputed or partially refunded; nothing for the
    rest (released and refunded money has left; pending and failed never arrived)."""
    held = dict(db.session.execute(
        select(LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
        .where(LedgerEntry.account == "escrow").group_by(LedgerEntry.currency)).all())
    owed = dict(db.session.execute(
        select(Payment.currency, func.sum(Payment.amount_minor - Payment.refunded_minor))
        .where(Payment.status.in_(Payment.ESCROW_STATES)).group_by(Payment.currency)).all())
    problems = []
    for currency in sorted(set(held) | set(owed)):
        ledger_amount, expected = int(held.get(currency) or 0), int(owed.get(currency) or 0)
        if ledger_amount != expected:
            problems.append(f"Escrow holds {ledger_amount} {currency} but payments still "
                            f"in escrow add up to {expected} {currency}.")
    return problems


def _payment_mismatches() -> list[str]:
    """(d) Each payment's own postings agree with its status and refunded amount.

    A funded payment was held exactly once (unfunded ones never); a released payment
    was released exactly once (others never); ``refunded_minor`` is what its refund
    postings sent back; and what it has left in escrow is what its status says.
    """
    T, E = LedgerTransaction, LedgerEntry
    per_payment = (
        select(
            T.payment_id.label("payment_id"),
            _count_kind("payment_held").label("holds"),
            _count_kind("release").label("releases"),
            _entry_sum(and_(T.kind == "refund", E.account == "refunds")).label("refunded"),
            _entry_sum(E.account == "escrow").label("escrow"),
        )
        .join(E, E.transaction_id == T.id)
        .where(T.payment_id.is_not(None))
        .group_by(T.payment_id)
        .subquery()
    )
    holds = func.coalesce(per_payment.c.holds, 0)
    releases = func.coalesce(per_payment.c.releases, 0)
    refunded = func.coalesce(per_payment.c.refunded, 0)
    escrow = func.coalesce(per_payment.c.escrow, 0)
    expected_holds = case((Payment.status.in_(Payment.FUNDED_STATES), 1), else_=0)
    expected_releases = case((Payment.status == "released", 1), else_=0)
    expected_escrow = case((Payment.status.in_(Payment.ESCROW_STATES),
                            Payment.amount_minor - Payment.refunded_minor), else_=literal(0))
    rows = db.session.execute(
        select(Payment.id, Payment.status, Payment.refunded_minor, Payment.currency,
               holds, releases, refunded, escrow, expected_holds, expected_releases,
               expected_escrow)
        .outerjoin(per_payment, per_payment.c.payment_id == Payment.id)
        .where(or_(holds != expected_holds, releases != expected_releases,
                   refunded != Payment.refunded_minor, escrow != expected_escrow))
        .order_by(Payment.id)
    )
    problems = []
    for (payment_id, status, refunded_minor, currency, n_holds, n_releases, n_refunded,
         in_escrow, want_holds, want_releases, want_escrow) in rows:
        label = f"Payment {payment_id} ({status})"
        if n_holds != want_holds:
            problems.append(f"{label} has {n_holds} payment_held postings, expected "
                            f"{want_holds}.")
        if n_releases != want_releases:
            problems.append(f"{label} has {n_releases} release postings, expected "
                            f"{want_releases}.")
        if int(n_refunded) != refunded_minor:
            problems.append(f"{label} records {refunded_minor} {currency} refunded but its "
                            f"refund postings add up to {int(n_refunded)}.")
        if int(in_escrow) != int(want_escrow):
            problems.append(f"{label} has {int(in_escrow)} {currency} in escrow, expected "
                            f"{int(want_escrow)}.")
    return problems


def _refund_mismatches() -> list[str]:
    """Each refund is posted at most once, for its own amount and its own payment."""
    T, E = LedgerTransaction, LedgerEntry
    postings = _count_kind("refund")
    posted = _entry_sum(E.account == "refunds")
    wrong_payment = func.max(case((T.payment_id != Refund.payment_id, 1), else_=0))
    rows = db.session.execute(
        select(Refund.id, Refund.amount_minor, postings, posted, wrong_payment)
        .join(T, and_(T.refund_id == Refund.id, T.kind == "refund"))
        .join(E, E.transaction_id == T.id)
        .group_by(Refund.id, Refund.amount_minor)
        .having(or_(postings != 1, posted != Refund.amount_minor, wrong_payment == 1))
        .order_by(Refund.id)
    )
    problems = []
    for refund_id, amount, n_postings, n_posted, mismatched in rows:
        if n_postings != 1:
            problems.append(f"Refund {refund_id} is posted {n_postings} times.")
        elif int(n_posted) != amount:
            problems.append(f"Refund {refund_id} is for {amount} but its posting refunds "
                            f"{int(n_posted)}.")
        if mismatched:
            problems.append(f"Refund {refund_id} is posted against another payment.")
    return problems


def _payout_mismatches() -> list[str]:
    """(e) A paid payout was posted once (net of reversals) for exactly its amount; any
    other payout has nothing net posted; no payout is posted twice or reversed more
    often than it was posted."""
    T, E = LedgerTransaction, LedgerEntry
    per_payout = (
        select(
            T.payout_id.label("payout_id"),
            _count_kind("payout").label("payouts"),
            (_count_kind("payout_reversal") + _count_kind("transfer_reversal"))
            .label("reversals"),
            _entry_sum(E.account == "paid_out").label("paid_out"),
        )
        .join(E, E.transaction_id == T.id)
        .where(T.payout_id.is_not(None))
        .group_by(T.payout_id)
        .subquery()
    )
    payouts = func.coalesce(per_payout.c.payouts, 0)
    reversals = func.coalesce(per_payout.c.reversals, 0)
    paid_out = func.coalesce(per_payout.c.paid_out, 0)
    expected_net_postings = case((Payout.status == "paid", 1), else_=0)
    expected_paid_out = case((Payout.status == "paid", Payout.amount_minor), else_=literal(0))
    rows = db.session.execute(
        select(Payout.id, Payout.status, Payout.currency, payouts, reversals, paid_out,
               expected_net_postings, expected_paid_out)
        .outerjoin(per_payout, per_payout.c.payout_id == Payout.id)
        .where(or_(payouts > 1, reversals > payouts,
                   payouts - reversals != expected_net_postings,
                   paid_out != expected_paid_out))
        .order_by(Payout.id)
    )
    problems = []
    for (payout_id, status, currency, n_payouts, n_reversals, n_paid_out, want_net,
         want_paid_out) in rows:
        label = f"Payout {payout_id} ({status})"
        if n_payouts > 1:
            problems.append(f"{label} is posted {n_payouts} times.")
        if n_reversals > n_payouts:
            problems.append(f"{label} is reversed {n_reversals} times but posted "
                            f"{n_payouts} times.")
        if n_payouts - n_reversals != want_net:
            problems.append(f"{label} has {n_payouts - n_reversals} payout postings net of "
                            f"reversals, expected {want_net}.")
        if int(n_paid_out) != int(want_paid_out):
            problems.append(f"{label} has {int(n_paid_out)} {currency} paid out in the "
                            f"ledger, expected {int(want_paid_out)}.")
    return problems


def _chargeback_mismatches() -> list[str]:
    """(f) The books follow the bank: a payment's chargeback postings (withdrawn less
    reinstated) are 1 while its bank dispute says the bank holds the money and 0
    otherwise; a transfer reversal is posted once when it succeeded, never before."""
    T = LedgerTransaction
    net = (_count_kind("chargeback_withdrawn") - _count_kind("chargeback_reinstated"))
    per_payment = (select(T.payment_id.label("payment_id"), net.label("net"))
                   .join(LedgerEntry, LedgerEntry.transaction_id == T.id)
                   .where(T.kind.in_(CHARGEBACK_KINDS)).group_by(T.payment_id).subquery())
    out = (select(Dispute.payment_id.label("payment_id"))
           .where(Dispute.funds_out.is_(True)).distinct().subquery())
    posted = func.coalesce(per_payment.c.net, 0)
    expected = case((out.c.payment_id.is_not(None), 1), else_=0)
    problems = [f"Payment {payment_id} has {int(n)} chargeback postings outstanding, its bank "
                f"dispute says {int(want)}."
                for payment_id, n, want in db.session.execute(
                    select(Payment.id, posted, expected)
                    .outerjoin(per_payment, per_payment.c.payment_id == Payment.id)
                    .outerjoin(out, out.c.payment_id == Payment.id)
                    .where(posted != expected).order_by(Payment.id))]
    postings = (select(T.payout_id.label("payout_id"), func.count(T.id).label("n"))
                .where(T.kind == "transfer_reversal").group_by(T.payout_id).subquery())
    count = func.coalesce(postings.c.n, 0)
    want = case((TransferReversal.status == "succeeded", 1), else_=0)
    for reversal_id, status, n in db.session.execute(
            select(TransferReversal.id, TransferReversal.status, count)
            .outerjoin(postings, postings.c.payout_id == TransferReversal.payout_id)
            .where(count != want).order_by(TransferReversal.id)):
        problems.append(f"Transfer reversal {reversal_id} ({status}) is posted {int(n)} times.")
    return problems


def _repayment_mismatches() -> list[str]:
    """(g) A payment's repayment postings are exactly its paid repayments, once each and
    for their amounts; a repayment not paid yet has nothing posted."""
    T, E = LedgerTransaction, LedgerEntry
    posted = (select(T.payment_id.label("payment_id"), func.count(T.id.distinct()).label("n"),
                     _entry_sum(E.account == "paid_out").label("amount"))
              .join(E, E.transaction_id == T.id).where(T.kind == "repayment")
              .group_by(T.payment_id).subquery())
    paid = (select(Repayment.payment_id.label("payment_id"), func.count().label("n"),
                   func.sum(Repayment.amount_minor).label("amount"))
            .where(Repayment.status == "paid").group_by(Repayment.payment_id).subquery())
    payment_ids = union_all(select(posted.c.payment_id), select(paid.c.payment_id)).subquery()
    n_posted, n_paid = func.coalesce(posted.c.n, 0), func.coalesce(paid.c.n, 0)
    amount_posted = func.coalesce(posted.c.amount, 0)
    amount_paid = func.coalesce(paid.c.amount, 0)
    return [f"Payment {payment_id} has {int(n)} repayment postings for {int(a)}, its paid "
            f"repayments are {int(m)} for {int(b)}."
            for payment_id, n, a, m, b in db.session.execute(
                select(payment_ids.c.payment_id, n_posted, amount_posted, n_paid, amount_paid)
                .distinct()
                .outerjoin(posted, posted.c.payment_id == payment_ids.c.payment_id)
                .outerjoin(paid, paid.c.payment_id == payment_ids.c.payment_id)
                .where(or_(n_posted != n_paid, amount_posted != amount_paid))
                .order_by(payment_ids.c.payment_id))]


# --- the check, off the request path ---------------------------------------------

#: Problems kept with a check's result; the count says how many there were in all.
PROBLEMS_KEPT = 50
#: How long a running check holds its row; a worker that died lets another take over.
CHECK_LEASE = timedelta(minutes=30)
#: Checks asked for longer ago than this are deleted by the next check (not the newest result).
CHECK_HISTORY = timedelta(days=30)


def pending_check(now: datetime | None = None) -> LedgerCheck | None:
    """The newest check waiting for a worker or running, while its claim is live."""
    now = now or clock.now()
    return db.session.scalar(
        select(LedgerCheck)
        .where(LedgerCheck.finished_at.is_(None),
               or_(LedgerCheck.queued_until > now, LedgerCheck.claimed_until > now))
        .order_by(LedgerCheck.requested_at.desc(), LedgerCheck.id.desc()).limit(1))


def last_finished_check() -> LedgerCheck | None:
    """The result to show: of the finished checks, the one that started last, so it read
    the newest state of the books (two overlapping checks may finish in either order)."""
    return db.session.scalar(
        select(LedgerCheck).where(LedgerCheck.finished_at.is_not(None))
        .options(joinedload(LedgerCheck.requested_by))
        .order_by(LedgerCheck.started_at.desc(), LedgerCheck.id.desc()).limit(1))


def request_check(*, actor=None, source: str = "admin") -> tuple[LedgerCheck, bool]:
    """Queue a check unless one is already waiting or running; returns (check, queued).

    The row is claimed in this transaction and the job dispatched when it commits (to
    RQ where Redis is set, run in this process otherwise), like every other job. Two
    requests at the same moment may both queue one: each run writes only its own row,
    so that costs a second read of the ledger, never a wrong result.
    """
    waiting = pending_check()
    if waiting is not None:
        return waiting, False
    check = LedgerCheck(source=source, requested_by_id=getattr(actor, "id", None),
                        requested_at=clock.now())
    db.session.add(check)
    db.session.flush()
    enqueue_after_commit(run_check, check.id, claim=(LedgerCheck, check.id))
    return check, True


def request_check_if_due(interval: timedelta) -> int:
    """The sweep's schedule: queue a check when none was asked for within ``interval``."""
    last = db.session.scalar(select(func.max(LedgerCheck.requested_at)))
    if last is not None and last > clock.now() - interval:
        return 0
    _, queued = request_check(source="schedule")
    return int(queued)


@job
def run_check(check_id: int) -> int | None:
    """Run ``check_invariants`` for one requested check and keep its result.

    The row is claimed first (compare-and-set), so a duplicate job finds it claimed or
    finished and does nothing. The check reads one snapshot of the database, so money
    moving while it runs cannot show up as a mismatch between two of its queries. The
    result is written only by the holder of the claim. Returns the number of problems
    (None if another job had the row). An error is recorded on the row and re-raised
    so the worker records the failure too.
    """
    with transaction():
        claim = _claim_check(check_id)
    if claim is None:
        return None
    started = time.perf_counter()
    try:
        with transaction():
            _read_one_snapshot()
            problems = check_invariants()
    except Exception as error:
        with transaction():
            _finish_check(check_id, claim, started, error=f"{type(error).__name__}: {error}")
        raise
    _finish_check(check_id, claim, started, problems=problems)
    return len(problems)


def _claim_check(check_id: int) -> datetime | None:
    now = clock.now()
    until = now + CHECK_LEASE
    result = db.session.execute(
        update(LedgerCheck)
        .where(LedgerCheck.id == check_id, LedgerCheck.finished_at.is_(None),
               or_(LedgerCheck.claimed_until.is_(None), LedgerCheck.claimed_until <= now))
        .values(claimed_until=until, started_at=now, queued_until=None)
        .execution_options(synchronize_session=False))
    return until if result.rowcount == 1 else None


def _read_one_snapshot() -> None:
    """Make this transaction's reads one consistent snapshot of the database.

    PostgreSQL's default (read committed) gives each statement its own snapshot;
    repeatable read gives the whole transaction one. SQLite in WAL mode reads one
    snapshot inside an explicit transaction. Only a transaction of our own can be
    set up this way: joined to one someone else opened (a test's), it is left alone.
    """
    if isinstance(db.session.get_bind(), Connection):
        return
    if db.engine.dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    elif db.engine.dialect.name == "sqlite":
        db.session.connection().exec_driver_sql("BEGIN")


def _finish_check(check_id: int, claim: datetime, started: float, *,
                  problems: list[str] | None = None, error: str | None = None) -> None:
    now = clock.now()
    db.session.execute(
        update(LedgerCheck)
        .where(LedgerCheck.id == check_id, LedgerCheck.claimed_until == claim,
               LedgerCheck.finished_at.is_(None))
        .values(finished_at=now, claimed_until=None,
                duration_ms=round((time.perf_counter() - started) * 1000),
                problem_count=None if problems is None else len(problems),
                problems=None if problems is None else problems[:PROBLEMS_KEPT],
                error=error[:2000] if error else None)
        .execution_options(synchronize_session=False))
    # Old results go, and so do requests whose job never ran (Redis lost it); the newest
    # result stays however old it is, so the page never forgets the last answer it had.
    newest = (select(LedgerCheck.id).where(LedgerCheck.finished_at.is_not(None))
              .order_by(LedgerCheck.started_at.desc(), LedgerCheck.id.desc()).limit(1)
              .scalar_subquery())
    db.session.execute(delete(LedgerCheck)
                       .where(LedgerCheck.requested_at < now - CHECK_HISTORY,
                              LedgerCheck.id != newest)
                       .execution_options(synchronize_session=False))
