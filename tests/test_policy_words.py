"""Issue #9 item 3: every sentence that states a rule says the policy in force.

An operator may change any number of SPEC's policy table. These tests build an app
with several of them changed and read the pages and emails as people do: each must
state the new number, and none may still promise a default.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from skileez.core.words import (
    deadline_words,
    duration_words,
    list_words,
    percent_words,
    refund_words,
)
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import Notification, OutboxEmail
from skileez.sessions.models import Session
from tests.conftest import Client

POLICY = {
    "payment_hold": 40,
    "proposal_expiry": 3 * 24 * 60,
    "late_cancellation_window": 36 * 60,
    "reschedule_notice_student": 6 * 60,
    "reschedule_notice_student_late_floor": 3 * 60,
    "reschedule_response_window": 12 * 60,
    "reschedule_response_cap_before_start": 2 * 60,
    "reschedule_new_time_min_lead": 90,
    "start_window_after": 7,
    "mark_missed_after_start": 7,
    "escrow_release_delay": 3 * 24 * 60,
    "refund_student_cancels_late": "0.5",
    "refund_missed_by_coach": "0.8",
    "refund_missed_by_student": "0.25",
    "refund_missed_unattended": "0",
    "platform_fee": "0.15",
    "reminders": "2880,30",
    "reschedule_reason_min_chars": 20,
    "reschedule_reason_max_chars": 300,
    "completion_notes_max_chars": 400,
    "proposal_message_max_chars": 250,
}
# What the defaults would have made a page say; none of it may survive the override.
DEFAULT_WORDS = ["24 hours", "15 minutes", "15-minute", "10%", "1 hour before", "7 days",
                 "a day and an hour", "everything back", "10 to 500", "under 1000"]

# The clock fixture freezes at Tue 10 Mar 2026 09:00 UTC (05:00 EDT in New York).
FAR = datetime(2026, 3, 13, 9, 0, tzinfo=UTC)    # 72 h ahead: outside the 36 h window
NEAR = datetime(2026, 3, 11, 13, 0, tzinfo=UTC)  # 28 h ahead: inside it


def text(response) -> str:
    """The page as a person reads it: tags dropped, entities decoded."""
    assert response.status_code == 200, response.status_code
    return html.unescape(re.sub(r"<[^>]+>", "", response.get_data(as_text=True)))


def assert_no_default_words(page: str) -> None:
    for words in DEFAULT_WORDS:
        assert words not in page, f"{words!r} still on the page"


@pytest.fixture
def policy_app(app, make_app):
    """Built after the default app, so the object fixtures (which use the latest app) make
    their rows, and compute their deadlines, with the overridden policy."""
    return make_app(POLICY=POLICY)


@pytest.fixture
def world(policy_app, clock, make_user, make_offering, add_hours, make_contract):
    """The coaching fixture's people, made in the app whose policy is overridden."""
    coach = make_user("coach", name="Clara Schmidt", email="clara@example.com",
                      timezone="Europe/Berlin", welcome=True)
    student = make_user(name="Sam Rivera", email="sam@example.com",
                        timezone="America/New_York", welcome=True)
    offering = make_offering(coach, duration=60, price=4990, currency="EUR")
    add_hours(coach, [0, 1, 2, 3, 4], "09:00", "17:00")
    contract = make_contract(student, offering, sessions=5)
    return {"coach": coach, "student": student, "offering": offering, "contract": contract}


def signed_in(app, email) -> Client:
    client = Client(app)
    client.login(email)
    return client


def outbox(app, kind: str, email: str) -> str:
    with app.app_context():
        row = db.session.scalars(select(OutboxEmail).where(
            OutboxEmail.kind == kind, OutboxEmail.to_address == email)
            .order_by(OutboxEmail.id.desc())).first()
        assert row is not None, f"no {kind} email to {email}"
        return html.unescape("\n".join((row.subject, row.text_body, row.html_body)))


# --- the helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize(("span", "words", "adjective"), [
    (timedelta(minutes=15), "15 minutes", "15-minute"),
    (timedelta(minutes=1), "1 minute", "1-minute"),
    (timedelta(hours=1), "1 hour", "1-hour"),
    (timedelta(minutes=90), "90 minutes", "90-minute"),
    (timedelta(hours=24), "24 hours", "24-hour"),
    (timedelta(hours=36), "36 hours", "36-hour"),
    (timedelta(days=2), "2 days", "2-day"),
    (timedelta(days=7), "7 days", "7-day"),
    (timedelta(0), "0 minutes", "0-minute"),
])
def test_duration_words(span, words, adjective):
    assert duration_words(span) == words
    assert duration_words(span, adjective=True) == adjective


@pytest.mark.parametrize(("share", "percent", "refund"), [
    (Decimal("1"), "100%", "a full refund"),
    (Decimal("1.00"), "100%", "a full refund"),
    (Decimal("0"), "0%", "no refund"),
    (Decimal("0.5"), "50%", "a 50% refund"),
    (Decimal("0.8"), "80%", "an 80% refund"),
    (Decimal("0.125"), "12.5%", "a 12.5% refund"),
    (Decimal("0.10"), "10%", "a 10% refund"),
])
def test_percent_and_refund_words(share, percent, refund):
    assert percent_words(share) == percent
    assert refund_words(share) == refund


