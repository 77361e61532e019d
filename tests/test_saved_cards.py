"""Saved cards: saving one, paying with it, removing it, and off-session charges.

Most of it runs the real ``stripe`` library against localstripe (``-m stripe``): the card
is saved through a SetupIntent confirmed the way Stripe.js confirms it, the pay page
charges it, removing detaches it at Stripe, and a booked pattern is charged off-session
(a plain card succeeds, a 3-D Secure card and a card declined at charge leave their
session waiting with a notice). The test gateway's own card page has the same flow.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from skileez.core.transitions import transition
from skileez.extensions import db
from skileez.notifications.models import Notification
from skileez.payments.models import Payment, SavedCard, SavedCardCharge
from skileez.payments.pattern import weekly_starts
from skileez.sessions.models import Session
from tests.conftest import Client
from tests.stripe_support import localstripe, stripe_client  # noqa: F401

NOW = datetime(2026, 10, 10, 8, 0, tzinfo=UTC)
FIRST_DAY = date(2026, 10, 12)
VISA = "4242424242424242"
THREE_D_SECURE = "4000002500003155"
DECLINED_AT_CHARGE = "4000000000000341"

pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


@pytest.fixture
def stripe_app(make_app, localstripe, stripe_client):  # noqa: F811
    return make_app(**localstripe.app_config())


@pytest.fixture
def evening(stripe_app, make_user, make_offering, add_hours, make_contract, clock):
    clock.freeze(NOW)
    coach = make_user("coach", name="Clara Schmidt", email="clara@example.com")
    student = make_user(name="Sam Rivera", email="sam@example.com")
    offering = make_offering(coach, duration=60, price=4990)
    add_hours(coach, [1], "17:00", "21:00")
    contract = make_contract(student, offering, sessions=8)
    return {"coach": coach, "student": student, "offering": offering, "contract": contract}


def signed_in(app, email) -> Client:
    client = Client(app)
    client.login(email)
    return client


def setup_intent_of(page: str) -> str:
    secret = re.search(r'data-setup-secret="([^"]+)"', page).group(1)
    return secret.split("_secret_")[0]


def confirm_setup_like_stripe_js(localstripe, setup_intent, number=VISA):  # noqa: F811
    """What ``stripe.confirmCardSetup`` does with the card inputs of the stand-in."""
    return localstripe.client().v1.setup_intents.confirm(setup_intent, {
        "payment_method_data": {"type": "card", "card": {
            "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}})


def save_card_through_the_page(client, localstripe, number=VISA):  # noqa: F811
    page = client.get("/payments/card").get_data(as_text=True)
    assert localstripe.js_url in page and 'id="card-element"' in page
    setup_intent = setup_intent_of(page)
    confirm_setup_like_stripe_js(localstripe, setup_intent, number)
    token = client.csrf_token("/payments/card")
    response = client.http.post("/payments/card/save", json={"setup_intent": setup_intent},
                                headers={"X-CSRFToken": token})
    return response


def saved_row(app, student_id) -> SavedCard:
    with app.app_context():
        row = db.session.scalar(select(SavedCard).where(SavedCard.student_id == student_id))
        db.session.expunge(row)
        return row


@pytest.mark.stripe
def test_save_pay_with_and_remove_a_card_at_stripe(stripe_app, evening, book_session,
                                                   localstripe):  # noqa: F811
    client = signed_in(stripe_app, "sam@example.com")
    response = save_card_through_the_page(client, localstripe)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["next"] == "/payments/card"
    card = saved_row(stripe_app, evening["student"].id)
    assert (card.status, card.brand, card.last4, card.exp_year) == ("saved", "visa", "4242",
                                                                    2034)
    # Attached to the student's Stripe customer, so it can be charged later.
    method = localstripe.client().v1.payment_methods.retrieve(card.payment_method_id)
    assert method.customer == card.customer_id
    page = client.get("/payments/card").get_data(as_text=True)
    assert "Visa •••• 4242" in page and "Expires 12/2034" in page

    start = weekly_starts(1, 18 * 60, FIRST_DAY, 1, "Europe/Berlin")[0]
    session = book_session(evening["student"], evening["contract"], start)
    with stripe_app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    pay_page = client.get(f"/payments/{payment_id}/pay").get_data(as_text=True)
    assert "Pay with Visa •••• 4242" in pay_page and 'id="card-element"' in pay_page
    token = client.csrf_token(f"/payments/{payment_id}/pay")
    paid = client.http.post(f"/payments/{payment_id}/saved-card", json={},
                            headers={"X-CSRFToken": token})
    assert paid.status_code == 200, paid.get_data(as_text=True)
    assert paid.get_json()["status"] == "succeeded"
    with stripe_app.app_context():
        payment = db.session.get(Payment, payment_id)
        assert payment.status == "held" and payment.charge_id.startswith("ch_")
        assert db.session.get(Session, session.id).status == "scheduled"
        intent = localstripe.client().v1.payment_intents.retrieve(payment.payment_intent_id)
        assert intent.customer == card.customer_id and intent.status == "succeeded"

    removed = client.post("/payments/card/remove", token_page="/payments/card")
    assert removed.status_code == 303
    assert localstripe.client().v1.payment_methods.retrieve(
        card.payment_method_id).customer is None
    assert saved_row(stripe_app, evening["student"].id).status == "removed"
    page = client.get("/payments/card").get_data(as_text=True)
    assert "No card is saved" in page
    # Nothing left to remove: refused, nothing changes.
    assert client.post("/payments/card/remove", token_page="/payments/card").status_code \
        == 409


@pytest.mark.stripe
def test_another_students_setup_intent_is_refused(stripe_app, evening, make_user,
                                                  localstripe):  # noqa: F811
    owner = signed_in(stripe_app, "sam@example.com")
    setup_intent = setup_intent_of(owner.get("/payments/card").get_data(as_text=True))
    confirm_setup_like_stripe_js(localstripe, setup_intent)
    make_user(name="Eve", email="eve@example.com")
    thief = signed_in(stripe_app, "eve@example.com")
    token = thief.csrf_token("/payments/card")
    response = thief.http.post("/payments/card/save", json={"setup_intent": setup_intent},
                               headers={"X-CSRFToken": token})
    assert response.status_code == 422
    assert "not yours" in response.get_json()["error"]
    with stripe_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SavedCard).where(
            SavedCard.status == "saved")) == 0


def _save_card_directly(app, student, localstripe, number):  # noqa: F811
    """A 3-D Secure card cannot finish a SetupIntent without the stand-in's modal, so it is
    attached to the student's customer here, as a confirmed SetupIntent would leave it."""
    from skileez.auth.models import User
    from skileez.payments.cards import ensure_customer

    client = localstripe.client()
    method = client.v1.payment_methods.create({"type": "card", "card": {
        "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    with app.app_context():
        record = ensure_customer(db.session.get(User, student.id))
        client.v1.payment_methods.attach(method.id, {"customer": record.customer_id})
        transition(record, "saved", expected=record.status, reason="card saved",
                   values={"payment_method_id": method.id, "brand": "visa",
                           "last4": number[-4:], "exp_month": 12, "exp_year": 2034})
        db.session.commit()


def _book_pattern(client, contract_id, count):
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, count, "Europe/Berlin")
    response = client.post(f"/payments/pattern/{contract_id}", {
        "weekday": 1, "at": "18:00", "first_day": FIRST_DAY.isoformat(), "count": count,
        "starts": [start.isoformat() for start in starts]},
        token_page=f"/payments/pattern/{contract_id}")
    assert response.status_code == 303, response.get_data(as_text=True)
    return starts


@pytest.mark.stripe
def test_off_session_charges_at_stripe_succeed_for_every_week(stripe_app, evening,
                                                              localstripe):  # noqa: F811
    client = signed_in(stripe_app, "sam@example.com")
    assert save_card_through_the_page(client, localstripe).status_code == 200
    _book_pattern(client, evening["contract"].id, 3)
    with stripe_app.app_context():
        payments = db.session.scalars(select(Payment)).all()
        assert len(payments) == 3 and {p.status for p in payments} == {"held"}
        for payment in payments:
            intent = localstripe.client().v1.payment_intents.retrieve(payment.payment_intent_id)
            assert intent.status == "succeeded" and intent.amount == 4990
            assert intent.metadata["payment_id"] == str(payment.id)
        assert {c.status for c in db.session.scalars(select(SavedCardCharge))} == \
            {"succeeded"}


@pytest.mark.stripe
@pytest.mark.parametrize(("number", "status", "words"), [
    (THREE_D_SECURE, "needs_action", "Your bank asks you to confirm the payment"),
    (DECLINED_AT_CHARGE, "declined", "We could not charge"),
])
def test_off_session_charge_needing_the_student_leaves_the_session_waiting(
        stripe_app, evening, localstripe, number, status, words):  # noqa: F811
    _save_card_directly(stripe_app, evening["student"], localstripe, number)
    client = signed_in(stripe_app, "sam@example.com")
    _book_pattern(client, evening["contract"].id, 2)
    with stripe_app.app_context():
        sessions = db.session.scalars(select(Session)).all()
        assert {s.status for s in sessions} == {"pending_payment"}
        assert {c.status for c in db.session.scalars(select(SavedCardCharge))} == {status}
        assert {s.payment.status for s in sessions} == {"failed"}
        notices = db.session.scalars(select(Notification).where(
            Notification.kind == "saved_card_not_charged")).all()
        assert len(notices) == 2
        payment_id = sessions[0].payment.id
    inbox = client.get("/notifications/").get_data(as_text=True)
    assert words in inbox and f"/payments/{payment_id}/pay" in inbox
    # The link leads to a pay page that still works.
    assert client.get(f"/payments/{payment_id}/pay").status_code == 200


@pytest.mark.stripe
def test_paying_on_session_with_a_3ds_card_asks_stripe_js_to_authenticate(
        stripe_app, evening, book_session, localstripe):  # noqa: F811
    _save_card_directly(stripe_app, evening["student"], localstripe, THREE_D_SECURE)
    start = weekly_starts(1, 18 * 60, FIRST_DAY, 1, "Europe/Berlin")[0]
    session = book_session(evening["student"], evening["contract"], start)
    client = signed_in(stripe_app, "sam@example.com")
    with stripe_app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    token = client.csrf_token(f"/payments/{payment_id}/pay")
    answer = client.http.post(f"/payments/{payment_id}/saved-card", json={},
                              headers={"X-CSRFToken": token})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["status"] == "requires_action" and body["client_secret"]
    with stripe_app.app_context():
        payment = db.session.get(Payment, payment_id)
        assert payment.status == "pending"  # nothing is paid until the bank says so
        intent_id = payment.payment_intent_id
    result = localstripe.authenticate_3ds(intent_id, body["client_secret"])
    assert result["status"] == "succeeded"


# --- the test gateway -----------------------------------------------------------------------

def test_test_gateway_saves_and_removes_a_card_and_the_pay_page_offers_it(
        app, coaching, book_session, clock):
    client = signed_in(app, "sam@example.com")
    page = client.get("/payments/card").get_data(as_text=True)
    assert "TEST MODE" in page and "No card is saved" in page
    saved = client.post("/payments/card/test-save", {"card": "ok"}, token_page="/payments/card")
    assert saved.status_code == 303
    page = client.get("/payments/card").get_data(as_text=True)
    assert "Visa •••• 4242" in page
    session = book_session(coaching["student"], coaching["contract"],
                           datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    pay_page = client.get(f"/payments/{payment_id}/pay").get_data(as_text=True)
    assert "Pay with Visa •••• 4242" in pay_page
    paid = client.post(f"/payments/{payment_id}/saved-card",
                       token_page=f"/payments/{payment_id}/pay")
    assert paid.status_code == 303
    assert paid.headers["Location"].endswith(f"/sessions/{session.id}")
    with app.app_context():
        assert db.session.get(Payment, payment_id).status == "held"
        assert db.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "payment_received")) == 1
    removed = client.post("/payments/card/remove", token_page="/payments/card")
    assert removed.status_code == 303
    assert "No card is saved" in client.get("/payments/card").get_data(as_text=True)


def test_a_declined_saved_card_on_the_pay_page_says_so_and_keeps_the_booking(
        app, coaching, book_session, clock):
    client = signed_in(app, "sam@example.com")
    client.post("/payments/card/test-save", {"card": "decline"}, token_page="/payments/card")
    session = book_session(coaching["student"], coaching["contract"],
                           datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    declined = client.post(f"/payments/{payment_id}/saved-card",
                           token_page=f"/payments/{payment_id}/pay")
    assert declined.status_code == 303
    page = client.get(f"/payments/{payment_id}/pay").get_data(as_text=True)
    assert "declined" in page
    with app.app_context():
        assert db.session.get(Payment, payment_id).status == "failed"
        assert db.session.get(Session, session.id).status == "pending_payment"


def test_only_students_have_a_payment_method_page(app, coaching, make_user, book_session,
                                                  clock):
    coach = signed_in(app, "clara@example.com")
    assert coach.get("/payments/card").status_code == 403
    assert coach.post("/payments/card/test-save", {"card": "ok"},
                      token_page="/dashboard").status_code == 403
    stranger_email = "eve@example.com"
    make_user(name="Eve", email=stranger_email)
    stranger = signed_in(app, stranger_email)
    stranger.post("/payments/card/test-save", {"card": "ok"}, token_page="/payments/card")
    # Another person's payment is not found, saved card or not.
    session = book_session(coaching["student"], coaching["contract"],
                           datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    assert stranger.post(f"/payments/{payment_id}/saved-card",
                         token_page="/payments/card").status_code == 404


def test_expiry_and_label_read_as_people_read_them():
    card = SavedCard(brand="mastercard", last4="4444", exp_month=3, exp_year=2031)
    assert card.label == "Mastercard •••• 4444" and card.expiry == "03/2031"
