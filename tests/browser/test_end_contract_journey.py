"""A coach pauses new bookings and resumes them; the student then ends the contract.

Both people on the same contract, in a real browser: the pause shows on the student's
page and keeps them from booking, the confirm page lists what ending cancels and refunds,
a missing reason is refused beside the field, and afterwards both pages say how it ended.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_out
from tests.browser.test_contract_journey import sign_in

pytestmark = pytest.mark.browser

THU_0900 = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)  # 48 h after the frozen clock: in time


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


def test_coach_pauses_and_resumes_then_the_student_ends_the_contract(
        live_server, page, console_errors, clock, coaching, paid_session):
    clock.freeze(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))  # a Tuesday
    contract_id = coaching["contract"].id
    paid_session(coaching["student"], coaching["contract"], THU_0900)
    contract_page = f"{live_server}/contracts/{contract_id}"

    sign_in(page, live_server, "clara@example.com")
    page.goto(contract_page)
    page.click("button:has-text('Pause new bookings')")
    expect(page.get_by_role("button", name="Resume bookings")).to_be_visible()
    sign_out(page)

    sign_in(page, live_server, "sam@example.com")
    page.goto(contract_page)
    expect(page.locator("main")).to_contain_text("The coach has paused new bookings")
    expect(page.get_by_test_id("book-the-rest")).to_have_count(0)
    sign_out(page)

    sign_in(page, live_server, "clara@example.com")
    page.goto(contract_page)
    page.click("button:has-text('Resume bookings')")
    expect(page.get_by_role("button", name="Pause new bookings")).to_be_visible()
    sign_out(page)

    sign_in(page, live_server, "sam@example.com")
    page.goto(contract_page)
    expect(page.get_by_test_id("book-the-rest")).to_be_visible()
    page.click("a:has-text('End contract…')")
    expect(page.locator("main")).to_contain_text("Booked sessions that will be cancelled")
    expect(page.locator("main")).to_contain_text("€49.90")
    screenshot(page, "end-contract-confirm")
    page.click("button:has-text('Yes, end the contract')")
    expect(page.locator(".invalid-feedback")).to_contain_text("Say why you are ending")
    page.fill("textarea[name=reason]", "Moving abroad; I cannot keep the times.")
    page.click("button:has-text('Yes, end the contract')")
    expect(page).to_have_url(contract_page)
    expect(page.locator(".alert-success")).to_contain_text("€49.90 refunded to you")
    expect(page.locator("main")).to_contain_text(
        "Ended by Sam Rivera on Tue 10 Mar 2026")
    expect(page.locator("main")).to_contain_text("Moving abroad; I cannot keep the times.")
    expect(page.get_by_role("link", name="End contract…")).to_have_count(0)
    screenshot(page, "end-contract-ended")
    sign_out(page)

    sign_in(page, live_server, "clara@example.com")
    page.goto(contract_page)
    expect(page.locator("main")).to_contain_text("Ended by Sam Rivera")
    expect(page.get_by_role("button", name="Pause new bookings")).to_have_count(0)
    assert console_errors == []
