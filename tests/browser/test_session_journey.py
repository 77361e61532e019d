"""A paid session lived through by both people at once, each in a browser of their own.

The coach (Clara, Berlin) and the student (Sam, New York) each sign in in their own
browser context, in their own time zone, and keep the same session page open. What one
does reaches the other's open page through the live fragment's htmx poll (every 10 s),
without a reload; a marker set on ``window`` beforehand proves the page was never
reloaded. Three journeys: start, join, complete and rate; a reschedule request approved
from the coach's page; a late cancellation that shows the zero refund first.

The meeting rooms live at a ``.test`` address that each context answers itself
(``context.route``), so nothing leaves the machine when a browser goes there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.browser

# The clock fixture freezes at Tue 10 Mar 2026 09:00 UTC. The session is on Thursday
# 12 Mar at 09:00 UTC: 10:00 CET for Clara, 05:00 EDT for Sam (New York is on summer
# time from 8 March; Berlin only from 29 March).
THURSDAY = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
MEETING_BASE_URL = "http://meet.skileez.test"
POLL = 15_000  # ms: one htmx poll (every 10 s) plus a margin
VIEWPORT = {"width": 1280, "height": 900}
# A form shown again with its errors answers 422; the console_errors fixture allows it too.
EXPECTED_CONSOLE = "the server responded with a status of 422"


@pytest.fixture
def app(make_app):
    """The app that ``live_server`` serves, with its meeting rooms at a local address."""
    return make_app(MEETING_BASE_URL=MEETING_BASE_URL)


class Person:
    """One person's browser context and page, with the console errors the page logs."""

    def __init__(self, browser, base: str, email: str, timezone: str, label: str):
        self.base = base
        self.label = label
        self.context = browser.new_context(timezone_id=timezone, viewport=VIEWPORT,
                                           locale="en-GB")
        self.context.route(f"{MEETING_BASE_URL}/**", self._meeting_room)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.sign_in(email)

    @staticmethod
    def _meeting_room(route):
        route.fulfill(status=200, content_type="text/html",
                      body="<!doctype html><title>Meeting room</title><h1>Meeting room</h1>")

    def _on_console(self, message):
        if message.type == "error" and EXPECTED_CONSOLE not in message.text:
            self.errors.append(f"{message.text} (at {self.page.url})")

    def sign_in(self, email: str) -> None:
        page = self.page
        page.goto(f"{self.base}/login")
        page.fill("#email", email)
        page.fill("#password", TEST_PASSWORD)
        page.click("button:has-text('Sign in')")
        expect(page).to_have_url(f"{self.base}/dashboard")

    def open_session(self, session_id: int) -> None:
        self.page.goto(f"{self.base}/sessions/{session_id}")
        expect(self.page.locator("#session-live")).to_be_visible()

    def mark_page(self) -> None:
        """Leave a marker on the window: it survives htmx swaps, not a reload."""
        self.page.evaluate(f"window.__sessionJourney = {self.label!r}")

    def assert_not_reloaded(self) -> None:
        assert self.page.evaluate("window.__sessionJourney") == self.label, \
            f"{self.label}'s page was reloaded"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser, live_server, coaching):
    opened: list[Person] = []

    def open_for(email, timezone, label):
        person = Person(browser, live_server, email, timezone, label)
        opened.append(person)
        return person

    coach = open_for("clara@example.com", "Europe/Berlin", "coach")
    student = open_for("sam@example.com", "America/New_York", "student")
    yield coach, student
    for person in opened:
        person.close()


@pytest.fixture
def scheduled(clock, coaching, paid_session):
    """Sam's paid session on Thursday at 09:00 UTC, booked on Tuesday."""
    return paid_session(coaching["student"], coaching["contract"], THURSDAY)


def status(page):
    return page.get_by_test_id("session-status").locator(".status-badge")


def join_without_leaving(page) -> str:
    """Send the page's own Join form (its action and CSRF token) with the browser's cookies,
    without following the redirect, and return the meeting URL it points to. The page
    itself stays where it is."""
    form = page.get_by_test_id("join").locator("xpath=ancestor::form")
    action = form.evaluate("form => form.action")
    token = form.locator("input[name=csrf_token]").input_value()
    response = page.request.post(action, form={"csrf_token": token}, max_redirects=0)
    assert response.status == 303, response.text()
    return response.headers["location"]


# --- 1. start, join, complete, rate -----------------------------------------------------

