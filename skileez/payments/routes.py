"""Paying for a session, receipts, earnings, Stripe webhooks and Connect onboarding."""

from __future__ import annotations

import uuid

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from skileez.coaches.operations import profile_for
from skileez.core.access import public, require_login, role_required
from skileez.core.http import is_htmx
from skileez.core.unit_of_work import see_other, submit, transaction
from skileez.extensions import csrf, db
from skileez.payments import chargebacks, operations, queries, words
from skileez.payments.attempts import provider_call
from skileez.payments.cards import saved_card_of
from skileez.payments.forms import DisputeAnswerForm, DisputeForm
from skileez.payments.gateway import CardDeclined, GatewayError, InvalidWebhook, get_gateway
from skileez.payments.models import Dispute, Payment
from skileez.payments.webhooks import (
    MalformedEvent,
    ProviderUnavailable,
    handle_event,
    receive,
)

bp = require_login(Blueprint("payments", __name__, url_prefix="/payments"))


@bp.app_context_processor
def _payment_rules() -> dict:
    """Templates ask the same payment rules the operations enforce."""
    return {"can_dispute": operations.can_dispute,
            "chargeback_words": chargebacks.chargeback_words,
            "repayment_words": chargebacks.repayment_words}
@bp.app_template_global("money_words")
def _money_words(subject, viewer=None):
    """Every page and email says what a payment's money is doing through this one answer."""
    return words.money_words(subject, viewer)


@bp.get("/")
def index():
    if current_user.is_coach:
        return render_template("payments/earnings.html", **queries.coach_earnings(current_user),
                               profile=profile_for(current_user),
                               stripe=get_gateway().name == "stripe")
    return render_template("payments/history.html",
                           page=queries.student_payments(current_user))


def _payment_for_participant(payment_id: int) -> Payment:
    payment = db.session.get(Payment, payment_id)
    if payment is None or not payment.is_participant(current_user):
        abort(404)
    return payment


def _payment_for_student(payment_id: int) -> Payment:
    payment = _payment_for_participant(payment_id)
    if current_user.id != payment.student_id:
        abort(403, "Only the student pays for a session.")
    return payment


@bp.get("/<int:payment_id>/pay")
def pay(payment_id: int):
    payment = _payment_for_student(payment_id)
    can_pay = operations.payment_can_be_paid(payment)
    if not can_pay:
        if payment.status in ("held", "released", "refunded", "partially_refunded"):
            return redirect(url_for("sessions.detail", session_id=payment.session_id))
        return render_template("payments/pay.html", payment=payment, blocked=can_pay.reason), 409
    gateway = get_gateway()
    context = {"payment": payment, "gateway": gateway.name,
               "saved_card": saved_card_of(current_user)}
    if gateway.name == "stripe":
        try:
            with provider_call():
                operations.ensure_payment_intent(payment)
            context["setup_secret"] = gateway.create_setup_intent(
                idempotency_key=f"setup-{payment.id}-{uuid.uuid4().hex[:8]}",
                metadata={"payment_id": str(payment.id)})
        except GatewayError as error:
            current_app.logger.warning("Stripe unavailable for payment %s: %s", payment.id,
                                       error.message)
            return render_template("payments/pay.html", payment=payment,
                                   blocked="Card payments are unavailable for a moment. "
                                           "Your time stays held; try again in a minute."), 503
        context["publishable_key"] = current_app.config["STRIPE_PUBLISHABLE_KEY"]
        context["stripe_js_url"] = current_app.config["STRIPE_JS_URL"]
    return render_template("payments/pay.html", **context)


