"""A coach publishes, a student finds them, proposes, the coach accepts: a contract exists."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_out
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


def sign_in(page, base, email):
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{base}/dashboard")


def test_coach_publishes_student_proposes_coach_accepts(live_server, page, console_errors,
                                                        make_user, clock):
    clock.freeze(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))  # a Tuesday
    make_user("coach", name="Clara Schmidt", email="clara@example.com",
              timezone="Europe/Berlin")
    make_user(name="Sam Rivera", email="sam@example.com", timezone="America/New_York")

    # The coach describes herself, sets weekly hours and publishes an offering.
    sign_in(page, live_server, "clara@example.com")
    page.goto(f"{live_server}/coaches/me/profile")
    page.fill("#headline", "Conversational Spanish for busy professionals")
    page.fill("#subjects", "Spanish, conversation")
    page.click("button:has-text('Save profile')")
    expect(page.get_by_text("Your coach profile has been saved.")).to_be_visible()
    screenshot(page, "coach-profile")

    page.goto(f"{live_server}/coaches/me/availability")
    for added, day in enumerate(("2", "4"), start=1):  # Wed and Fri, in place with htmx
        page.select_option("#weekday", day)
        page.fill("#start", "09:00")
        page.fill("#end", "12:00")
        page.click("#weekly-rules button:has-text('Add')")
        expect(page.locator(".rule-chip")).to_have_count(added)
    # Overlap is refused beside the form, without a reload.
    page.select_option("#weekday", "2")
    page.fill("#start", "11:00")
    page.fill("#end", "13:00")
    page.click("#weekly-rules button:has-text('Add')")
    expect(page.locator("#weekly-rules")).to_contain_text("This overlaps Wednesday 09:00–12:00")
    # The preview refreshed itself after the additions (htmx trigger).
    expect(page.locator("#slot-preview .slot-pill").first).to_have_text("09:00")
    screenshot(page, "coach-availability")

    page.goto(f"{live_server}/coaches/me/offerings/new")
    page.fill("#title", "Spanish conversation")
    page.fill("#duration_minutes", "45")
    page.select_option("#currency", "EUR")
    page.fill("#price", "39.90")
    screenshot(page, "coach-offering-form")
    page.click("button:has-text('Publish offering')")
    expect(page.get_by_text("“Spanish conversation” is published.")).to_be_visible()
    screenshot(page, "coach-offerings")
    sign_out(page)

    # The student finds her by subject in the directory and proposes.
    sign_in(page, live_server, "sam@example.com")
    page.goto(f"{live_server}/coaches/")
    page.fill("#coach-search", "spanish")
    card = page.locator(".coach-card", has_text="Clara Schmidt")
    expect(card).to_contain_text("from €39.90")
    # Wed 11 Mar 09:00 Berlin (CET) is 04:00 in New York (EDT).
    expect(card).to_contain_text("Next free: Wed 11 Mar, 04:00 EDT")
    screenshot(page, "directory")
    card.click()
    expect(page.locator("h1")).to_have_text("Clara Schmidt")
    screenshot(page, "coach-public-profile")
    page.click("text=Propose sessions")
    page.fill("#sessions_count", "6")
    page.fill("#message", "I want to be comfortable in Spanish meetings.")
    screenshot(page, "propose")
    page.click("button:has-text('Send proposal')")
    expect(page.get_by_text("Your proposal was sent to Clara Schmidt")).to_be_visible()
    sign_out(page)

    # The coach sees the pending count and accepts.
    sign_in(page, live_server, "clara@example.com")
    expect(page.locator("[data-pending-proposals]")).to_have_text("1")
    page.click("a.btn:has-text('Answer')")
    expect(page.get_by_text("I want to be comfortable in Spanish meetings.")).to_be_visible()
    screenshot(page, "proposal-answer")
    page.fill("#response_message", "¡Bienvenido!")
    page.click("button:has-text('Accept and create the contract')")
    expect(page.get_by_text("Contract agreed with Sam Rivera")).to_be_visible()
    expect(page.locator("body")).to_contain_text("0 of 6 completed")
    screenshot(page, "contract-coach")
    sign_out(page)

    # The student sees the same contract.
    sign_in(page, live_server, "sam@example.com")
    page.goto(f"{live_server}/contracts/")
    page.click("text=Spanish conversation")
    expect(page.locator("body")).to_contain_text("0 of 6 completed")
    expect(page.locator("body")).to_contain_text("6 remaining")
    expect(page.locator("body")).to_contain_text("€39.90")
    screenshot(page, "contract-student")
    assert console_errors == []
