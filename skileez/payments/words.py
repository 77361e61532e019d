"""What the state of a payment's money is, in words: one answer for every page and email.

Pages used to each phrase the payment status themselves, and drifted apart: a
completed session read "held until the session is done" beside a release date,
a future release read in the past tense, a resolved dispute still read "held",
and an unpaid hold that simply ran out read "Failed". ``describe_money`` is now
the only place that turns a payment into words. It reads the amounts from the
ledger (what escrow still holds for this payment, and the split actually posted
at release) and the payment's status, takes its tense from the clock (a release
date still ahead "will be", one behind "was" or "is being"), and writes dates in
the viewer's zone with the zone named.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import g, has_app_context
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload

from skileez import clock
from skileez.core.money import format_money, share
from skileez.core.timezones import format_local
from skileez.core.words import duration_words
from skileez.extensions import db
from skileez.notifications.compose import EMAIL_BATCH
from skileez.payments.models import Dispute, LedgerEntry, LedgerTransaction, Payment
from skileez.policy import get_policy
from skileez.sessions import lifecycle


@dataclass(frozen=True)
class MoneyAmounts:
    """Integer minor units. ``coach_share`` and ``fee`` are the posted split once the
    money was released, before that the split of what escrow still holds."""

    currency: str
    price: int
    paid: int
    refunded: int
    held: int
    coach_share: int
    fee: int


@dataclass(frozen=True)
class MoneyWords:
    headline: str
    detail: str
    amounts: MoneyAmounts
    # A Bootstrap colour for the headline's badge.
    tone: str = "secondary"


def _role(payment: Payment, viewer) -> str:
    viewer_id = getattr(viewer, "id", None)
    if viewer_id == payment.student_id:
        return "student"
    if viewer_id == payment.coach_id:
        return "coach"
    return "admin"


@dataclass(frozen=True)
class LedgerFigures:
    """What the ledger says about one payment: escrow's balance and the release's split."""

    held: int = 0
    released: tuple[int, int] | None = None  # (coach share, fee) once released
    # Issue 11: what the cardholder's bank holds of it now (chargeback postings), and the
    # status of its newest bank dispute, if there is one.
    bank_holds: int = 0
    bank_status: str | None = None


def _ledger_statement(payment_ids):
    """Escrow balances, release and chargeback postings of these payments and their newest
    bank dispute's status, in one grouped query."""
    bank_status = (select(Dispute.bank_status)
                   .where(Dispute.payment_id == LedgerTransaction.payment_id,
                          Dispute.stripe_dispute_id.is_not(None))
                   .order_by(Dispute.id.desc()).limit(1).correlate(LedgerTransaction)
                   .scalar_subquery())
    return (select(LedgerTransaction.payment_id, LedgerTransaction.kind, LedgerEntry.account,
                   db.func.sum(LedgerEntry.amount_minor), bank_status)
            .join(LedgerTransaction, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.payment_id.in_(payment_ids),
                   or_(LedgerEntry.account.in_(("escrow", "chargebacks")),
                       and_(LedgerTransaction.kind == "release",
                            LedgerEntry.account.in_(("coach_payable", "platform_revenue")))))
            .group_by(LedgerTransaction.payment_id, LedgerTransaction.kind,
                      LedgerEntry.account))


def ledger_figures(payment_ids) -> dict[int, LedgerFigures]:
    """The ledger's figures for each of these payments, from one query whatever their number."""
    held: dict[int, int] = {}
    released: dict[int, dict[str, int]] = {}
    bank: dict[int, int] = {}
    statuses: dict[int, str | None] = {}
    for payment_id, kind, account, total, status in db.session.execute(
            _ledger_statement(list(payment_ids))):
        statuses[payment_id] = status
        if account == "escrow":
            held[payment_id] = held.get(payment_id, 0) + int(total or 0)
        if account == "chargebacks":
            bank[payment_id] = bank.get(payment_id, 0) + int(total or 0)
        if kind == "release" and account not in ("escrow", "chargebacks"):
            released.setdefault(payment_id, dict.fromkeys(
                ("coach_payable", "platform_revenue"), 0))[account] += int(total or 0)
    return {payment_id: LedgerFigures(
        held=held.get(payment_id, 0),
        released=(released[payment_id]["coach_payable"],
                  released[payment_id]["platform_revenue"])
        if payment_id in released else None,
        bank_holds=bank.get(payment_id, 0), bank_status=statuses.get(payment_id))
        for payment_id in payment_ids}


_PREFETCHED = "_money_ledger_figures"