def test_deadline_and_list_words(clock):
    start = datetime(2026, 3, 11, 11, 0, tzinfo=UTC)
    assert deadline_words(start, "America/New_York") == "Wed 11 Mar 2026, 07:00 EDT — in 26 hours"
    assert list_words(["24 hours", "1 hour"]) == "24 hours and 1 hour"
    assert list_words(["2 days", "1 hour", "5 minutes"]) == "2 days, 1 hour and 5 minutes"
    assert list_words(["1 hour"]) == "1 hour"


# --- the pages -----------------------------------------------------------------------------

def test_home_page_states_the_policy(policy_app, clock):
    page = text(Client(policy_app).get("/"))
    assert "The coach is paid 3 days later." in page
    assert ("Free cancellation up to 36 hours before a session, and a full refund when a "
            "coach cancels and an 80% refund when a coach does not show up.") in page
    assert "reminders arrive 2 days and 30 minutes before." in page
    assert_no_default_words(page)


def test_home_page_with_the_defaults_says_what_it_always_said(app):
    page = text(Client(app).get("/"))
    assert ("Free cancellation up to 24 hours before a session, and a full refund when a "
            "coach cancels or does not show up.") in page
    assert "The coach is paid 24 hours later." in page
    assert "reminders arrive 24 hours and 1 hour before." in page


def test_welcome_emails_state_the_policy(policy_app, world):
    coach_email = outbox(policy_app, "welcome", "clara@example.com")
    assert "released to you 3 days after each completed session" in coach_email
    student_email = outbox(policy_app, "welcome", "sam@example.com")
    assert "with free cancellation up to 36 hours before a session" in student_email
    for email in (coach_email, student_email):
        assert_no_default_words(email)


def test_coach_pages_state_the_policy(policy_app, world, make_user):
    coach = signed_in(policy_app, "clara@example.com")
    form = text(coach.get("/coaches/me/offerings/new"))
    assert "minus the platform fee (15%) 3 days after each completed session" in form
    assert_no_default_words(form)
    make_user("coach", email="new.coach@example.com")
    earnings = text(signed_in(policy_app, "new.coach@example.com").get("/payments/"))
    assert "held until 3 days after each completed session" in earnings
    assert_no_default_words(earnings)
    statistics = text(coach.get("/sessions/statistics"))
    assert "Sessions you cancelled less than 36 hours before the start" in statistics
    assert_no_default_words(statistics)


def test_proposal_page_states_the_expiry(policy_app, world):
    student = signed_in(policy_app, "sam@example.com")
    page = text(student.get(f"/contracts/propose/{world['offering'].id}"))
    assert "has 3 days to accept or decline" in page
    assert_no_default_words(page)


def test_booking_confirmation_states_the_policy(policy_app, world):
    student = signed_in(policy_app, "sam@example.com")
    url = f"/sessions/book/{world['contract'].id}/confirm"
    far = text(student.get(url, query_string={"start": FAR.isoformat()}))
    assert "We hold this time for you for 40 minutes while you pay." in far
    assert "released to the coach 3 days after the session is completed" in far
    # Free until 36 hours before the start: Wed 11 Mar 21:00 UTC, 17:00 in New York.
    assert "Free cancellation until Wed 11 Mar 2026, 17:00 EDT — in 36 hours." in far
    assert "Cancelling after that refunds 50%." in far
    assert ("You get a full refund when the coach cancels and an 80% refund when the coach "
            "does not show up.") in far
    assert "platform fee (15%)" in far
    assert_no_default_words(far)
    near = text(student.get(url, query_string={"start": NEAR.isoformat()}))
    assert "This session starts within 36 hours: cancelling it refunds 50%." in near
    assert_no_default_words(near)


def test_pay_page_and_expired_hold_state_the_hold(policy_app, world, book_session, clock):
    session = book_session(world["student"], world["contract"], FAR)
    student = signed_in(policy_app, "sam@example.com")
    with policy_app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    page = text(student.get(f"/payments/{payment_id}/pay"))
    # Held for 40 minutes from 09:00 UTC: until 05:40 in New York.
    assert "until Tue 10 Mar, 05:40 EDT (in 40 minutes)" in page
    assert_no_default_words(page)
    clock.advance(timedelta(minutes=41))
    with policy_app.app_context():
        sweep()
    refused = student.get(f"/payments/{payment_id}/pay")
    assert refused.status_code == 409
    assert "The 40-minute hold on this time ran out" in html.unescape(refused.get_data(
        as_text=True))