@bp.post("/<int:payment_id>/card")
def confirm_card(payment_id: int):
    """Stripe.js collected a card; confirm the PaymentIntent with it (JSON for pay.js)."""
    payment = _payment_for_student(payment_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="Send the card as a JSON object with a payment_method."), 400
    payment_method = body.get("payment_method")
    if not isinstance(payment_method, str):
        payment_method = ""
    if not payment_method.startswith("pm_") or len(payment_method) > 255:
        return jsonify(error="The card details could not be read. Try again."), 422
    can_pay = operations.payment_can_be_paid(payment)
    if not can_pay:
        return jsonify(error=can_pay.reason), 409
    status_url = url_for("payments.status", payment_id=payment.id)
    try:
        with provider_call(keep=(CardDeclined,)):
            result = operations.confirm_card(payment, payment_method,
                                             return_url=url_for("payments.status",
                                                                payment_id=payment.id,
                                                                _external=True))
    except CardDeclined as error:
        return jsonify(error=error.message), 402
    except GatewayError:
        return jsonify(error="The payment service did not answer. Nothing was charged; "
                             "try again in a moment."), 503
    return jsonify(status=result.status, client_secret=result.client_secret, next=status_url)


@bp.post("/<int:payment_id>/test-card")
def test_card(payment_id: int):
    """The offline gateway's card page: produces the events a Stripe webhook would."""
    payment = _payment_for_student(payment_id)
    if get_gateway().name != "test" or payment.gateway != "test":
        abort(404)
    can_pay = operations.payment_can_be_paid(payment)
    if not can_pay:
        flash(can_pay.reason, "warning")
        return redirect(url_for("payments.pay", payment_id=payment.id), code=303)
    with provider_call():
        operations.ensure_payment_intent(payment)
    declined = request.form.get("card") == "decline"
    intent = {"id": payment.payment_intent_id, "object": "payment_intent",
              "amount": payment.amount_minor, "amount_received": 0 if declined
              else payment.amount_minor, "currency": payment.currency.lower(),
              "metadata": {"payment_id": str(payment.id)},
              "latest_charge": None if declined else f"ch_test_{payment.id}"}
    if declined:
        intent["last_payment_error"] = {"code": "card_declined",
                                        "message": "Your card was declined (test card)."}
    with transaction():
        handle_event({"id": f"evt_test_{uuid.uuid4().hex}", "type":
                      "payment_intent.payment_failed" if declined
                      else "payment_intent.succeeded",
                      "data": {"object": intent}})
    if declined:  # the pay page shows the decline beside the card choice
        return see_other(url_for("payments.pay", payment_id=payment.id))
    return see_other(url_for("sessions.detail", session_id=payment.session_id),
                     "Payment received. Your session is booked.")


@bp.get("/<int:payment_id>/status")
def status(payment_id: int):
    """Waiting for the provider's confirmation; the fragment polls until it arrives."""
    payment = _payment_for_participant(payment_id)
    if is_htmx():
        headers = {"HX-Trigger": "notifications-changed"} if payment.status == "held" else {}
        return render_template("payments/_status.html", payment=payment), 200, headers
    return render_template("payments/status.html", payment=payment)


# Stripe's events are a few KiB; far less than the app-wide limit for uploads.
WEBHOOK_MAX_BYTES = 64 * 1024


@bp.post("/webhook")
@public
@csrf.exempt
def webhook():
    request.max_content_length = WEBHOOK_MAX_BYTES  # a bigger body is a 413, unread
    try:
        event = get_gateway().construct_event(request.get_data(),
                                              request.headers.get("Stripe-Signature"))
    except InvalidWebhook as error:
        current_app.logger.warning("Rejected webhook: %s", error)
        return jsonify(error="invalid signature"), 400
    try:
        outcome = receive(event)
    except MalformedEvent as error:
        current_app.logger.warning("Refused webhook %s: %s", event.get("id"), error)
        return jsonify(error=f"unreadable event: {error}"), 400
    except ProviderUnavailable as error:
        # Nothing was recorded: Stripe retries the event later and it is handled then.
        current_app.logger.warning("Webhook %s deferred: %s", event.get("id"), error)
        return jsonify(error="could not ask Stripe; retry later"), 503
    return jsonify(received=True, outcome=outcome)


