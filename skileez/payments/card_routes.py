"""Pages for a student's saved card, paying with it, and booking the rest of a contract.

Registered on the payments blueprint (``payments.routes.bp``); the app factory imports
this module by name, as it does the sessions' route modules.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from flask import (
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
from sqlalchemy.orm import joinedload, selectinload

from skileez import clock
from skileez.auth.models import User
from skileez.auth.session import safe_redirect_target
from skileez.contracts.models import Contract
from skileez.core.access import role_required
from skileez.core.errors import DomainError
from skileez.core.forms import attach_error
from skileez.core.timezones import localize
from skileez.core.unit_of_work import see_other, submit
from skileez.extensions import db
from skileez.payments import cards, pattern
from skileez.payments.attempts import provider_call
from skileez.payments.forms import WEEKDAYS, PatternForm
from skileez.payments.gateway import TEST_CARDS, CardDeclined, GatewayError, get_gateway
from skileez.payments.routes import _payment_for_student, bp
from skileez.policy import get_policy

PROVIDER_DOWN = "Card services are unavailable for a moment. Nothing was saved; try again."


def _safe_next(value: str | None) -> str | None:
    """Only a path of this site (the pay page or a pattern page sends the student here),
    judged as a browser reads it: "/\\evil.example" or "/<tab>/evil.example" is another
    site (the login's own rule)."""
    if not isinstance(value, str) or len(value) >= 500:
        return None
    return safe_redirect_target(value, "") or None


@bp.get("/card")
@role_required("student")
def card():
    """The student's payment method: the saved card (with Remove), or a form to save one."""
    saved = cards.saved_card_of(current_user)
    gateway = get_gateway()
    context = {"saved": saved, "gateway": gateway.name, "next": _safe_next(
        request.args.get("next")), "test_cards": TEST_CARDS}
    if gateway.name == "stripe":
        try:
            context["setup_secret"] = cards.setup_secret(current_user)
        except GatewayError as error:
            current_app.logger.warning("Stripe unavailable for the card page: %s",
                                       error.message)
            return render_template("payments/card.html", blocked=PROVIDER_DOWN,
                                   **context), 503
        context["publishable_key"] = current_app.config["STRIPE_PUBLISHABLE_KEY"]
        context["stripe_js_url"] = current_app.config["STRIPE_JS_URL"]
    return render_template("payments/card.html", **context)


def _saved(next_url: str | None) -> str:
    return next_url or url_for("payments.card")


@bp.post("/card/save")
@role_required("student")
def save_card():
    """Stripe.js confirmed a SetupIntent; record the card it collected (JSON for card.js)."""
    body = request.get_json(silent=True)
    setup_intent = body.get("setup_intent") if isinstance(body, dict) else None
    if not isinstance(setup_intent, str) or not setup_intent.startswith("seti_") \
            or len(setup_intent) > 255:
        return jsonify(error="The card details could not be read. Try again."), 422
    if get_gateway().name != "stripe":
        abort(404)
    try:
        with provider_call():
            saved = cards.save_card(current_user, setup_intent)
            label = saved.label
    except GatewayError as error:
        status = 503 if error.retryable else 422
        return jsonify(error=PROVIDER_DOWN if error.retryable else error.message), status
    flash(f"{label} is saved. You can pay with it, and book the rest of a contract.",
          "success")
    return jsonify(next=_saved(_safe_next(body.get("next"))))


@bp.post("/card/test-save")
@role_required("student")
def test_save_card():
    """The offline gateway's card page: saves one of its test cards through the same code."""
    if get_gateway().name != "test":
        abort(404)
    chosen = request.form.get("card")
    next_url = _safe_next(request.form.get("next"))
    if chosen not in TEST_CARDS:
        flash("Choose one of the test cards.", "warning")
        return see_other(url_for("payments.card", next=next_url))
    with provider_call():
        saved = cards.save_card(current_user, f"seti_test_{chosen}_{uuid.uuid4().hex[:12]}")
        label = saved.label
    return see_other(_saved(next_url), f"{label} is saved. You can pay with it, and book "
                                       "the rest of a contract.")


@bp.post("/card/remove")
@role_required("student")
def remove_card():
    try:
        with provider_call():
            cards.remove_card(current_user)
    except DomainError as error:
        abort(error.status_code, error.message)
    except GatewayError:
        flash(PROVIDER_DOWN, "danger")
        return redirect(url_for("payments.card"), code=303)
    return see_other(url_for("payments.card"), "Your card is removed; nothing more will be "
                     "charged to it.")


@bp.post("/<int:payment_id>/saved-card")
@role_required("student")
def pay_with_saved_card(payment_id: int):
    """Pay with the saved card: JSON for pay.js (3-D Secure), a redirect for a plain form."""
    payment = _payment_for_student(payment_id)
    wants_json = request.is_json
    pay_url = url_for("payments.pay", payment_id=payment.id)

    def answer(message: str, status: int):
        if wants_json:
            return jsonify(error=message), status
        flash(message, "warning" if status != 402 else "danger")
        return redirect(pay_url, code=303)

    saved = cards.saved_card_of(current_user)
    if saved is None:
        return answer("You have no saved card. Save one, or pay with a card below.", 409)
    try:
        with provider_call(keep=(CardDeclined,)):
            result = cards.pay_with_saved_card(payment, saved)
    except DomainError as error:
        return answer(error.message, error.status_code)
    except CardDeclined as error:
        return answer(error.message, 402)
    except GatewayError:
        return answer("The payment service did not answer. Nothing was charged; try again "
                      "in a moment.", 503)
    status_url = url_for("payments.status", payment_id=payment.id)
    if wants_json:
        return jsonify(status=result.status, client_secret=result.client_secret,
                       next=status_url)
    if result.status == "requires_action":
        return answer("Your bank asks you to confirm this payment; pay with the card form "
                      "below.", 402)
    return see_other(url_for("sessions.detail", session_id=payment.session_id),
                     "Payment received. Your session is booked.")


# --- booking the rest of a contract -------------------------------------------------------

def _pattern_contract(contract_id: int) -> Contract:
    contract = db.session.get(Contract, contract_id, options=[
        joinedload(Contract.coach).joinedload(User.coach_profile),
        selectinload(Contract.sessions)])
    if contract is None or not contract.is_participant(current_user):
        abort(404)
    if current_user.id != contract.student_id:
        abort(403, "Only the student books sessions on a contract.")
    return contract


def _parse_starts(values: list[str]) -> list[datetime]:
    now = clock.now()
    starts = []
    for text in values:
        try:
            read = datetime.fromisoformat(text.strip())
            if read.tzinfo is None:  # the page sends offsets; a bare time is no one's
                raise ValueError(text)
            value = read.astimezone(UTC)
        except (ValueError, OverflowError, TypeError):
            raise DomainError("A chosen time could not be read; check the times again.",
                              field="starts") from None
        if not now <= value <= now + timedelta(days=400):
            raise DomainError("A chosen time is in the past or beyond the booking horizon.",
                              field="starts")
        starts.append(value)
    return starts


def _defaults(contract) -> dict:
    today = localize(clock.now(), current_user.timezone).date()
    return {"weekday": today.weekday(), "at": "18:00",
            "first_day": today + timedelta(days=1),
            "count": max(contract.total_sessions - contract.booked_sessions, 1)}


@bp.route("/pattern/<int:contract_id>", methods=["GET", "POST"])
def book_pattern(contract_id: int):
    """Book the rest of a contract as a weekly pattern: preview (GET), confirm (POST)."""
    contract = _pattern_contract(contract_id)
    places_left = contract.total_sessions - contract.booked_sessions
    saved = cards.saved_card_of(current_user)
    asked = request.method == "POST" or "weekday" in request.args
    if request.method == "POST":
        form = PatternForm()
    elif asked:
        form = PatternForm(request.args, meta={"csrf": False})
    else:
        form = PatternForm(data=_defaults(contract), meta={"csrf": False})
    can_book = contract.can_book(current_user)

    def problems() -> list[DomainError]:
        found = []
        today = localize(clock.now(), current_user.timezone).date()
        if form.first_day.data and not today <= form.first_day.data <= \
                today + timedelta(days=365):
            found.append(DomainError("Choose a date from today to a year ahead.",
                                     field="first_day"))
        if form.count.data and form.count.data > places_left:
            found.append(DomainError(f"This contract has {places_left} place"
                                     f"{'s' if places_left != 1 else ''} left.",
                                     field="count"))
        return found

    def preview_rows() -> list:
        # A refusal of the whole booking (form_errors), or of the times ticked in it, still
        # shows the fresh preview: the student ticks again rather than starting over.
        if not asked or not can_book or problems() or any(
                field.errors for field in form if field is not form.starts):
            return []
        starts = pattern.weekly_starts(form.weekday.data, form.minute_of_day,
                                       form.first_day.data, form.count.data,
                                       current_user.timezone)
        return pattern.preview(contract, current_user, starts)

    def page() -> str:
        rows = preview_rows()
        return render_template(
            "payments/pattern.html", contract=contract, form=form, rows=rows, saved=saved,
            places_left=places_left, can_book=can_book, weekdays=WEEKDAYS, asked=asked,
            chosen=sum(1 for row in rows if row.chosen), policy=get_policy(),
            conflict=" ".join(form.form_errors) or None)

    if request.method == "GET":
        if not asked:
            return page()
        valid = form.validate()
        for problem in problems():
            attach_error(form, problem)
            valid = False
        return page(), 200 if valid else 422

    def book_them() -> int:
        starts = _parse_starts(form.starts.data or [])
        if not starts:
            raise DomainError("Choose at least one time to book.", field="starts")
        if len(starts) > form.count.data:  # the page offers one time a week
            raise DomainError(f"Choose at most {form.count.data} time"
                              f"{'s' if form.count.data != 1 else ''}, one a week.",
                              field="starts")
        return len(pattern.book_pattern(current_user, contract, starts))

    return submit(form, book_them, page=page, allowed=can_book, problems=problems,
                  serialized=True,
                  done=lambda count: see_other(
                      url_for("contracts.detail", contract_id=contract.id),
                      f"{count} sessions booked. Each is being charged to your saved card; "
                      "you will be told at once if one needs you." if count != 1 else
                      "1 session booked. It is being charged to your saved card; you will be "
                      "told at once if it needs you."))

