"""Admin pages for money: payments, manual release and refund, disputes, ledger health."""

from __future__ import annotations

from flask import abort, current_app, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import aliased

from skileez.admin.routes import bp
from skileez.auth.models import User
from skileez.core.errors import DomainError
from skileez.core.http import choice_arg, like_pattern, text_arg
from skileez.core.money import MoneyError, parse_amount
from skileez.core.pagination import paginate
from skileez.core.unit_of_work import see_other, submit
from skileez.extensions import db
from skileez.payments import ledger, operations
from skileez.payments.forms import AdminMoneyForm, ResolveDisputeForm
from skileez.payments.models import Dispute, LedgerTransaction, Payment, Payout, Refund

PAYMENT_STATUSES = ("pending", "held", "released", "refunded", "partially_refunded",
                    "disputed", "failed")


@bp.get("/payments")
def payments():
    status = choice_arg("status", PAYMENT_STATUSES)
    query = text_arg("q")
    student, coach = aliased(User), aliased(User)
    statement = (select(Payment).join(student, Payment.student_id == student.id)
                 .join(coach, Payment.coach_id == coach.id))
    if status:
        statement = statement.where(Payment.status == status)
    if query:
        pattern = like_pattern(query)
        statement = statement.where(or_(
            func.lower(student.name).like(pattern, escape="\\"),
            student.email.like(pattern, escape="\\"),
            func.lower(coach.name).like(pattern, escape="\\"),
            coach.email.like(pattern, escape="\\"),
            func.lower(func.coalesce(Payment.payment_intent_id, "")).like(pattern, escape="\\"),
            cast(Payment.id, String) == query))
    page = paginate(statement.order_by(Payment.created_at.desc(), Payment.id.desc()),
                       per_page=current_app.config["PER_PAGE"])
    failing_payouts = db.session.scalars(select(Payout).where(Payout.status == "failed")
                                         .order_by(Payout.updated_at.desc()).limit(20)).all()
    failing_refunds = db.session.scalars(select(Refund).where(Refund.status == "failed")
                                         .order_by(Refund.updated_at.desc()).limit(20)).all()
    reconciled = None
    if request.args.get("reconcile"):
        reconciled = operations.reconcile_with_gateway()
    return render_template("admin/payments.html", page=page, status=status, q=query,
                           statuses=PAYMENT_STATUSES, problems=ledger.check_invariants(),
                           reconciled=reconciled,
                           failing_payouts=failing_payouts, failing_refunds=failing_refunds)


def _payment(payment_id: int) -> Payment:
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        abort(404)
    return payment


def _payment_page(payment: Payment, form=None) -> str:
    transactions = db.session.scalars(
        select(LedgerTransaction).where(or_(
            LedgerTransaction.payment_id == payment.id,
            LedgerTransaction.payout_id.in_(select(Payout.id).where(
                Payout.payment_id == payment.id)),
            LedgerTransaction.refund_id.in_(select(Refund.id).where(
                Refund.payment_id == payment.id))))
        .order_by(LedgerTransaction.id)).all()
    return render_template("admin/payment.html", payment=payment, transactions=transactions,
                           form=form or AdminMoneyForm())


@bp.get("/payments/<int:payment_id>")
def payment(payment_id: int):
    return _payment_page(_payment(payment_id))


@bp.post("/payments/<int:payment_id>/<any(release, refund):action>")
def payment_action(payment_id: int, action: str):
    item = _payment(payment_id)
    form = AdminMoneyForm()

    def move_money() -> None:
        if action == "release":
            operations.release(item, actor=current_user,
                               reason=f"released by an admin: {form.reason.data.strip()}")
            return
        amount = item.remaining_minor
        if form.amount.data:
            try:
                amount = parse_amount(form.amount.data, item.currency)
            except MoneyError as error:
                raise DomainError(str(error), field="amount") from None
        operations.refund(item, amount, actor=current_user, reason=form.reason.data.strip())

    return submit(form, move_money, page=lambda: _payment_page(item, form),
                  done=lambda _: see_other(
                      url_for("admin.payment", payment_id=payment_id),
                      "The payment was released to the coach." if action == "release"
                      else "The refund was recorded and is being sent to the card."))


@bp.get("/disputes")
def disputes():
    status = choice_arg("status", ("open", "resolved")) or "open"
    items = db.session.scalars(select(Dispute).where(Dispute.status == status)
                               .order_by(Dispute.created_at.desc()).limit(200)).all()
    return render_template("admin/disputes.html", disputes=items, status=status,
                           form=ResolveDisputeForm())


@bp.post("/disputes/<int:dispute_id>/resolve")
def resolve_dispute(dispute_id: int):
    dispute = db.session.get(Dispute, dispute_id)
    if dispute is None:
        abort(404)
    form = ResolveDisputeForm()

    def resolve() -> None:
        refund_minor = 0
        if form.resolution.data == "partial":
            try:
                refund_minor = parse_amount(form.refund_amount.data or "",
                                            dispute.payment.currency)
            except MoneyError as error:
                raise DomainError(str(error), field="refund_amount") from None
        operations.resolve_dispute(dispute, current_user, resolution=form.resolution.data,
                                   refund_minor=refund_minor, note=form.note.data or "")

    def page() -> str:
        items = db.session.scalars(select(Dispute).where(Dispute.status == "open")
                                   .order_by(Dispute.created_at.desc())).all()
        return render_template("admin/disputes.html", disputes=items, status="open",
                               form=form, form_for=dispute_id)

    return submit(form, resolve, page=page,
                  done=lambda _: see_other(url_for("admin.disputes"),
                                           f"Dispute #{dispute_id} resolved; both people "
                                           "have been told."))