def test_start_join_complete_and_rate_seen_live_by_both(clock, scheduled, people):
    coach, student = people
    session_id = scheduled.id
    url = f"{coach.base}/sessions/{session_id}"
    # Four minutes before the start: the start window (from five minutes before) is open.
    clock.freeze(THURSDAY - timedelta(minutes=4))

    coach.open_session(session_id)
    expect(status(coach.page)).to_have_text("scheduled")
    expect(coach.page.get_by_test_id("join")).to_have_count(0)
    coach.mark_page()

    student.open_session(session_id)
    expect(status(student.page)).to_have_text("scheduled")
    expect(student.page.get_by_test_id("session-clock")).to_have_text("Starts in 4 minutes")
    start = student.page.get_by_test_id("start")
    expect(start).to_be_enabled()
    expect(student.page.get_by_test_id("actions")).to_contain_text(
        "Start window open until Thu 12 Mar 2026, 05:15 EDT.")
    screenshot(student.page, "session-journey-student-before-start")
    start.click()
    expect(student.page).to_have_url(url)
    expect(student.page.get_by_text("The session has started and the meeting room is open."))\
        .to_be_visible()
    expect(student.page.locator("#session-live")).to_have_attribute("data-status", "in_progress")
    expect(status(student.page)).to_have_text("in progress")
    student.mark_page()

    # Clara's open page learns it from its own poll.
    expect(coach.page.locator("#session-live")).to_have_attribute(
        "data-status", "in_progress", timeout=POLL)
    expect(status(coach.page)).to_have_text("in progress")
    join = coach.page.get_by_test_id("join")
    expect(join).to_have_text("Join the meeting")
    expect(join).to_be_enabled()
    expect(coach.page.get_by_test_id("session-clock")).to_contain_text(
        "0 min elapsed · 64 min remaining")
    # Whoever starts is present: 08:56 UTC is 09:56 in Berlin.
    expect(coach.page.get_by_test_id("attendance")).to_have_text(re.compile(
        r"Student: joined 09:56\s*·\s*Coach: not joined"))
    coach.assert_not_reloaded()
    screenshot(coach.page, "session-journey-coach-in-progress")

    # Both join. Clicking Join does not reach the room in a browser (see
    # test_join_button_takes_the_browser_to_the_meeting_room), so each posts the page's own
    # Join form without following the redirect: attendance is what is checked here.
    for person in (student, coach):
        assert join_without_leaving(person.page).startswith(f"{MEETING_BASE_URL}/skileez-")
    # Each open page shows both joined from its own poll: 08:56 UTC is 04:56 EDT, 09:56 CET.
    for person, joined in ((student, "04:56"), (coach, "09:56")):
        expect(person.page.get_by_test_id("attendance")).to_have_text(re.compile(
            rf"Student: joined {joined}\s*·\s*Coach: joined {joined}"), timeout=POLL)
        person.assert_not_reloaded()

    # Fifty minutes later Clara marks it completed, with notes.
    clock.advance(timedelta(minutes=50))
    coach.page.get_by_test_id("complete").click()
    expect(coach.page).to_have_url(f"{url}/complete")
    coach.page.fill("#notes", "Past tense drills; homework: page 12.")
    coach.page.click("button:has-text('Mark as completed')")
    expect(coach.page).to_have_url(url)
    expect(coach.page.get_by_text("Marked as completed. Both of you can now rate it."))\
        .to_be_visible()
    expect(status(coach.page)).to_have_text("completed")
    expect(coach.page.get_by_test_id("coach-notes")).to_have_text(
        "Past tense drills; homework: page 12.")

    # Sam's open page sees it live, and stops polling.
    expect(student.page.locator("#session-live")).to_have_attribute(
        "data-status", "completed", timeout=POLL)
    student.assert_not_reloaded()
    expect(status(student.page)).to_have_text("completed")
    expect(student.page.get_by_test_id("session-clock")).to_have_text(
        "Completed Thu 12 Mar, 05:46 EDT")
    expect(student.page.locator("#session-live")).not_to_have_attribute("hx-get", re.compile("."))
    expect(student.page.get_by_test_id("rate")).to_be_visible()
    screenshot(student.page, "session-journey-completed")

    # Sam rates five stars with tags.
    student.page.get_by_test_id("rate").click()
    expect(student.page).to_have_url(f"{url}/rate")
    expect(student.page.locator("h1")).to_have_text("Rate this session")
    student.page.check("input[name=stars][value='5']")
    student.page.fill("#feedback", "Clear explanations and lots of practice.")
    student.page.fill("#tags", "Patient, clear")
    screenshot(student.page, "session-journey-rate")
    student.page.click("button:has-text('Send rating')")
    expect(student.page).to_have_url(url)
    expect(student.page.get_by_text("Thank you for your rating.")).to_be_visible()
    expect(student.page.get_by_test_id("rate")).to_have_count(0)

    # Clara rates too (her page is final, so it no longer polls: she reloads it).
    coach.open_session(session_id)
    coach.page.get_by_test_id("rate").click()
    expect(coach.page).to_have_url(f"{url}/rate")
    expect(coach.page.locator("#public")).to_have_count(0)  # only students publish feedback
    coach.page.check("input[name=stars][value='4']")
    coach.page.fill("#tags", "prepared")
    coach.page.click("button:has-text('Send rating')")
    expect(coach.page).to_have_url(url)
    expect(coach.page.get_by_text("Thank you for your rating.")).to_be_visible()

    student.open_session(session_id)
    for person in (coach, student):
        ratings = person.page.locator(".card", has=person.page.get_by_role(
            "heading", name="Ratings"))
        expect(ratings).to_contain_text("★★★★★ from Sam Rivera")
        expect(ratings).to_contain_text("★★★★☆ from Clara Schmidt")
        expect(ratings.locator(".badge")).to_have_text(["patient", "clear", "prepared"])
        expect(ratings).to_contain_text("Clear explanations and lots of practice.")
        expect(person.page.get_by_test_id("rate")).to_have_count(0)
    screenshot(coach.page, "session-journey-coach-rated")

    assert coach.errors == []
    assert student.errors == []


