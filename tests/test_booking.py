"""Booking and paying through the test gateway: holds, declines, retries, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import Notification
from skileez.payments import ledger
from skileez.payments.models import Payment, Refund
from skileez.sessions.models import Session

# Frozen at Tue 10 Mar 2026 09:00 UTC; Clara (Berlin, UTC+1) is free 09:00–17:00 local.
WED_10_BERLIN = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)  # 10:00 CET



pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


def load(app, model, obj_id):
    with app.app_context():
        obj = db.session.get(model, obj_id)
        db.session.expunge(obj)
        return obj


def assert_ledger_healthy(app):
    with app.app_context():
        assert ledger.check_invariants() == []


@pytest.fixture
def student_client(client, coaching, clock):
    client.login("sam@example.com")
    return client


def test_week_view_shows_slots_in_the_students_zone_with_the_coachs(student_client, coaching):
    page = student_client.get(f"/sessions/book/{coaching['contract'].id}").get_data(
        as_text=True)
    # 10:00 Berlin (CET) = 05:00 New York (EDT) on Wed 11 Mar.
    contract_id = coaching["contract"].id
    slot = f'href="/sessions/book/{contract_id}/confirm?start=2026-03-11T09:00:00Z"'
    assert "Wed 11 Mar" in page and slot in page
    button = page[page.index(slot):page.index("</a>", page.index(slot))]
    assert "05:00" in button and "10:00 CET" in button
    fragment = student_client.get(f"/sessions/book/{coaching['contract'].id}?week=2026-03-16",
                                  headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="week"') and "Mon 16 Mar" in fragment


def test_book_then_decline_then_pay(app, student_client, coaching):
    contract_id = coaching["contract"].id
    start = "2026-03-12T09:00:00Z"  # Thu 10:00 in Berlin
    confirm = student_client.get(f"/sessions/book/{contract_id}/confirm?start={start}")
    body = confirm.get_data(as_text=True)
    assert "€49.90" in body and "€4.99" in body and "€44.91" in body
    # Free cancellation until 24 h before: Wed 11 Mar 05:00 in New York, 24 hours from now.
    assert "Wed 11 Mar 2026, 05:00 EDT" in body and "in 24 hours" in body
    response = student_client.post(f"/sessions/book/{contract_id}/confirm",
                                   {"starts_at": start}, token_page=f"/sessions/book/{contract_id}")
    assert response.status_code == 303
    with app.app_context():
        session = db.session.scalar(select(Session))
        payment = session.payment
        assert session.status == "pending_payment" and payment.status == "pending"
        assert session.hold_expires_at == datetime(2026, 3, 10, 9, 15, tzinfo=UTC)
        assert (payment.amount_minor, payment.fee_minor, payment.coach_net_minor) == (
            4990, 499, 4491)
        payment_id = payment.id
    assert response.headers["Location"].endswith(f"/payments/{payment_id}/pay")
    pay_page = student_client.get(f"/payments/{payment_id}/pay").get_data(as_text=True)
    assert "TEST MODE" in pay_page and "We hold this time for you until" in pay_page

    declined = student_client.post(f"/payments/{payment_id}/test-card", {"card": "decline"},
                                   token_page=f"/payments/{payment_id}/pay")
    assert declined.status_code == 303
    page = student_client.get(f"/payments/{payment_id}/pay").get_data(as_text=True)
    assert "Your card was declined (test card)." in page
    assert load(app, Payment, payment_id).status == "failed"

    paid = student_client.post(f"/payments/{payment_id}/test-card", {"card": "success"},
                               token_page=f"/payments/{payment_id}/pay")
    assert paid.status_code == 303
    with app.app_context():
        payment = db.session.get(Payment, payment_id)
        assert payment.status == "held" and payment.session.status == "scheduled"
        assert ledger.balance("escrow", currency="EUR") == 4990
        kinds = set(db.session.scalars(select(Notification.kind)))
        assert {"payment_received", "session_booked"} <= kinds
    assert_ledger_healthy(app)
    session_page = student_client.get(f"/sessions/{load(app, Payment, payment_id).session_id}")
    assert "scheduled" in session_page.get_data(as_text=True)


def test_a_taken_slot_is_refused(app, client, coaching, make_user, make_contract, clock,
                                 book_session):
    other = make_user(email="leo@example.com")
    other_contract = make_contract(other, coaching["offering"])
    book_session(other, other_contract, WED_10_BERLIN)
    client.login("sam@example.com")
    response = client.post(f"/sessions/book/{coaching['contract'].id}/confirm",
                           {"starts_at": WED_10_BERLIN.isoformat()}, token_page="/dashboard")
    assert response.status_code == 409
    assert "This time was just taken — pick another." in response.get_data(as_text=True)
    # The buffer (15 min) also protects the coach: 11:00 CET would end too close? No —
    # 10:00–11:00 plus 15 min buffer blocks a start before 11:15.
    response = client.post(f"/sessions/book/{coaching['contract'].id}/confirm",
                           {"starts_at": (WED_10_BERLIN + timedelta(hours=1)).isoformat()},
                           token_page="/dashboard")
    assert response.status_code == 409
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 1


def test_bookings_never_exceed_the_contract(app, coaching, make_contract, make_user, clock,
                                            book_session):
    contract = make_contract(coaching["student"], coaching["offering"], sessions=1)
    book_session(coaching["student"], contract, WED_10_BERLIN)
    from skileez.core.errors import Conflict

    with pytest.raises(Conflict, match="Every place is booked: all 1 sessions of this contract"):
        book_session(coaching["student"], contract, WED_10_BERLIN + timedelta(days=1))


def test_unpaid_hold_expires_and_frees_the_slot(app, coaching, clock, book_session):
    session = book_session(coaching["student"], coaching["contract"], WED_10_BERLIN)
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    with app.app_context():
        assert sweep()["expire_payment_holds"] == 0
    clock.advance(timedelta(seconds=1))
    with app.app_context():
        assert sweep()["expire_payment_holds"] == 1
        assert db.session.get(Session, session.id).status == "expired"
    # The slot is free again: it can be booked anew.
    again = book_session(coaching["student"], coaching["contract"], WED_10_BERLIN)
    assert again.status == "pending_payment"


def test_payment_after_expiry_is_refunded_automatically(app, coaching, clock, book_session,
                                                       make_client):
    session = book_session(coaching["student"], coaching["contract"], WED_10_BERLIN)
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    clock.advance(timedelta(minutes=16))
    with app.app_context():
        sweep()
        from skileez.payments.webhooks import handle_event

        payment = db.session.get(Payment, payment_id)
        from skileez.payments.operations import ensure_payment_intent

        ensure_payment_intent(payment)
        outcome = handle_event({"id": "evt_late", "type": "payment_intent.succeeded",
                                "data": {"object": {"id": payment.payment_intent_id,
                                                    "amount_received": 4990,
                                                    "metadata": {"payment_id": str(payment_id)},
                                                    "latest_charge": "ch_late"}}})
        db.session.commit()
        assert outcome == "refunded late payment"
        payment = db.session.get(Payment, payment_id)
        assert payment.status == "refunded" and payment.refunded_minor == 4990
        refund = db.session.scalar(select(Refund))
        assert refund.status == "succeeded"  # the test gateway refunds at once
        assert ledger.balance("escrow", currency="EUR") == 0
        assert ledger.balance("refunds", currency="EUR") == 4990
    assert_ledger_healthy(app)


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z", "nonsense",
                                   "2026-03-11T09:00:00"])
def test_absurd_start_times_are_400_not_500(student_client, coaching, start):
    url = f"/sessions/book/{coaching['contract'].id}/confirm"
    assert student_client.get(url, query_string={"start": start}).status_code == 400
    response = student_client.post(url, {"starts_at": start}, token_page="/dashboard")
    assert response.status_code == 400


def test_opening_your_own_unpaid_booking_again_points_to_paying_it(app, student_client,
                                                                   coaching):
    """Found by a walk: the confirmation of a time you already hold offered "Book and go
    to payment", which answered 409 "This time was just taken"."""
    contract_id = coaching["contract"].id
    start = "2026-03-12T09:00:00Z"
    url = f"/sessions/book/{contract_id}/confirm"
    first = student_client.post(url, {"starts_at": start}, token_page=f"{url}?start={start}")
    assert first.status_code == 303
    again = student_client.get(f"{url}?start={start}").get_data(as_text=True)
    assert "You already hold this time. Pay for it to keep it." in again
    assert "Book and go to payment" not in again
    assert f'href="{first.headers["Location"]}"' in again and "Go to payment" in again
    second = student_client.post(url, {"starts_at": start}, token_page=f"{url}?start={start}")
    assert second.status_code == 409
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 1
