"""Admin pages for money: payments, manual release and refund, disputes, ledger health.

Every list here is one page read in a fixed number of queries, whatever the tables
hold: what a row shows is loaded with it (``joinedload``/``selectinload``), never from
the template. The ledger check is not run here: the page shows the last stored result
(see ``payments.ledger.run_check``) and can ask for a new one.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from skileez import clock
from skileez.admin.routes import bp
from skileez.auth.forms import ConfirmForm
from skileez.auth.models import User
from skileez.core.errors import DomainError
from skileez.core.forms import attach_error
from skileez.core.http import choice_arg, is_htmx, like_pattern, text_arg
from skileez.core.money import MoneyError, parse_amount
from skileez.core.pagination import paginate
from skileez.core.permissions import ALLOWED, deny
from skileez.core.unit_of_work import see_other, submit, transaction
from skileez.extensions import db
from skileez.payments import chargebacks, ledger, operations, overview, reconciliation
from skileez.payments.attempts import provider_call
from skileez.payments.forms import (
    AdminMoneyForm,
    DisputeEvidenceForm,
    ResolveDifferenceForm,
    ResolveDisputeForm,
    ReversePayoutForm,
)
from skileez.payments.gateway import GatewayError
from skileez.payments.models import (
    Dispute,
    LedgerTransaction,
    Payment,
    Payout,
    ReconciliationItem,
    Refund,
    TransferReversal,
)
from skileez.payments.words import money_words_for
from skileez.sessions.models import RescheduleRequest, Session
from skileez.sessions.routes import session_history

PAYMENT_STATUSES = ("pending", "held", "released", "refunded", "partially_refunded",
                    "disputed", "failed", "charged_back")
DISPUTE_STATUSES = ("open", "resolved")
# The newest failed payouts and refunds shown above the list (each is retried on its own).
FAILURES_SHOWN = 20
# Postings shown on a payment's page: a payment has a handful; the cap keeps it bounded.
LEDGER_ROWS_SHOWN = 100


@bp.get("/payments")
def payments():
    return _payments_page()


def _payments_page(resolve_form=None, form_for: int | None = None,
                   refusal: str | None = None) -> str:
    """The money page. It never calls Stripe: the comparison is a job (``reconcile_now``)
    and the page shows its last result and the differences still open."""
    status = choice_arg("status", PAYMENT_STATUSES)
    query = text_arg("q")
    # The money page's "releasing in the next 24 hours / 7 days": soonest first.
    releasing = choice_arg("releasing", overview.RELEASE_WINDOWS)
    statement = select(Payment).options(joinedload(Payment.student), joinedload(Payment.coach))
    if status:
        statement = statement.where(Payment.status == status)
    if query:
        statement = statement.where(Payment.id.in_(_payments_matching(query)))
    order = (Payment.created_at.desc(), Payment.id.desc())
    if releasing:
        statement = statement.where(*overview.releasing_within(
            clock.now(), overview.RELEASE_WINDOWS[releasing]))
        order = (Payment.release_at, Payment.id)
    page = paginate(statement.order_by(*order), per_page=current_app.config["PER_PAGE"])
    failing_payouts = db.session.scalars(
        select(Payout).where(Payout.status == "failed").options(joinedload(Payout.coach))
        .order_by(Payout.updated_at.desc()).limit(FAILURES_SHOWN)).all()
    failing_refunds = db.session.scalars(
        select(Refund).where(Refund.status == "failed")
        .order_by(Refund.updated_at.desc()).limit(FAILURES_SHOWN)).all()
    return render_template("admin/payments.html", page=page, status=status, q=query,
                           statuses=PAYMENT_STATUSES, releasing=releasing,
                           failing_payouts=failing_payouts, failing_refunds=failing_refunds,
                           reconciliation=reconciliation.reconciliation_state(
                               resolve_form, form_for, refusal),
                           **_ledger_check_state())


@bp.post("/payments/reconciliation")
def reconcile_now():
    """Queue a comparison with Stripe (run at once in this process when there is no Redis)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    with transaction():
        run, queued = reconciliation.request_run(actor=current_user)
    db.session.refresh(run)
    target = url_for("admin.payments") + "#reconciliation"
    if run.is_finished:
        if run.error:
            return see_other(target, "The comparison with Stripe could not finish; the error "
                                     "is shown below.", "warning")
        return see_other(target, "Compared with Stripe just now; the result is below.")
    if queued:
        return see_other(target, "A comparison with Stripe has been queued. Its result "
                                 "appears here as soon as a worker has run it.", "info")
    return see_other(target, "A comparison with Stripe is already on its way; its result "
                             "appears here as soon as it has run.", "info")