def test_join_opens_the_room_in_a_new_tab_and_the_session_page_stays(clock, scheduled,
                                                                     people):
    """Joining opens the room beside the page: Complete and Missed stay one tab away."""
    coach, student = people
    clock.freeze(THURSDAY)
    student.open_session(scheduled.id)
    student.page.get_by_test_id("start").click()
    expect(status(student.page)).to_have_text("in progress")
    coach.open_session(scheduled.id)
    expect(coach.page.get_by_test_id("attendance")).to_contain_text("Coach: not joined")
    coach.mark_page()
    session_url = coach.page.url
    form = coach.page.get_by_test_id("join").locator("xpath=ancestor::form")
    expect(form).to_have_attribute("target", "_blank")
    expect(form).to_have_attribute("rel", "noopener")
    # The popup's first navigation is not answered by context.route (Playwright does not
    # route it), so the test watches the room being requested from the new tab instead.
    requested: list[str] = []
    coach.context.on("request", lambda r: requested.append(r.url))
    with coach.context.expect_page() as opened:
        coach.page.get_by_test_id("join").click()
    room = opened.value
    assert room is not coach.page
    room.wait_for_load_state()
    rooms = [url for url in requested if url.startswith(MEETING_BASE_URL)]
    assert len(rooms) == 1 and re.match(
        rf"^{re.escape(MEETING_BASE_URL)}/skileez-[\w-]+$", rooms[0]), requested
    # The session page is still there, still live, and shows the join on its next poll.
    assert coach.page.url == session_url
    coach.assert_not_reloaded()
    expect(coach.page.get_by_test_id("complete")).to_be_visible()
    expect(coach.page.get_by_test_id("attendance")).to_contain_text(
        "Coach: joined", timeout=POLL)
    coach.assert_not_reloaded()
    room.close()
    assert coach.errors == []
    assert student.errors == []


# --- 2. a reschedule request approved from the coach's page --------------------------------