def test_cancel_pages_state_the_policy(policy_app, world, paid_session):
    far = paid_session(world["student"], world["contract"], FAR)
    near = paid_session(world["student"], world["contract"], NEAR)
    student = signed_in(policy_app, "sam@example.com")
    early = text(student.get(f"/sessions/{far.id}/cancel"))
    assert ("Free cancellation until Wed 11 Mar 2026, 17:00 EDT — in 36 hours: you get 100% "
            "back.") in early
    late = text(student.get(f"/sessions/{near.id}/cancel"))
    assert ("This is a late cancellation (less than 36 hours before the start): you get 50% "
            "back.") in late
    coach = text(signed_in(policy_app, "clara@example.com").get(f"/sessions/{near.id}/cancel"))
    assert "The student gets a full refund." in coach
    for page in (early, late, coach):
        assert_no_default_words(page)


def test_reschedule_page_states_the_policy(policy_app, world, paid_session):
    session = paid_session(world["student"], world["contract"], FAR)
    student = signed_in(policy_app, "sam@example.com")
    page = text(student.get(f"/sessions/{session.id}/reschedule"))
    # 6 hours' notice: until Fri 03:00 UTC (Thu 23:00 EDT); late until 3 hours before.
    assert "You can ask to reschedule until Thu 12 Mar 2026, 23:00 EDT" in page
    assert "closes at Fri 13 Mar 2026, 02:00 EDT" in page
    assert ("The other person has until 12 hours after your request (and at the latest "
            "2 hours before the current start) to answer") in page
    assert_no_default_words(page)


def test_session_day_pages_state_the_policy(policy_app, world, paid_session, clock):
    session = paid_session(world["student"], world["contract"], NEAR)
    student = signed_in(policy_app, "sam@example.com")
    clock.freeze(NEAR + timedelta(minutes=3))
    detail = text(student.get(f"/sessions/{session.id}"))
    # The start window stays open 7 minutes after the 09:00 EDT start.
    assert "Start window open until Wed 11 Mar 2026, 09:07 EDT." in detail
    complete_page = student.get(f"/sessions/{session.id}/complete")
    assert 'maxlength="400"' in complete_page.get_data(as_text=True)
    complete = text(complete_page)
    assert "The payment is released to the coach 3 days after completion" in complete
    assert_no_default_words(complete)
    clock.freeze(NEAR + timedelta(minutes=8))
    assert "The start window closed at Wed 11 Mar 2026, 09:07 EDT." in text(
        student.get(f"/sessions/{session.id}"))


def test_no_show_pages_state_the_policy(policy_app, world, paid_session, clock):
    """Found by a walk: the refunds for a no-show were typed as "refunded", whatever
    the policy's share."""
    session = paid_session(world["student"], world["contract"], NEAR)
    coach = signed_in(policy_app, "clara@example.com")
    clock.freeze(NEAR + timedelta(minutes=3))
    detail = text(coach.get(f"/sessions/{session.id}"))
    assert "and the student gets no refund." in detail
    assert "the student is refunded" not in detail
    clock.freeze(NEAR + timedelta(minutes=10))
    missed = text(coach.get(f"/sessions/{session.id}/missed"))
    assert ("When the student missed it, the student gets a 25% refund; when the coach "
            "missed it, an 80% refund. Whatever is not refunded is paid to the coach.") in missed
    assert "is not paid to the coach" not in missed


def test_emails_and_notifications_state_the_policy(policy_app, world, paid_session):
    session = paid_session(world["student"], world["contract"], FAR)
    email = outbox(policy_app, "payment_received", "sam@example.com")
    assert "then released to Clara Schmidt 3 days after it is completed" in email
    assert_no_default_words(email)
    with policy_app.app_context():
        kinds = set(db.session.scalars(select(Notification.kind).where(
            Notification.payload["session_id"].as_integer() == session.id)))
    assert "payment_received" in kinds


def test_form_limits_follow_the_policy(policy_app, world, paid_session):
    session = paid_session(world["student"], world["contract"], FAR)
    student = signed_in(policy_app, "sam@example.com")
    url = f"/sessions/{session.id}/reschedule"
    form = student.get(url).get_data(as_text=True)
    assert 'maxlength="300"' in form and 'minlength="20"' in form
    for reason in ("", "Too short, sorry"):
        refused = student.post(url, {"reason": reason, "new_start": ""}, token_page=url)
        assert refused.status_code == 422
        assert "Give a reason of 20 to 300 characters." in html.unescape(
            refused.get_data(as_text=True))
    propose = f"/contracts/propose/{world['offering'].id}"
    assert 'maxlength="250"' in student.get(propose).get_data(as_text=True)
    refused = student.post(propose, {"sessions_count": "2", "message": "x" * 251},
                           token_page=propose)
    assert refused.status_code == 422
    assert "Keep the message under 250 characters." in html.unescape(
        refused.get_data(as_text=True))


def test_reminders_follow_the_policy(policy_app, world, paid_session, clock):
    paid_session(world["student"], world["contract"], FAR)
    for before, words in ((timedelta(days=2), "in 2 days"),
                          (timedelta(minutes=30), "in 30 minutes")):
        clock.freeze(FAR - before)
        with policy_app.app_context():
            sweep()
        email = outbox(policy_app, "session_reminder", "sam@example.com")
        assert words in email
        assert "in 24 hours" not in email and "in 1 hour" not in email
