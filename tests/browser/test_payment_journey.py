"""A student books a session and pays for it; the coach sees the booking.

Two journeys: the built-in test gateway (no Stripe keys; a decline, then a retry that
succeeds), and Stripe.js as played by localstripe's stand-in, where the booking is
confirmed only when localstripe's signed ``payment_intent.succeeded`` webhook reaches the
live server.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from tests.browser.conftest import screenshot, sign_out
from tests.conftest import TEST_PASSWORD
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import localstripe  # noqa: F401

pytestmark = pytest.mark.browser

WEBHOOK_EVENTS = ["payment_intent.succeeded", "payment_intent.payment_failed"]


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


def sign_in(page, base, email):
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{base}/dashboard")


def open_booking(page, base, contract_id):
    """From the student's contract list to the week view of the contract's open times."""
    page.goto(f"{base}/contracts/")
    page.click(f"a[href='/contracts/{contract_id}']")
    expect(page).to_have_url(f"{base}/contracts/{contract_id}")
    page.click("a.btn:has-text('Book a session')")
    expect(page).to_have_url(f"{base}/sessions/book/{contract_id}")
    expect(page.locator("h1")).to_have_text("Book a session with Clara Schmidt")


def coach_sees_the_booking(page, base, session_id):
    """Clara finds the paid session in her list and the notification in her bell."""
    sign_in(page, base, "clara@example.com")
    expect(page.locator("#notification-bell [data-unread-count]")).to_be_visible()
    page.click("nav a.nav-link:has-text('Sessions')")
    expect(page).to_have_url(f"{base}/sessions/")
    row = page.locator("tbody tr", has=page.locator(f"a[href='/sessions/{session_id}']"))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Sam Rivera")
    expect(row.locator(".status-badge")).to_have_text("scheduled")
    return row


def booked_notification(page, base, starts_for_coach):
    page.click("#notification-bell")
    expect(page).to_have_url(f"{base}/notifications/")
    item = page.locator(".notification", has_text="booked and paid a session")
    expect(item).to_have_count(1)
    expect(item).to_contain_text(
        f"Sam Rivera booked and paid a session of Conversation practice on {starts_for_coach}.")
    expect(item).to_have_class(re.compile(r"\bunread\b"))
    return item


# --- 1. the built-in test gateway ---------------------------------------------------------

def test_book_pay_with_a_declined_then_a_good_test_card_and_the_coach_sees_it(
        clock, coaching, live_server, page, console_errors):
    # Frozen at Tue 10 Mar 2026 09:00 UTC (05:00 in New York, 10:00 in Berlin).
    contract_id = coaching["contract"].id
    sign_in(page, live_server, "sam@example.com")
    open_booking(page, live_server, contract_id)
    week = page.locator("#week h2")
    expect(week).to_have_text("Week of Mon 09 Mar 2026")
    # The week pager swaps the week in place (htmx) and keeps the URL in step.
    page.click("#week a:has-text('Next week →')")
    expect(week).to_have_text("Week of Mon 16 Mar 2026")
    expect(page).to_have_url(f"{live_server}/sessions/book/{contract_id}?week=2026-03-16")
    page.click("#week a:has-text('← Previous week')")
    expect(week).to_have_text("Week of Mon 09 Mar 2026")
    # Thu 12 Mar 09:00 in Berlin (CET) is 04:00 in New York (EDT), 47 hours ahead: far
    # enough for the free-cancellation rule (until 24 hours before) to be offered.
    slot = page.locator("a.slot-button[href$='start=2026-03-12T08:00:00Z']")
    expect(slot).to_contain_text("04:00")
    expect(slot.locator(".coach-time")).to_have_text("09:00 CET")
    screenshot(page, "booking-week")
    slot.click()

    expect(page).to_have_url(
        f"{live_server}/sessions/book/{contract_id}/confirm?start=2026-03-12T08:00:00Z")
    expect(page.locator("h1")).to_have_text("Confirm your session")
    expect(page.get_by_test_id("booking-when")).to_contain_text(
        "Thu 12 Mar 2026, 04:00 EDT – 05:00")
    expect(page.get_by_test_id("booking-when")).to_contain_text(
        "Thu 12 Mar 2026, 09:00 CET for Clara")
    prices = page.locator("table tr")
    expect(prices.nth(0)).to_contain_text("Price")
    expect(prices.nth(0)).to_contain_text("€49.90")
    expect(prices.nth(1)).to_contain_text("of which platform fee (10%)")
    expect(prices.nth(1)).to_contain_text("€4.99")
    expect(prices.nth(2)).to_contain_text("paid to Clara after the session")
    expect(prices.nth(2)).to_contain_text("€44.91")
    expect(page.get_by_test_id("free-cancellation")).to_have_text(
        "Free cancellation until Wed 11 Mar 2026, 04:00 EDT — in 23 hours.")
    expect(page.locator("body")).to_contain_text("We hold this time for you for 15 minutes")
    screenshot(page, "booking-confirm")
    page.click("button:has-text('Book and go to payment')")

    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server)}/payments/\d+/pay$"))
    pay_url = page.url
    expect(page.locator("h1")).to_have_text("Pay €49.90")
    expect(page.locator(".test-gateway .badge")).to_have_text("TEST MODE")
    hold = page.get_by_test_id("hold-notice")
    expect(hold).to_contain_text("We hold this time for you until Tue 10 Mar, 05:15 EDT")
    screenshot(page, "pay-test-gateway")

    # A declined card: back on the same page, told so, and the time is still held.
    page.click("button:has-text('Pay with test card 4000 0000 0000 0002 (declined)')")
    expect(page).to_have_url(pay_url)
    expect(page.get_by_test_id("payment-error")).to_contain_text(
        "Your card was declined (test card). Nothing was charged; try again.")
    expect(page.locator(".alert-danger")).to_have_count(1)  # said once, beside the cards
    expect(hold).to_contain_text("We hold this time for you until Tue 10 Mar, 05:15 EDT")
    screenshot(page, "pay-test-gateway-declined")

    # The good card: the session is booked and the money held until the session is done.
    page.click("button:has-text('Pay with test card 4242 4242 4242 4242 (succeeds)')")
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server)}/sessions/\d+$"))
    session_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_text("Payment received. Your session is booked.")).to_be_visible()
    expect(page.get_by_test_id("session-status")).to_have_text("scheduled")
    expect(page.get_by_test_id("payment-status")).to_have_attribute("data-status", "held")
    expect(page.locator("h1")).to_have_text("Session 1 of 5: Conversation practice")
    expect(page.locator("a:has-text('Pay now')")).to_have_count(0)
    screenshot(page, "session-student")
    # The student's own bell has the receipt notification.
    expect(page.locator("#notification-bell [data-unread-count]")).to_be_visible()
    sign_out(page)

    coach_sees_the_booking(page, live_server, session_id)
    screenshot(page, "coach-sessions")
    item = booked_notification(page, live_server, "Thu 12 Mar 2026, 09:00 CET")
    screenshot(page, "coach-notifications")
    item.locator("a:has-text('Open')").click()
    expect(page).to_have_url(f"{live_server}/sessions/{session_id}")
    expect(page.get_by_test_id("session-status")).to_have_text("scheduled")
    expect(page.locator("body")).to_contain_text("with Sam Rivera")
    assert console_errors == []


# --- 2. Stripe.js (localstripe's stand-in) and a real webhook ------------------------------

@pytest.fixture
def stripe_live_server(make_app, fake_connect, localstripe) -> Iterator[str]:  # noqa: F811
    """A live server for an app whose gateway is Stripe (localstripe behind the Connect
    fake), with localstripe's webhook aimed at it."""
    app = make_app(**fake_connect.app_config())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    localstripe.register_webhook(f"{base}/payments/webhook", events=WEBHOOK_EVENTS)
    try:
        yield base
    finally:
        localstripe.unregister_webhook()
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def stand_in_keeps_its_globals(page, localstripe):  # noqa: F811
    """Serve localstripe's Stripe.js stand-in inside a block, as real Stripe.js keeps to itself.

    The stand-in is a classic script whose top level declares ``class Element``. That
    binding shadows ``window.Element`` for every script on the page: Bootstrap's
    ``Element.prototype.querySelectorAll.call`` then throws ("Cannot read properties of
    undefined (reading 'call')", on load and on every click), and htmx's ``instanceof
    Element`` checks are always false. Real Stripe.js adds no global but ``Stripe``. In a
    block the stand-in's declarations stay its own; ``Stripe = ...`` (sloppy mode) still
    sets the global and ``document.currentScript`` is unchanged.
    """

    def serve_in_a_block(route):
        response = route.fetch()
        route.fulfill(response=response, body="{\n" + response.text() + "\n}\n")

    page.route(lambda url: url == localstripe.js_url, serve_in_a_block)