def prefetch(payments) -> None:
    """Read the ledger for every payment a list page shows in one query, instead of one
    per row when each row's ``money_words`` is asked; kept for this request only."""
    ids = [payment.id for payment in payments]
    if ids and has_app_context():
        g.setdefault(_PREFETCHED, {}).update(ledger_figures(ids))


def _figures(payment: Payment) -> LedgerFigures:
    """Prefetched by the page's list if it did, else read for this payment alone."""
    cached = g.get(_PREFETCHED, {}).get(payment.id) if has_app_context() else None
    return cached if cached is not None else ledger_figures([payment.id])[payment.id]


def money_amounts(payment: Payment) -> MoneyAmounts:
    figures = _figures(payment)
    released = figures.released
    if released is not None:
        coach_share, fee = released
    else:
        base = payment.remaining_minor if payment.paid_at else payment.amount_minor
        fee = share(base, get_policy().platform_fee)
        coach_share = base - fee
    return MoneyAmounts(currency=payment.currency, price=payment.amount_minor,
                        paid=payment.amount_minor if payment.paid_at else 0,
                        refunded=payment.refunded_minor,
                        held=figures.held if payment.paid_at else 0,
                        coach_share=coach_share, fee=fee)


def describe_money(payment: Payment, viewer, now: datetime | None = None) -> MoneyWords:
    """Headline and sentence for this payment's money, as ``viewer`` should read it now.

    A list page calls ``prefetch`` (or ``money_words_for``) first, so its rows' amounts
    come from one query.
    """
    now = now or clock.now()
    role = _role(payment, viewer)
    tz = getattr(viewer, "timezone", None) or "UTC"
    amounts = money_amounts(payment)

    def money(minor: int) -> str:
        return format_money(minor, payment.currency)

    def at(moment: datetime | None) -> str:
        return format_local(moment, tz, "short")

    coach = "you" if role == "coach" else payment.coach.name
    card = "your card" if role == "student" else f"{payment.student.name}'s card"
    session = payment.session
    status = payment.status

    def words(headline: str, detail: str, tone: str) -> MoneyWords:
        return MoneyWords(headline, detail, amounts, tone)

    if not payment.is_funded:
        hold = session.hold_expires_at if session is not None else None
        if session is not None and session.status == "pending_payment" and hold and hold > now:
            keep = (f"Pay by {at(hold)} to keep this time." if role == "student"
                    else f"The time is held for payment until {at(hold)}.")
            if status == "failed":
                reason = (payment.failure_message or "The last attempt did not go through.")
                return words("Not paid yet — the last attempt failed",
                             f"{reason.rstrip('.')}. {keep}", "warning")
            return words("Not paid yet", keep, "warning")
        return words("Not paid — the booking expired",
                     "The hold on this time ran out before payment, so nothing was charged "
                     "and the time was released.", "secondary")

    if status == "released" and (bank := _after_release_chargeback(
            payment, role, money, coach, card, amounts)) is not None:
        return words(*bank)
    if status == "released":
        when = f" on {at(payment.released_at)}" if payment.released_at else ""
        detail = f"{money(amounts.coach_share)} was released to {coach}{when}"
        if amounts.refunded:
            detail += f", after {money(amounts.refunded)} was refunded to {card}"
        detail += f"; the Skileez fee was {money(amounts.fee)}."
        headline = "Paid — released to you" if role == "coach" else \
            "Paid — released to the coach"
        return words(headline, detail, "success")

    if status == "refunded":
        pending = any(r.status != "succeeded" for r in payment.refunds)
        if pending:
            return words("Refund on its way",
                         f"{money(amounts.refunded)} is being refunded to {card}.", "secondary")
        last = max((r.updated_at for r in payment.refunds), default=None)
        when = f" on {at(last)}" if last else ""
        return words("Refunded", f"{money(amounts.refunded)} was refunded to {card}{when}.",
                     "secondary")

    if status == "charged_back":
        return words("Taken back by the bank",
                     f"The bank returned {money(payment.amount_minor - amounts.refunded)} to "
                     f"{card} after a card dispute; nothing of it is released to {coach}.",
                     "secondary")

    # The money is still in escrow: held, partly refunded or disputed.
    refunded = ""
    if amounts.refunded:
        verb = "is being" if any(r.status != "succeeded" for r in payment.refunds) else "was"
        refunded = f"{money(amounts.refunded)} {verb} refunded to {card}. "
    if status == "disputed":
        return words("Disputed — on hold",
                     f"{refunded}{money(amounts.held)} is held until an admin decides the "
                     "dispute; nothing is released to the coach before then.", "danger")
    headline = "Partly refunded" if status == "partially_refunded" else "Paid — held by Skileez"
    if session is not None and lifecycle.is_going_ahead(session):
        delay = duration_words(get_policy().escrow_release_delay)
        return words(headline,
                     f"{refunded}{money(amounts.held)} is held until the session is done, "
                     f"then released to {coach} {delay} after it is completed.", "info")
    terms = " as the cancellation terms say" if session is not None \
        and session.status == "cancelled" else ""
    if payment.release_at is None:
        return words(headline, f"{refunded}{money(amounts.held)} is held; its release to "
                     f"{coach} is not scheduled yet.", "info")
    if payment.release_at > now:
        if status == "held":
            headline = f"Paid — held until {at(payment.release_at)}"
        detail = (f"{refunded}{money(amounts.coach_share)} will be released to {coach} on "
                  f"{at(payment.release_at)}{terms}.")
        return words(headline, detail, "info")
    return words(headline if status == "partially_refunded" else "Paid — being released",
                 f"{refunded}{money(amounts.coach_share)} is being released to {coach}{terms}; "
                 f"the release was due {at(payment.release_at)}.", "info")