@bp.get("/<int:payment_id>/receipt")
def receipt(payment_id: int):
    payment = _payment_for_participant(payment_id)
    if payment.status in ("pending", "failed"):
        abort(404)
    return render_template("payments/receipt.html", payment=payment)


@bp.route("/<int:payment_id>/dispute", methods=["GET", "POST"])
def dispute(payment_id: int):
    payment = _payment_for_participant(payment_id)
    allowed = operations.can_dispute(payment, current_user)
    form = DisputeForm()

    def page() -> str:
        # A refusal (now, or a lost race while opening) replaces the form with its reason.
        blocked = allowed.reason if not allowed else " ".join(form.form_errors) or None
        return render_template("payments/dispute.html", payment=payment, form=form,
                               blocked=blocked, latest=queries.latest_dispute(payment))

    return submit(
        form, lambda: operations.open_dispute(payment, current_user, reason=form.reason.data),
        page=page, allowed=allowed,
        done=lambda _: see_other(
            url_for("sessions.detail", session_id=payment.session_id),
            "Your dispute is open. The payment stays on hold until an admin decides; both "
            "of you will hear the outcome."))


@bp.route("/<int:payment_id>/dispute/answer", methods=["GET", "POST"])
def answer_dispute(payment_id: int):
    """The coach's side of the latest dispute on their session's payment.

    Keyed by the payment, so the session page links here without loading its disputes.
    Editable until the admin decides; then shown read-only, and a POST is 409.
    """
    payment = _payment_for_participant(payment_id)
    if current_user.id != payment.coach_id:
        abort(403, "Only the coach of the session answers a dispute.")
    dispute: Dispute | None = queries.latest_dispute(payment)
    if dispute is None:
        abort(404)
    allowed = operations.can_answer_dispute(dispute, current_user)
    form = DisputeAnswerForm(data={"answer": dispute.coach_answer or ""}
                             if request.method != "POST" else None)

    def page() -> str:
        blocked = allowed.reason if not allowed else " ".join(form.form_errors) or None
        return render_template("payments/dispute_answer.html", payment=payment,
                               dispute=dispute, form=form, blocked=blocked)

    return submit(
        form, lambda: operations.answer_dispute(dispute, current_user, answer=form.answer.data),
        page=page, allowed=allowed,
        done=lambda _: see_other(
            url_for("payments.answer_dispute", payment_id=payment.id),
            "Your answer is saved; the student has been told. You can edit it until an "
            "admin decides."))


# --- Stripe Connect for coaches ----------------------------------------------------------

@bp.post("/connect")
@role_required("coach")
def connect():
    profile = profile_for(current_user)
    gateway = get_gateway()
    try:
        if not profile.stripe_account_id:
            with provider_call():
                profile.stripe_account_id = gateway.create_express_account(
                    email=current_user.email,
                    idempotency_key=f"coach-account-{current_user.id}",
                    metadata={"coach_id": str(current_user.id)})
        link = gateway.account_link(
            account_id=profile.stripe_account_id,
            refresh_url=url_for("payments.index", _external=True),
            return_url=url_for("payments.connect_return", _external=True))
    except GatewayError as error:
        flash(f"Stripe could not start the set-up: {error.message}", "danger")
        return redirect(url_for("payments.index"), code=303)
    return redirect(link, code=303)


@bp.get("/connect/return")
@role_required("coach")
def connect_return():
    profile = profile_for(current_user)
    if not profile.stripe_account_id:
        return redirect(url_for("payments.index"))
    try:
        with provider_call():
            status = get_gateway().account_status(profile.stripe_account_id)
            profile.payouts_enabled = status.payouts_enabled
    except GatewayError as error:
        flash(f"Could not check your payout account: {error.message}", "warning")
        return redirect(url_for("payments.index"))
    if status.payouts_enabled:
        flash("Your payout account is ready. Released payments, and any balance waiting, "
              "will be transferred to it.", "success")
    else:
        flash("Stripe still needs some details before it can pay you. Continue the set-up "
              "when you are ready.", "warning")
    return redirect(url_for("payments.index"))