@bp.post("/payments/reconciliation/<int:item_id>/resolve")
def resolve_difference(item_id: int):
    item = db.session.get(ReconciliationItem, item_id)
    if item is None:
        abort(404)
    form = ResolveDifferenceForm()
    decision = reconciliation.can_resolve(item)
    return submit(form, lambda: reconciliation.resolve_item(item, current_user,
                                                            note=form.note.data),
                  page=lambda: _payments_page(form, item.id,
                                              None if decision else decision.reason),
                  allowed=decision,
                  done=lambda _: see_other(url_for("admin.payments") + "#reconciliation",
                                           "The difference is resolved; your note is kept in "
                                           "the audit log."))


def _payments_matching(query: str):
    """Ids of the payments whose student or coach matches ``query`` (name or email, any
    part), or whose number or Stripe PaymentIntent id it is (whole: what an admin pastes).

    One indexed lookup per way of matching, united: an OR across them, or a substring
    match on the Stripe id, would read every payment.
    """
    pattern = like_pattern(query)
    people = select(User.id).where(or_(func.lower(User.name).like(pattern, escape="\\"),
                                       User.email.like(pattern, escape="\\")))
    ways = [select(Payment.id).where(Payment.student_id.in_(people)),
            select(Payment.id).where(Payment.coach_id.in_(people)),
            select(Payment.id).where(Payment.payment_intent_id == query)]
    if query.isascii() and query.isdigit() and int(query) < 2**31:  # an id the column holds
        ways.append(select(Payment.id).where(Payment.id == int(query)))
    return union(*ways)


def _ledger_check_state() -> dict:
    return {"last_check": ledger.last_finished_check(), "pending_check": ledger.pending_check(),
            "check_form": ConfirmForm()}


@bp.get("/payments/ledger-check")
def ledger_check():
    """The ledger check's card alone: the page polls it while a check is on its way.

    Opened in a browser (a bookmark, a link shared), it is the payments page at the card.
    """
    if not is_htmx():
        return redirect(url_for("admin.payments") + "#ledger-check")
    return render_template("admin/_ledger_check.html", **_ledger_check_state())


@bp.post("/payments/ledger-check")
def ledger_check_now():
    """Queue a ledger check (run at once in this process when there is no Redis)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    with transaction():
        check, queued = ledger.request_check(actor=current_user)
    db.session.refresh(check)
    target = url_for("admin.payments")
    if check.is_finished:
        if check.error:
            return see_other(target, "The ledger check could not finish; the error is shown "
                                     "below.", "warning")
        if check.passed:
            return see_other(target, "The ledger was checked just now: no problems found.")
        return see_other(target, "The ledger was checked just now and has problems; they are "
                                 "listed below.", "danger")
    if queued:
        return see_other(target, "A ledger check has been queued. Its result appears here as "
                                 "soon as a worker has run it.", "info")
    return see_other(target, "A ledger check is already on its way; its result appears here "
                             "as soon as it has run.", "info")


def _payment(payment_id: int) -> Payment:
    payment = db.session.get(Payment, payment_id, options=(
        joinedload(Payment.student), joinedload(Payment.coach),
        joinedload(Payment.session).joinedload(Session.contract),
        joinedload(Payment.payout).joinedload(Payout.reversal).options(
            joinedload(TransferReversal.created_by), joinedload(TransferReversal.repayment)),
        selectinload(Payment.refunds)))
    if payment is None:
        abort(404)
    return payment


def _ledger_of(payment: Payment) -> list[LedgerTransaction]:
    """The payment's ledger transactions with their entries, oldest first (two queries)."""
    T = LedgerTransaction
    # Its postings, its payout's and its refunds': three indexed lookups (an OR across
    # them would make PostgreSQL read the whole ledger).
    posting_ids = union(
        select(T.id).where(T.payment_id == payment.id),
        select(T.id).join(Payout, T.payout_id == Payout.id).where(Payout.payment_id == payment.id),
        select(T.id).join(Refund, T.refund_id == Refund.id).where(Refund.payment_id == payment.id))
    return db.session.scalars(
        select(T).where(T.id.in_(posting_ids)).options(selectinload(T.entries))
        .order_by(T.id).limit(LEDGER_ROWS_SHOWN)).all()


def _unbooked_refunds(payment: Payment) -> list[Refund]:
    """Refunds made in Stripe that the ledger could not take (after release): each needs
    an admin's decision, so the page names them."""
    refund_ids = [item.id for item in payment.refunds]
    posted = set(db.session.scalars(select(LedgerTransaction.refund_id).where(
        LedgerTransaction.refund_id.in_(refund_ids),
        LedgerTransaction.kind == "refund"))) if refund_ids else set()
    return [item for item in payment.refunds
            if item.status == "succeeded" and item.id not in posted]


