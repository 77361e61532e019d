"""What Chromium does with the status poll's validator: it keeps the fragment, asks again
with ``If-None-Match``, shows its copy on a 304 (htmx swaps that copy, never an empty
body), and still shows the other person's change within one poll.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import request
from playwright.sync_api import expect

from tests.browser.test_session_journey import POLL, THURSDAY, VIEWPORT, status
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.browser


VIEWER = "X-Test-Viewer"  # which person's browser sent a request
STUDENT = "sam@example.com"


@pytest.fixture
def answers() -> list[tuple[str | None, int]]:
    """What the server was asked for and answered on each of the student's polls:
    (If-None-Match, status). The coach's page polls too; theirs are not listed (one of
    them landing last made the test read the coach's first answer as the student's)."""
    return []


@pytest.fixture
def app(make_app, answers):
    app = make_app()

    @app.after_request
    def record(response):
        if request.path.endswith("/live") and request.headers.get(VIEWER) == STUDENT:
            answers.append((request.headers.get("If-None-Match"), response.status_code))
        return response

    return app


@pytest.fixture
def scheduled(clock, coaching, paid_session):
    return paid_session(coaching["student"], coaching["contract"], THURSDAY)


@pytest.fixture
def signed_in(browser, live_server, coaching):
    """A page per person in a browser context of its own, with its HTTP cache on (routing
    requests through Playwright, as the journey tests do, turns the cache off)."""
    contexts = []

    def open_as(email: str, timezone: str):
        context = browser.new_context(timezone_id=timezone, viewport=VIEWPORT, locale="en-GB",
                                      extra_http_headers={VIEWER: email})
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server}/login")
        page.fill("#email", email)
        page.fill("#password", TEST_PASSWORD)
        page.click("button:has-text('Sign in')")
        expect(page).to_have_url(f"{live_server}/dashboard")
        return page

    yield open_as
    for context in contexts:
        context.close()


def _wait_for(page, condition, timeout_ms: int) -> None:
    for _ in range(timeout_ms // 250):
        if condition():
            return
        page.wait_for_timeout(250)
    raise AssertionError("timed out")


def test_an_unchanged_poll_keeps_the_fragment_and_a_change_arrives_within_one_poll(
        clock, scheduled, signed_in, live_server, answers):
    clock.freeze(THURSDAY - timedelta(hours=30, minutes=1))  # no words change for a while
    url = f"{live_server}/sessions/{scheduled.id}"
    student = signed_in(STUDENT, "America/New_York")
    coach = signed_in("clara@example.com", "Europe/Berlin")
    student.goto(url)
    student.evaluate("window.__notReloaded = true")
    live = student.locator("#session-live")
    clock_line = student.get_by_test_id("session-clock").inner_text()
    assert clock_line == "Starts in 30 hours"

    # The first poll's answer is kept; the next one is asked with its validator: 304.
    _wait_for(student, lambda: (answers[-1:] or [(None, 0)])[-1][1] == 304, 2 * POLL)
    assert answers[0] == (None, 200)
    assert answers[-1][0] is not None
    student.wait_for_timeout(500)  # htmx has swapped in the browser's copy by now
    expect(live).to_have_attribute("data-status", "scheduled")
    expect(status(student)).to_have_text("scheduled")
    expect(student.get_by_test_id("session-clock")).to_have_text(clock_line)
    expect(student.get_by_test_id("actions")).to_contain_text("Ask to reschedule")
    # ... and it goes on polling.
    polled = len(answers)
    _wait_for(student, lambda: len(answers) > polled, POLL)
    assert answers[-1][1] == 304

    # The coach confirms: the status stays, the validator does not, the badge arrives.
    coach.goto(url)
    coach.click("button:has-text('Confirm I will be there')")
    expect(coach).to_have_url(url)
    expect(student.get_by_test_id("session-status")).to_contain_text(
        "confirmed by the coach", timeout=POLL)
    assert student.evaluate("window.__notReloaded") is True
    assert answers[-1][0] is not None and answers[-1][1] == 200
    expect(student.get_by_test_id("session-clock")).to_have_text(clock_line)