def test_reschedule_request_is_approved_from_the_coach_page(clock, scheduled, people):
    coach, student = people
    session_id = scheduled.id
    url = f"{coach.base}/sessions/{session_id}"
    new_start = "2026-03-13T09:00:00+00:00"  # Fri 13 Mar: 10:00 CET, 05:00 EDT

    coach.open_session(session_id)
    expect(coach.page.get_by_test_id("reschedule-pending")).to_have_count(0)
    coach.mark_page()

    student.open_session(session_id)
    student.page.click("a.btn:has-text('Ask to reschedule')")
    expect(student.page).to_have_url(f"{url}/reschedule")
    choice = student.page.locator(f"input[name=new_start][value='{new_start}']")
    label = student.page.locator(f"label[for='{choice.get_attribute('id')}']")
    expect(label).to_have_text("05:00")  # grouped under its day, in the student's zone
    expect(student.page.locator(".reschedule-times")).to_contain_text("Fri 13 Mar 2026")
    label.click()
    expect(choice).to_be_checked()
    student.page.fill("#reason", "Dentist appointment")
    screenshot(student.page, "session-journey-reschedule-request")
    student.page.click("button:has-text('Send request')")
    expect(student.page).to_have_url(url)
    expect(student.page.get_by_text("Your request was sent.")).to_be_visible()
    expect(status(student.page)).to_have_text("reschedule requested")
    pending = student.page.get_by_test_id("reschedule-pending")
    expect(pending).to_contain_text("Waiting for Clara Schmidt.")
    expect(pending.locator("button:has-text('Withdraw my request')")).to_be_visible()
    student.mark_page()

    # Clara's open page shows the request, in her time, from its own poll.
    box = coach.page.get_by_test_id("reschedule-pending")
    expect(box).to_be_visible(timeout=POLL)
    coach.assert_not_reloaded()
    expect(status(coach.page)).to_have_text("reschedule requested")
    expect(box).to_contain_text(
        "Sam Rivera asked to move this session to Fri 13 Mar 2026, 10:00 CET: "
        "“Dentist appointment”")
    screenshot(coach.page, "session-journey-coach-reschedule-pending")
    coach.page.fill("#answer-note", "Fine, see you Friday.")
    box.locator("button:has-text('Approve the new time')").click()
    expect(coach.page).to_have_url(url)
    expect(coach.page.get_by_text("The session has been moved.")).to_be_visible()
    expect(status(coach.page)).to_have_text("scheduled")
    expect(coach.page.get_by_test_id("reschedule-pending")).to_have_count(0)
    when = coach.page.locator("#session-live dd").first
    expect(when).to_contain_text("Fri 13 Mar 2026, 10:00 CET – 11:00")
    expect(when).to_contain_text("Fri 13 Mar 2026, 05:00 EDT for Sam")

    # Sam's open page moves with it, without a reload.
    expect(student.page.locator("#session-live")).to_have_attribute(
        "data-status", "scheduled", timeout=POLL)
    student.assert_not_reloaded()
    expect(student.page.get_by_test_id("reschedule-pending")).to_have_count(0)
    when = student.page.locator("#session-live dd").first
    expect(when).to_contain_text("Fri 13 Mar 2026, 05:00 EDT – 06:00")
    expect(when).to_contain_text("Fri 13 Mar 2026, 10:00 CET for Clara")
    screenshot(student.page, "session-journey-rescheduled")

    assert coach.errors == []
    assert student.errors == []


# --- 3. a late cancellation --------------------------------------------------------------

def test_late_cancellation_shows_no_refund_before_confirming(clock, scheduled, people):
    coach, student = people
    session_id = scheduled.id
    url = f"{coach.base}/sessions/{session_id}"
    # 23 hours before the start: inside the 24-hour late-cancellation window.
    clock.freeze(THURSDAY - timedelta(hours=23))

    coach.open_session(session_id)
    coach.mark_page()

    student.open_session(session_id)
    student.page.click("a.btn:has-text('Cancel the session…')")
    expect(student.page).to_have_url(f"{url}/cancel")
    terms = student.page.get_by_test_id("cancel-terms")
    expect(terms).to_contain_text("This is a late cancellation (less than 24 hours before the "
                                  "start): the payment is not refunded.")
    expect(terms).to_contain_text("Refund to the student: €0.00 of €49.90 paid.")
    expect(terms).to_have_class(re.compile(r"\balert-warning\b"))
    screenshot(student.page, "session-journey-late-cancel-terms")
    student.page.fill("#reason", "I am ill.")
    student.page.click("button:has-text('Yes, cancel the session')")

    expect(student.page).to_have_url(url)
    expect(student.page.get_by_text(
        "Cancelled. No refund: as the cancellation terms say, the payment goes to "
        "Clara Schmidt.")).to_be_visible()
    live = student.page.locator("#session-live")
    expect(live).to_have_attribute("data-status", "cancelled")
    expect(status(student.page)).to_have_text("cancelled")
    expect(student.page.get_by_test_id("session-status")).to_contain_text("late")
    expect(live).to_contain_text("by Sam Rivera")
    expect(live).to_contain_text("(late) — “I am ill.”")
    expect(live).to_contain_text("This session is cancelled; nothing more can be done with it.")
    expect(student.page.get_by_test_id("payment-status")).to_have_attribute(
        "data-status", "held")
    screenshot(student.page, "session-journey-late-cancelled")

    expect(coach.page.locator("#session-live")).to_have_attribute(
        "data-status", "cancelled", timeout=POLL)
    coach.assert_not_reloaded()
    expect(coach.page.get_by_test_id("session-status")).to_contain_text("late")
    expect(coach.page.locator("#session-live")).to_contain_text("(late) — “I am ill.”")

    assert coach.errors == []
    assert student.errors == []