def _payment_page(payment: Payment, form=None, reverse_form=None) -> str:
    payout = payment.payout
    return render_template("admin/payment.html", payment=payment,
                           transactions=_ledger_of(payment),
                           unbooked_refunds=_unbooked_refunds(payment),
                           form=form or AdminMoneyForm(),
                           reverse_form=reverse_form or ReversePayoutForm(),
                           can_reverse=chargebacks.can_reverse_payout(payout)
                           if payout is not None else None)


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
    return _disputes_page(choice_arg("status", DISPUTE_STATUSES) or "open", ResolveDisputeForm())


def _disputes_page(status: str, form, form_for: int | None = None) -> str:
    """One page of disputes with everything their cards show, loaded in a fixed few queries."""
    statement = (
        select(Dispute).where(Dispute.status == status)
        .options(joinedload(Dispute.resolved_by),
                 joinedload(Dispute.payment).options(
                     joinedload(Payment.student), joinedload(Payment.coach),
                     joinedload(Payment.session).joinedload(Session.contract),
                     selectinload(Payment.refunds)))
        .order_by(Dispute.created_at.desc(), Dispute.id.desc()))
    page = paginate(statement, per_page=current_app.config["PER_PAGE"])
    money_for = money_words_for([d.payment for d in page.items], current_user)
    return render_template("admin/disputes.html", page=page, money_for=money_for, status=status,
                           statuses=DISPUTE_STATUSES, form=form, form_for=form_for)


def _dispute(dispute_id: int) -> Dispute:
    """A dispute with the whole session around it: what its page shows, loaded with it."""
    dispute = db.session.get(Dispute, dispute_id, options=(
        joinedload(Dispute.resolved_by),
        joinedload(Dispute.payment).options(
            joinedload(Payment.student), joinedload(Payment.coach),
            joinedload(Payment.payout).joinedload(Payout.reversal),
            selectinload(Payment.refunds),
            joinedload(Payment.session).options(
                joinedload(Session.contract), joinedload(Session.started_by),
                joinedload(Session.completed_by), joinedload(Session.cancelled_by),
                selectinload(Session.reschedule_requests).options(
                    joinedload(RescheduleRequest.requested_by),
                    joinedload(RescheduleRequest.decided_by))))))
    if dispute is None:
        abort(404)
    # The session's payment is the one loaded here: say so, and its timeline (which asks
    # ``session.payment``) does not load it again.
    set_committed_value(dispute.payment.session, "payment", dispute.payment)
    return dispute


def _refund_asked(form, payment: Payment) -> int:
    """The partial refund typed in, in minor units (0 for the other decisions)."""
    if form.resolution.data != "partial":
        return 0
    try:
        return parse_amount(form.refund_amount.data or "", payment.currency)
    except MoneyError as error:
        raise DomainError(str(error), field="refund_amount") from None


def _decision_problems(form, payment: Payment) -> list[DomainError]:
    """What is wrong with the amount, told with the form's own errors (before anything runs)."""
    if form.resolution.data != "partial":
        return []
    try:
        refund_minor = parse_amount(form.refund_amount.data or "", payment.currency)
    except MoneyError as error:
        return [DomainError(str(error), field="refund_amount")]
    already = sum(item.amount_minor for item in operations.unbooked_provider_refunds(payment))
    if not max(already, 1) <= refund_minor < payment.remaining_minor:
        return [DomainError(operations.partial_refund_problem(payment, already),
                            field="refund_amount")]
    return []


def _outcomes(payment: Payment, made_in_stripe: list[Refund]) -> dict[str, dict]:
    """What each person gets for each decision (the partial one for the amount asked),
    counting what Stripe already refunded as the student's."""
    already = sum(item.amount_minor for item in made_in_stripe)
    return {resolution: operations.dispute_outcome(payment, resolution,
                                                   already_refunded=already)
            for resolution in ("release", "refund")}


def _dispute_page(dispute: Dispute, form, review: dict | None = None,
                  evidence_form=None) -> str:
    payment = dispute.payment
    history = session_history(payment.session)
    # Refunds made in Stripe's dashboard while it was disputed: the decision books them.
    made_in_stripe = operations.unbooked_provider_refunds(payment) \
        if dispute.is_open and payment.is_in_escrow else []
    return render_template(
        "admin/dispute.html", dispute=dispute, payment=payment, session=payment.session,
        history=history, transactions=_ledger_of(payment), made_in_stripe=made_in_stripe,
        outcomes=_outcomes(payment, made_in_stripe) if dispute.is_open else {}, form=form,
        review=review,
        outcome_words=operations.outcome_words,
        evidence_form=evidence_form or DisputeEvidenceForm(),
        can_send_evidence=chargebacks.can_submit_evidence(dispute),
        evidence_summary=chargebacks.session_summary(payment, history)
        if dispute.is_bank_dispute else None)


