"""Read-only money views: a coach's earnings, a student's payments."""

from __future__ import annotations

from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import joinedload, raiseload, selectinload

from skileez.core.pagination import paginate, paginate_counted
from skileez.extensions import db
from skileez.payments import words
from skileez.payments.models import Dispute, LedgerEntry, Payment, Payout, TransferReversal
from skileez.sessions.models import Session

# The earnings page lists this many payouts, newest first; the totals cover them all.
PAYOUTS_SHOWN = 100
PAYMENTS_PER_PAGE = 20
PAYOUT_STATES_OWED = ("payable", "pending", "failed")


def _listed(statement):
    """What a payments list shows of each row, loaded with it rather than row by row."""
    return statement.options(
        joinedload(Payment.session).joinedload(Session.contract),
        joinedload(Payment.student), joinedload(Payment.coach),
        selectinload(Payment.refunds),
        # Anything else a row asked for would be one query per row: refused, not loaded.
        raiseload("*"))


def _totals(coach) -> dict[str, dict[str, int]]:
    """Held, paid and payable per currency, summed by the database in one statement."""
    held = (select(Payment.currency, literal("held").label("kind"),
                   func.sum(Payment.amount_minor - Payment.refunded_minor).label("total"))
            .where(Payment.coach_id == coach.id, Payment.status.in_(Payment.ESCROW_STATES))
            .group_by(Payment.currency))
    paid = (select(Payout.currency, literal("paid").label("kind"),
                   func.sum(Payout.amount_minor).label("total"))
            .where(Payout.coach_id == coach.id, Payout.status == "paid")
            .group_by(Payout.currency))
    payable = (select(Payout.currency, literal("payable").label("kind"),
                      func.sum(Payout.amount_minor).label("total"))
               .where(Payout.coach_id == coach.id, Payout.status.in_(PAYOUT_STATES_OWED))
               .group_by(Payout.currency))
    # Issue 11: the coach's balance in the books (negative only by a chargeback) and how
    # many card disputes they have, so the earnings page asks for those only if any.
    balance = (select(LedgerEntry.currency, literal("balance").label("kind"),
                      func.sum(LedgerEntry.amount_minor).label("total"))
               .where(LedgerEntry.coach_id == coach.id,
                      LedgerEntry.account == "coach_payable")
               .group_by(LedgerEntry.currency))
    disputed = (select(Payment.currency, literal("bank_disputes").label("kind"),
                       func.count(Dispute.id).label("total"))
                .join(Dispute, Dispute.payment_id == Payment.id)
                .where(Payment.coach_id == coach.id, Dispute.stripe_dispute_id.is_not(None))
                .group_by(Payment.currency))
    totals: dict[str, dict[str, int]] = {}
    for currency, kind, total in db.session.execute(union_all(held, paid, payable, balance,
                                                              disputed)):
        bucket = totals.setdefault(currency, {"held": 0, "paid": 0, "payable": 0,
                                              "balance": 0, "bank_disputes": 0})
        bucket[kind] += int(total or 0)
    return dict(sorted(totals.items()))


def coach_earnings(coach) -> dict:
    """Held (soonest release first, a page at a time), paid out, and payable balances."""
    # Counted with the page (one statement): with card disputes listed too, the page is
    # at its budget of 10.
    held = paginate_counted(_listed(
        select(Payment).where(Payment.coach_id == coach.id,
                              Payment.status.in_(Payment.ESCROW_STATES))
        # Sessions not yet completed have no release time: those by when they take place
        # (a tester found them in booking order, which reads as no order at all).
        .order_by(Payment.release_at.is_(None), Payment.release_at,
                  select(Session.starts_at).where(Session.id == Payment.session_id)
                  .scalar_subquery(), Payment.id)),
        per_page=PAYMENTS_PER_PAGE)
    words.prefetch(held.items)
    payouts = list(db.session.scalars(
        select(Payout).where(Payout.coach_id == coach.id)
        .options(joinedload(Payout.payment).joinedload(Payment.session)
                 .joinedload(Session.contract),
                 joinedload(Payout.payment).joinedload(Payment.student),
                 joinedload(Payout.reversal))
        .order_by(Payout.created_at.desc(), Payout.id.desc()).limit(PAYOUTS_SHOWN)))
    totals = _totals(coach)
    return {"held": held, "payouts": payouts, "totals": totals,
            **coach_chargebacks(coach, totals)}


#: Card disputes listed on the earnings page, newest first.
CHARGEBACKS_SHOWN = 20


def coach_chargebacks(coach, totals: dict[str, dict[str, int]]) -> dict:
    """The coach's card disputes (what the bank took and gave back), asked for only when
    ``totals`` counts any, and per currency their balance in the books when a chargeback
    made it negative."""
    negative = {currency: t["balance"] for currency, t in totals.items() if t["balance"] < 0}
    if not any(t["bank_disputes"] for t in totals.values()):
        return {"chargebacks": [], "negative_balances": negative}
    disputes = list(db.session.scalars(
        select(Dispute).join(Payment, Payment.id == Dispute.payment_id)
        .where(Payment.coach_id == coach.id, Dispute.stripe_dispute_id.is_not(None))
        .options(joinedload(Dispute.payment).options(
            joinedload(Payment.session).joinedload(Session.contract),
            joinedload(Payment.student),
            joinedload(Payment.payout).joinedload(Payout.reversal)
            .joinedload(TransferReversal.repayment)))
        .order_by(Dispute.created_at.desc(), Dispute.id.desc()).limit(CHARGEBACKS_SHOWN)))
    return {"chargebacks": disputes, "negative_balances": negative}


def student_payments(student):
    """The student's payments, newest first, a page at a time."""
    page = paginate(_listed(select(Payment).where(Payment.student_id == student.id)
                            .order_by(Payment.created_at.desc(), Payment.id.desc())),
                    per_page=PAYMENTS_PER_PAGE)
    words.prefetch(page.items)
    return page


def latest_dispute(payment: Payment) -> Dispute | None:
    """The payment's newest dispute (open or decided): what both people's pages show."""
    return db.session.scalar(select(Dispute).where(Dispute.payment_id == payment.id)
                             .order_by(Dispute.id.desc()).limit(1))
