"""Issue 8, items 16, 17, 21 and 22: what Stripe and a browser can send to the payment
routes, answered with a status and a message, never a 500; concurrent deliveries for one
PaymentIntent all 200; the expired-hold refusal in the policy's words."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from skileez.extensions import db
from skileez.payments.models import LedgerTransaction, Payment, WebhookEvent
from skileez.sessions.models import Session
from tests.conftest import Client
from tests.test_payments import SECRET, SLOT, event, post_webhook, sign, states

pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


@pytest.fixture
def stripe_app(make_app):
    """Stripe configured; no calls reach it here: the events arrive signed."""
    return make_app(STRIPE_SECRET_KEY="sk_test_unit", STRIPE_PUBLISHABLE_KEY="pk_test_unit",
                    STRIPE_WEBHOOK_SECRET=SECRET, STRIPE_API_BASE="http://127.0.0.1:9")


@pytest.fixture
def pending(stripe_app, coaching, clock, book_session):
    session = book_session(coaching["student"], coaching["contract"], SLOT)
    with stripe_app.app_context():
        payment = db.session.get(Session, session.id).payment
        payment.payment_intent_id = "pi_unit_1"
        db.session.commit()
        return {"session_id": session.id, "payment_id": payment.id}


def signed_event(event_id: str, obj: dict, event_type="payment_intent.succeeded") -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": event_type,
                       "data": {"object": obj}}).encode()


def recorded(app, event_id):
    with app.app_context():
        row = db.session.get(WebhookEvent, event_id)
        return None if row is None else row.outcome


# --- item 16: signed but unreadable events ----------------------------------------------------

@pytest.mark.parametrize("case, obj", [
    ("metadata is a string", {"id": None, "metadata": "payment_id=1", "amount": 4990}),
    ("30-digit payment id", {"id": None, "metadata": {"payment_id": "1" * 30}}),
    ("payment id not a number", {"id": None, "metadata": {"payment_id": "one"}}),
    ("payment id unicode digits", {"id": None, "metadata": {"payment_id": "١٢"}}),
    ("payment id is a list", {"id": None, "metadata": {"payment_id": [1]}}),
    ("intent id is a number", {"id": 12, "metadata": {}}),
    ("amount is text", {"id": "pi_unit_1", "amount": "4990"}),
])
def test_a_signed_event_we_cannot_read_is_400_and_recorded(stripe_app, pending, case, obj):
    payload = signed_event("evt_odd", {"object": "payment_intent", **obj})
    response = post_webhook(stripe_app, payload, sign(payload))
    assert response.status_code == 400, case
    assert "unreadable event" in response.get_json()["error"]
    assert recorded(stripe_app, "evt_odd").startswith("rejected: ")
    assert states(stripe_app, pending) == ("pending", "pending_payment")
    # A retry of the same event gets the same answer, and is recorded once.
    assert post_webhook(stripe_app, payload, sign(payload)).status_code == 400
    with stripe_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1


@pytest.mark.parametrize("body", ['"pm_card_visa"', "[]", "null", "1", '["pm_x"]', "not json"])
def test_card_endpoint_answers_400_to_json_that_is_not_an_object(app, coaching, clock,
                                                                 book_session, body):
    session = book_session(coaching["student"], coaching["contract"], SLOT)
    client = Client(app)
    client.login("sam@example.com")
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    token = client.csrf_token("/dashboard")
    response = client.http.post(f"/payments/{payment_id}/card", data=body,
                                headers={"X-CSRFToken": token,
                                         "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


# --- item 17: limits, timestamps, NULL ---------------------------------------------------------

def test_a_webhook_body_over_64_kib_is_413_and_never_read(stripe_app, pending):
    payload = event("evt_big", "payment_intent.succeeded", "pi_unit_1",
                    description="x" * (65 * 1024))
    response = post_webhook(stripe_app, payload, sign(payload))
    assert response.status_code == 413
    assert states(stripe_app, pending) == ("pending", "pending_payment")


@pytest.mark.parametrize("offset, status", [(24 * 3600, 400), (301, 400), (290, 200)])
def test_a_signed_event_from_the_future_is_refused(stripe_app, pending, offset, status):
    payload = event("evt_future", "payment_intent.succeeded", "pi_unit_1")
    response = post_webhook(stripe_app, payload, sign(payload, timestamp=int(time.time())
                                                      + offset))
    assert response.status_code == status
    expected = ("held", "scheduled") if status == 200 else ("pending", "pending_payment")
    assert states(stripe_app, pending) == expected


@pytest.mark.parametrize("charge", [None, "ch_someone_else"])
def test_a_bank_dispute_without_an_intent_never_matches_a_payment_without_one(
        stripe_app, pending, charge):
    paid = event("evt_paid", "payment_intent.succeeded", "pi_unit_1")
    assert post_webhook(stripe_app, paid, sign(paid)).status_code == 200
    with stripe_app.app_context():  # a held payment with no intent or charge id recorded
        payment = db.session.get(Payment, pending["payment_id"])
        payment.payment_intent_id = None
        payment.charge_id = None
        db.session.commit()
    dispute = signed_event("evt_dispute", {"id": "dp_1", "object": "dispute",
                                           "charge": charge, "payment_intent": None,
                                           "reason": "fraudulent", "amount": 4990},
                           "charge.dispute.created")
    response = post_webhook(stripe_app, dispute, sign(dispute))
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "unknown payment"
    assert states(stripe_app, pending) == ("held", "scheduled")


# --- item 21: ten different events for one intent at once ---------------------------------------

@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_ten_different_success_events_for_one_intent_at_once_all_get_200(stripe_app, pending):
    payloads = [event(f"evt_many_{n}", "payment_intent.succeeded", "pi_unit_1")
                for n in range(10)]
    barrier, results = threading.Barrier(10), []

    def deliver(payload):
        barrier.wait()
        results.append(post_webhook(stripe_app, payload, sign(payload)).status_code)

    threads = [threading.Thread(target=deliver, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 10
    assert states(stripe_app, pending) == ("held", "scheduled")
    with stripe_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "payment_held")) == 1
        assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 10


# --- item 22: the hold's length in the refusal comes from policy ----------------------------------

@pytest.mark.parametrize("hold, words", [(15, "15-minute hold"), (20, "20-minute hold"),
                                         (120, "2-hour hold")])
def test_the_expired_hold_refusal_states_the_policy_hold(make_app, coaching, clock,
                                                         book_session, hold, words):
    app = make_app(POLICY={"payment_hold": hold})
    session = book_session(coaching["student"], coaching["contract"], SLOT)
    clock.advance(timedelta(minutes=hold, seconds=1))
    with app.app_context():
        from skileez.jobs.sweep import sweep

        sweep()  # the hold runs out and the slot is released
    client = Client(app)
    client.login("sam@example.com")
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    page = client.get(f"/payments/{payment_id}/pay")
    assert page.status_code == 409
    text = page.get_data(as_text=True)
    assert words in text
    if hold != 15:
        assert "15-minute" not in text