@bp.get("/disputes/<int:dispute_id>")
def dispute(dispute_id: int):
    """Both sides and the whole session, and the decision stated in money before it is made."""
    return _dispute_page(_dispute(dispute_id), ResolveDisputeForm())


def _stating_refusal(decision, page):
    """``page``, with a refused action's reason shown above it.

    Found with two tabs: the second decision (or reversal) came back 409 on a page that no
    longer shows the form, so nothing said it had not happened.
    """
    def render():
        if not decision:
            flash(decision.reason, "warning")
        return page()
    return render


def _decide(dispute: Dispute, form, page):
    """Review a decision (what each person gets), or make it once the admin has confirmed.

    A valid form without ``confirmed`` is shown back on the dispute's page with the
    amounts each person gets and a button that confirms exactly that decision.
    """
    payment = dispute.payment
    allowed = ALLOWED if dispute.is_open else deny("This dispute is already resolved.")

    def resolve():
        if form.confirmed.data != "yes":
            refund_minor = _refund_asked(form, payment)
            return operations.dispute_outcome(payment, form.resolution.data, refund_minor)
        operations.resolve_dispute(dispute, current_user, resolution=form.resolution.data,
                                   refund_minor=_refund_asked(form, payment),
                                   note=form.note.data or "")
        return None

    def done(review):
        if review is not None:
            return _dispute_page(dispute, form, review=review)
        return see_other(url_for("admin.dispute", dispute_id=dispute.id),
                         f"Dispute #{dispute.id} resolved; both people have been told what "
                         "they get and why.")

    return submit(form, resolve, page=_stating_refusal(allowed, page), allowed=allowed,
                  problems=lambda: _decision_problems(form, payment), done=done)


@bp.post("/disputes/<int:dispute_id>")
def decide_dispute(dispute_id: int):
    item = _dispute(dispute_id)
    form = ResolveDisputeForm()
    return _decide(item, form, page=lambda: _dispute_page(item, form))


@bp.post("/disputes/<int:dispute_id>/resolve")
def resolve_dispute(dispute_id: int):
    """The list's decision form: refused on the list, reviewed on the dispute's own page."""
    item = _dispute(dispute_id)
    form = ResolveDisputeForm()
    return _decide(item, form, page=lambda: _disputes_page("open", form, dispute_id))


# --- card disputes at the bank and payout reversals (issue 11) ----------------------------

@bp.post("/disputes/<int:dispute_id>/evidence")
def dispute_evidence(dispute_id: int):
    """Send the admin's evidence (and the session's record) to the bank, through Stripe."""
    item = _dispute(dispute_id)
    form = DisputeEvidenceForm()

    def page(status: int):
        return _dispute_page(item, ResolveDisputeForm(), evidence_form=form), status

    decision = chargebacks.can_submit_evidence(item)
    if not decision:
        form.form_errors.append(decision.reason)
        return page(409)
    if not form.validate_on_submit():
        return page(422)
    payment = item.payment
    summary = chargebacks.session_summary(payment, session_history(payment.session)) \
        if form.include_summary.data else None
    problem = chargebacks.evidence_problem(form.text.data or "", summary)
    if problem is not None:
        attach_error(form, problem)
        return page(422)
    try:
        with provider_call():
            chargebacks.submit_evidence(item, current_user, text=form.text.data or "",
                                        summary=summary)
    except GatewayError as error:
        current_app.logger.warning("Dispute %s: evidence not sent: %s", item.id, error.message)
        form.form_errors.append("Stripe did not take the evidence: " + error.message
                                + (" Try again in a minute." if error.retryable else ""))
        return page(503 if error.retryable else 409)
    return see_other(url_for("admin.dispute", dispute_id=item.id),
                     "The evidence was sent to the bank; Stripe tells us its decision.")


@bp.post("/payments/<int:payment_id>/reverse-payout")
def reverse_payout(payment_id: int):
    """Take the coach's transfer for this payment back, with a reason (409 unless paid)."""
    item = _payment(payment_id)
    payout = item.payout
    if payout is None:
        abort(404)
    form = ReversePayoutForm()
    decision = chargebacks.can_reverse_payout(payout)

    def reverse():
        # Two admins at once: the second waits for the first's row lock, then finds its
        # reversal and is refused (409), instead of a second reversal row (a 500).
        db.session.execute(select(Payout.id).where(Payout.id == payout.id).with_for_update())
        db.session.expire(payout)
        return chargebacks.reverse_payout(payout, current_user, reason=form.reason.data or "")

    return submit(form, reverse, serialized=True,
                  page=_stating_refusal(decision, lambda: _payment_page(item,
                                                                        reverse_form=form)),
                  allowed=decision,
                  done=lambda _: see_other(
                      url_for("admin.payment", payment_id=payment_id),
                      "The payout is being reversed at Stripe; the money returns to the "
                      "platform and is owed to no one until you refund or re-pay."))