def _after_release_chargeback(payment: Payment, role: str, money, coach: str, card: str,
                              amounts: MoneyAmounts) -> tuple[str, str, str] | None:
    """(headline, detail, tone) for a released payment the cardholder's bank disputed, or
    None when it did not (or closed it some other way): "released" alone would hide that
    the bank took the money back or is deciding."""
    figures = _figures(payment)
    status = figures.bank_status
    if status is None:
        return None
    bank = "your bank" if role == "student" else f"{payment.student.name}'s bank"
    share_ = money(amounts.coach_share)
    theirs = "your" if role == "coach" else f"{payment.coach.name}'s"
    if status == "lost":
        return ("Taken back by the bank",
                f"{bank[0].upper()}{bank[1:]} decided the card dispute for the cardholder and "
                f"returned {money(figures.bank_holds or payment.amount_minor)} to {card}; "
                f"{theirs} share of {share_} was taken back.", "secondary")
    if status == "won":
        return ("Bank decided for the coach",
                f"{bank[0].upper()}{bank[1:]} decided the card dispute for the coach: "
                f"{share_} stays released to {coach}.", "success")
    if status in ("warning_closed", "charge_refunded", "prevented"):
        return None
    if figures.bank_holds:
        return ("Disputed at the bank — money taken back",
                f"{bank[0].upper()}{bank[1:]} took {money(figures.bank_holds)} back while it "
                f"decides a card dispute; {theirs} share of {share_} is taken back until then "
                "and owed again if the bank decides for the coach.", "danger")
    return ("Disputed at the bank — released to the coach" if role != "coach"
            else "Disputed at the bank — released to you",
            f"{bank[0].upper()}{bank[1:]} is reviewing a card dispute; {share_} stays "
            f"released to {coach} unless the bank takes the payment back.", "warning")


def money_words(subject, viewer=None, now: datetime | None = None) -> MoneyWords | None:
    """``describe_money`` for templates and emails: ``subject`` is a payment or a session
    id (email payloads carry the id); the viewer defaults to whoever is signed in."""
    if viewer is None:
        from flask_login import current_user

        viewer = current_user
    if isinstance(subject, Payment):
        payment = subject
    elif not str(subject or "").isdigit():
        payment = None
    else:
        payment = _payment_of_session(int(subject))
    return describe_money(payment, viewer, now) if payment is not None else None


def _payment_of_session(session_id: int) -> Payment | None:
    """The session's payment; while a batch of emails renders, the batch's payments (and
    the people and sessions their words name) are loaded in a few queries at the first
    call, instead of several queries per email."""
    batch = g.get(EMAIL_BATCH)
    if batch is None:
        return db.session.scalar(select(Payment).where(Payment.session_id == session_id))
    if "payments" not in batch:
        ids = sorted({int(p["session_id"]) for p in batch["payloads"]
                      if str(p.get("session_id") or "").isdigit()})
        batch["payments"] = {payment.session_id: payment for payment in db.session.scalars(
            select(Payment).where(Payment.session_id.in_(ids)).options(
                selectinload(Payment.session), selectinload(Payment.coach),
                selectinload(Payment.student), selectinload(Payment.refunds)))}
        prefetch(batch["payments"].values())
    if session_id in batch["payments"]:
        return batch["payments"][session_id]
    return db.session.scalar(select(Payment).where(Payment.session_id == session_id))


def money_words_for(payments: Iterable[Payment], viewer, now: datetime | None = None
                    ) -> dict[int, MoneyWords]:
    """``describe_money`` for every payment of a list, with one query for all the amounts.

    The payments should come with their session, people and refunds loaded."""
    payments = list(payments)
    prefetch(payments)
    return {payment.id: describe_money(payment, viewer, now) for payment in payments}
