"""Issue #8 in a browser: the money box before and after release, the admin payment page
after a partial refund, and a fully booked contract. Each page is kept as a screenshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from skileez import clock as clock_module
from skileez.extensions import db
from skileez.sessions.models import Session
from tests.browser.conftest import screenshot
from tests.conftest import TEST_PASSWORD
from tests.test_money_words import RELEASE, THU, ZONES, build

pytestmark = pytest.mark.browser


@pytest.fixture
def admin(make_user):
    return make_user("admin", name="Ada Admin", email="ada@example.com", timezone="UTC")


@pytest.fixture
def booked(app, clock, coaching, book_session):
    return book_session(coaching["student"], coaching["contract"], THU)


def sign_in(browser, base, email, timezone):
    context = browser.new_context(timezone_id=timezone, viewport={"width": 1280, "height": 900},
                                  locale="en-GB")
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{base}/dashboard")
    return page


def put(app, state, coaching, admin, booked):
    with app.app_context():
        read_at = build(state, coaching, admin, booked.id)
        db.session.commit()
        payment_id = db.session.get(Session, booked.id).payment.id
    clock_module.freeze(read_at)
    return payment_id


@pytest.mark.parametrize("state", ["completed_before_release", "released"])
def test_completed_session_money_box(app, browser, live_server, coaching, admin, booked, state):
    put(app, state, coaching, admin, booked)
    page = sign_in(browser, live_server, "sam@example.com", "America/New_York")
    page.goto(f"{live_server}/sessions/{booked.id}")
    box = page.locator("#session-side")
    if state == "completed_before_release":
        expect(box).to_contain_text(f"Paid — held until {ZONES['student'](RELEASE)}")
        expect(box).to_contain_text(f"€44.91 will be released to Clara Schmidt on "
                                    f"{ZONES['student'](RELEASE)}.")
    else:
        expect(box).to_contain_text("Paid — released to the coach")
        expect(box).to_contain_text("€44.91 was released to Clara Schmidt on")
    expect(box).not_to_contain_text("held until the session is done")
    expect(page.get_by_test_id("add-to-calendar")).to_have_count(0)
    screenshot(page, f"issue8-money-box-{state}")


def test_admin_payment_page_after_a_partial_refund(app, browser, live_server, coaching, admin,
                                                   booked):
    payment_id = put(app, "partial_before_release", coaching, admin, booked)
    page = sign_in(browser, live_server, "ada@example.com", "UTC")
    page.goto(f"{live_server}/admin/payments/{payment_id}")
    expect(page.get_by_test_id("money-headline")).to_have_text("Partly refunded")
    expect(page.get_by_test_id("split")).to_contain_text("fee €3.99, coach €35.91")
    expect(page.get_by_test_id("in-escrow")).to_have_text("€39.90")
    screenshot(page, "issue8-admin-payment-partial-refund")


def test_fully_booked_contract_and_booking_pages(app, browser, live_server, clock, coaching,
                                                 make_contract, paid_session, book_session):
    contract = make_contract(coaching["student"], coaching["offering"], sessions=2)
    paid_session(coaching["student"], contract, THU)
    book_session(coaching["student"], contract, THU + timedelta(days=1))
    page = sign_in(browser, live_server, "sam@example.com", "America/New_York")
    page.goto(f"{live_server}/contracts/{contract.id}")
    expect(page.get_by_test_id("fully-booked")).to_contain_text("Every place is booked")
    expect(page.locator("text=Session 2 of 2")).to_be_visible()
    screenshot(page, "issue8-contract-fully-booked")
    page.goto(f"{live_server}/sessions/book/{contract.id}")
    expect(page.get_by_test_id("fully-booked")).to_contain_text(
        "A place frees up when a session is cancelled")
    expect(page.locator(".slot-button")).to_have_count(0)
    screenshot(page, "issue8-booking-fully-booked")