@pytest.mark.stripe
def test_book_and_pay_with_stripe_js_and_the_webhook_confirms_it(
        coaching, stripe_live_server, stand_in_keeps_its_globals, page, console_errors):
    # The real clock: localstripe signs its webhooks with the current time.
    base = stripe_live_server
    contract_id = coaching["contract"].id
    sign_in(page, base, "sam@example.com")
    open_booking(page, base, contract_id)
    slots = page.locator("a.slot-button")
    week = page.locator("#week h2")
    for _ in range(3):  # late in a week there may be nothing left; page on with htmx
        if slots.count():
            break
        shown = week.inner_text()
        page.click("#week a:has-text('Next week →')")
        expect(week).not_to_have_text(shown)
    expect(slots.first).to_be_visible()
    slots.first.click()

    expect(page).to_have_url(re.compile(
        rf"^{re.escape(base)}/sessions/book/{contract_id}/confirm\?start=\S+Z$"))
    expect(page.locator("table")).to_contain_text("€49.90")
    page.click("button:has-text('Book and go to payment')")

    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/payments/\d+/pay$"))
    payment_id = int(page.url.split("/")[-2])
    expect(page.locator("h1")).to_have_text("Pay €49.90")
    expect(page.locator(".test-gateway")).to_have_count(0)
    card = page.locator("#card-element")
    # The stand-in mounts plain inputs (no iframe); the real Stripe.js would not.
    expect(card).to_contain_text("localstripe:")
    assert page.evaluate("Element === window.Element")  # see stand_in_keeps_its_globals
    card.locator("input[placeholder=number]").fill("4242424242424242")
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("10001")
    screenshot(page, "pay-stripe")
    page.click("#pay-button")

    # pay.js goes to the status page, which polls until the webhook marks the payment held
    # (confirming the card changes nothing on our side; only the webhook does).
    expect(page).to_have_url(f"{base}/payments/{payment_id}/status")
    status = page.locator("#payment-status")
    expect(status).to_contain_text("Payment received: your session is booked.",
                                   timeout=10_000)
    expect(status).to_have_attribute("data-status", "held")
    expect(page.locator("#card-errors")).to_have_count(0)
    screenshot(page, "pay-stripe-result")
    status.locator("a:has-text('Open the session')").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/sessions/\d+$"))
    session_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_test_id("session-status")).to_have_text("scheduled")
    expect(page.get_by_test_id("payment-status")).to_have_attribute("data-status", "held")
    starts_for_coach = page.locator("dd", has_text="for Clara").locator("div").inner_text()
    screenshot(page, "session-student-stripe")
    sign_out(page)

    coach_sees_the_booking(page, base, session_id)
    starts = starts_for_coach.removesuffix(" for Clara")
    booked_notification(page, base, starts)
    assert console_errors == []
