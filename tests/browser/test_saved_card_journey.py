"""A student saves a card with Stripe.js (localstripe's stand-in) and books the rest weekly.

The card form is the stand-in's plain inputs; ``confirmCardSetup`` confirms the
SetupIntent with them, card.js tells the server, which checks the SetupIntent at Stripe
and records the card. Then the pattern page previews two weekly times and books them,
each charged off-session to the saved card.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_payment_journey import (  # noqa: F401
    sign_in,
    stand_in_keeps_its_globals,
    stripe_live_server,
)
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import localstripe  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


@pytest.mark.stripe
def test_save_a_card_with_stripe_js_then_book_the_rest_weekly(
        coaching, stripe_live_server, stand_in_keeps_its_globals, page,  # noqa: F811
        console_errors):
    base = stripe_live_server
    contract_id = coaching["contract"].id
    sign_in(page, base, "sam@example.com")
    page.goto(f"{base}/payments/")
    page.click("a:has-text('Payment method')")
    expect(page).to_have_url(f"{base}/payments/card")
    expect(page.get_by_text("No card is saved")).to_be_visible()
    card = page.locator("#card-element")
    expect(card).to_contain_text("localstripe:")
    card.locator("input[placeholder=number]").fill("4242424242424242")
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill("10001")
    page.click("#save-card-button")
    expect(page.get_by_test_id("saved-card")).to_contain_text("Visa •••• 4242",
                                                              timeout=10_000)
    expect(page.get_by_test_id("saved-card")).to_contain_text("Expires 12/2034")
    screenshot(page, "saved-card-stripe")

    page.goto(f"{base}/contracts/{contract_id}")
    page.get_by_test_id("book-the-rest").click()
    expect(page).to_have_url(f"{base}/payments/pattern/{contract_id}")
    # Wednesdays at 05:00 in New York: 11:00 in Berlin, inside Clara's hours.
    page.select_option("#weekday", "2")
    page.fill("#at", "05:00")
    page.fill("#count", "2")
    page.click("button:has-text('Check these times')")
    preview = page.get_by_test_id("pattern-preview")
    expect(preview.locator("tbody tr")).to_have_count(2)
    expect(page.locator("input[name=starts]:checked")).to_have_count(2)
    screenshot(page, "book-the-rest-preview")
    page.get_by_test_id("confirm-pattern").click()
    expect(page).to_have_url(f"{base}/contracts/{contract_id}")
    expect(page.locator(".alert-success")).to_contain_text("2 sessions booked")
    sessions = page.locator("a", has_text=re.compile(r"Session \d of 5"))
    expect(sessions).to_have_count(2)
    assert console_errors == []
