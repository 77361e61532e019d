"""Issue #8, the session pages as a student and a coach meet them.

Items 3 (a fully booked contract), 11 (Join opens a new tab), 12 (timeline, cancel
flash, Add to calendar, reschedule errors, earnings dates) and 16 (hostile week and
start values on the booking pages).
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from skileez.extensions import db
from skileez.payments.models import Payment
from skileez.sessions.models import Session
from tests.conftest import Client

# The clock fixture freezes at Tue 10 Mar 2026 09:00 UTC.
WED = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)   # 10:00 CET, 05:00 EDT
THU = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
FULLY_BOOKED = "Every place is booked: all 2 sessions of this contract are taken."


@pytest.fixture
def student(app, coaching):
    client = Client(app)
    client.login("sam@example.com")
    return client


@pytest.fixture
def coach(app, coaching):
    client = Client(app)
    client.login("clara@example.com")
    return client


@pytest.fixture
def two_places(coaching, make_contract):
    return make_contract(coaching["student"], coaching["offering"], sessions=2)


def text(response) -> str:
    """The page as a person reads it (entities such as &#39; decoded)."""
    return html.unescape(response.get_data(as_text=True))


# --- item 3: a fully booked contract -------------------------------------------------

def test_fully_booked_contract_says_so_and_offers_no_times(app, clock, student, two_places,
                                                          coaching, paid_session,
                                                          book_session):
    paid_session(coaching["student"], two_places, WED)
    book_session(coaching["student"], two_places, THU)  # unpaid: still holds its place
    url = f"/sessions/book/{two_places.id}"
    for headers in ({}, {"HX-Request": "true"}):
        page = text(student.get(url, headers=headers))
        assert FULLY_BOOKED in page
        assert "slot-button" not in page and "/confirm?start=" not in page
    contract_page = text(student.get(f"/contracts/{two_places.id}"))
    assert FULLY_BOOKED in contract_page and "Book a session</a>" not in contract_page
    # The confirmation page reached by an old link says it too, with no button to press.
    start = (WED + timedelta(days=1, hours=2)).isoformat()
    confirm = text(student.get(f"{url}/confirm", query_string={"start": start}))
    assert FULLY_BOOKED in confirm and "Book and go to payment" not in confirm
    # The POST refuses, and says why once.
    refused = student.post(f"{url}/confirm", {"starts_at": start}, token_page=url)
    assert refused.status_code == 409
    assert text(refused).count(FULLY_BOOKED) == 1
    with app.app_context():
        assert db.session.query(Session).filter_by(contract_id=two_places.id).count() == 2


def test_a_hold_that_ran_out_frees_its_place_before_any_sweep(app, clock, student,
                                                              two_places, coaching,
                                                              paid_session, book_session):
    paid_session(coaching["student"], two_places, WED)
    book_session(coaching["student"], two_places, THU)
    clock.advance(timedelta(minutes=16))  # the unpaid hold ran out; no sweep has run
    page = text(student.get(f"/sessions/book/{two_places.id}"))
    assert FULLY_BOOKED not in page and "1 of 2 sessions booked" in page
    assert "slot-button" in page


def test_fully_booked_message_names_what_frees_a_place_from_policy(app, clock,
                                                                 coaching, make_contract,
                                                                 book_session):
    contract = make_contract(coaching["student"], coaching["offering"], sessions=1)
    book_session(coaching["student"], contract, WED)
    client = Client(app)
    client.login("sam@example.com")
    page = text(client.get(f"/contracts/{contract.id}"))
    assert "all 1 sessions of this contract are taken" in page
    assert "cancelled" in page and "missed" in page
    assert "when a booking is left unpaid for 15 minutes (its payment hold runs out)" in page


def test_session_numbers_never_exceed_the_total(app, clock, student, two_places, coaching,
                                                book_session, paid_session):
    expired = book_session(coaching["student"], two_places, WED)
    clock.advance(timedelta(minutes=16))  # its hold runs out; booking frees its place
    later = paid_session(coaching["student"], two_places, THU + timedelta(hours=2))
    earlier = paid_session(coaching["student"], two_places, THU)

    def title(session_id):
        page = text(student.get(f"/sessions/{session_id}"))
        return re.search(r'data-testid="session-title">([^<:]+):', page).group(1)

    assert title(earlier.id) == "Session 1 of 2"
    assert title(later.id) == "Session 2 of 2"
    assert title(expired.id) == "Expired booking"
    contract_page = text(student.get(f"/contracts/{two_places.id}"))
    assert "Session 3 of 2" not in contract_page and "Session 2 of 2" in contract_page


# --- item 16: hostile week and start values --------------------------------------------

HOSTILE_WEEKS = ["9999-12-31", "0001-01-01", "9999-12-31T23:00", "2026-13-45", "garbage",
                 "", " ", "\x00", "２０２６-03-11", "-1", "99999-01-01"]


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize("week", HOSTILE_WEEKS)
def test_hostile_week_values_answer_a_week_not_a_500(clock, student, coaching, week, htmx):
    url = f"/sessions/book/{coaching['contract'].id}"
    response = student.get(url, query_string={"week": week},
                           headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code == 200
    assert "Week of" in text(response)


def test_duplicate_week_parameters_take_the_first(clock, student, coaching):
    url = f"/sessions/book/{coaching['contract'].id}?week=9999-12-31&week=0001-01-01"
    assert student.get(url).status_code == 200


def test_a_far_week_is_brought_back_inside_the_horizon(clock, student, coaching):
    page = text(student.get(f"/sessions/book/{coaching['contract'].id}",
                            query_string={"week": "9999-12-31"}))
    assert "End of the booking horizon" in page


HOSTILE_STARTS = [
    ("9999-12-31T23:00:00-05:00", "outside the booking horizon"),
    ("0001-01-01T00:30:00+05:00", "outside the booking horizon"),
    ("0001-01-01T00:00:00+00:00", "outside the booking horizon"),
    ("9999-12-31T23:59:59+00:00", "outside the booking horizon"),
    ("2026-03-11T10:00:00+25:00", "could not be read"),
    ("2026-03-11T10:00:00", "has no time zone"),
    ("garbage", "could not be read"),
    ("", "could not be read"),
    ("2026-03-11T10:00:00+01:00 and more", "could not be read"),
    ("2026-03-11T10:00:00+01:00&start=2026-03-11T10:00:00+01:00", "could not be read"),
]


@pytest.mark.parametrize(("start", "message"), HOSTILE_STARTS)
def test_hostile_start_values_answer_400_with_a_reason(clock, student, coaching, start,
                                                       message):
    url = f"/sessions/book/{coaching['contract'].id}/confirm"
    shown = student.get(url, query_string={"start": start})
    assert shown.status_code == 400 and message in text(shown)
    posted = student.post(url, {"starts_at": start},
                          token_page=f"/sessions/book/{coaching['contract'].id}")
    assert posted.status_code == 400 and message in text(posted)


# --- item 11: Join opens the room in a new tab -----------------------------------------

def test_join_form_opens_a_new_tab_and_still_records_attendance(app, clock, student, coach,
                                                                coaching, paid_session):
    session = paid_session(coaching["student"], coaching["contract"], THU)
    url = f"/sessions/{session.id}"
    clock.freeze(THU)
    assert student.post(f"{url}/start", token_page=url).status_code == 303
    page = text(coach.get(url))
    form = re.search(r'<form[^>]*action="/sessions/\d+/join"[^>]*>', page).group(0)
    assert 'target="_blank"' in form and 'rel="noopener"' in form
    joined = coach.post(f"{url}/join", token_page=url)
    assert joined.status_code == 303 and "/skileez-" in joined.headers["Location"]
    with app.app_context():
        assert db.session.get(Session, session.id).coach_joined_at == THU


# --- item 12 ------------------------------------------------------------------------------

def test_a_declined_card_is_on_the_session_timeline(app, clock, student, coaching,
                                                    book_session):
    session = book_session(coaching["student"], coaching["contract"], WED)
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    pay = f"/payments/{payment_id}/pay"
    response = student.post(f"/payments/{payment_id}/test-card", {"card": "decline"},
                            token_page=pay)
    assert response.status_code == 303
    timeline = text(student.get(f"/sessions/{session.id}")).split('data-testid="timeline"')[1]
    assert "Payment failed" in timeline


@pytest.mark.parametrize(("who", "expected"), [
    ("student", "Cancelled. €49.90 will be refunded to your card."),
    ("coach", "Cancelled. €49.90 will be refunded to Sam Rivera's card."),
])
def test_the_cancel_flash_says_what_was_refunded(app, clock, coaching, paid_session, student,
                                                 coach, who, expected):
    client = student if who == "student" else coach
    session = paid_session(coaching["student"], coaching["contract"], THU)
    url = f"/sessions/{session.id}/cancel"
    response = client.post(url, {"reason": ""}, token_page=url, follow_redirects=True)
    assert response.status_code == 200
    assert expected in text(response)


def test_a_late_student_cancel_says_no_refund(app, clock, coaching, paid_session, student):
    session = paid_session(coaching["student"], coaching["contract"], THU)
    clock.freeze(THU - timedelta(hours=2))
    url = f"/sessions/{session.id}/cancel"
    page = text(student.post(url, {"reason": ""}, token_page=url, follow_redirects=True))
    assert ("Cancelled. No refund: as the cancellation terms say, the payment goes to "
            "Clara Schmidt.") in page


def _calendar_offered(client, session_id) -> bool:
    return 'data-testid="add-to-calendar"' in text(client.get(f"/sessions/{session_id}"))


def test_add_to_calendar_only_while_the_meeting_is_ahead(app, clock, coaching, student,
                                                         paid_session, book_session):
    from skileez.auth.models import User
    from skileez.sessions import operations

    unpaid = book_session(coaching["student"], coaching["contract"], WED)
    assert not _calendar_offered(student, unpaid.id)
    scheduled = paid_session(coaching["student"], coaching["contract"], THU)
    assert _calendar_offered(student, scheduled.id)
    cancelled = paid_session(coaching["student"], coaching["contract"], THU + timedelta(
        hours=3))
    with app.app_context():
        operations.cancel(db.session.get(Session, cancelled.id),
                          db.session.get(User, coaching["student"].id))
        db.session.commit()
    assert not _calendar_offered(student, cancelled.id)
    clock.freeze(THU + timedelta(minutes=1))
    assert student.post(f"/sessions/{scheduled.id}/start",
                        token_page=f"/sessions/{scheduled.id}").status_code == 303
    assert _calendar_offered(student, scheduled.id)  # in progress
    with app.app_context():
        operations.complete(db.session.get(Session, scheduled.id),
                            actor=db.session.get(User, coaching["student"].id))
        db.session.commit()
    assert not _calendar_offered(student, scheduled.id)


def test_reschedule_form_shows_every_error_at_once(app, clock, coaching, paid_session,
                                                   student):
    session = paid_session(coaching["student"], coaching["contract"], THU)
    url = f"/sessions/{session.id}/reschedule"
    # A reason of spaces only and a time that is not open: both said in one answer.
    response = student.post(url, {"reason": "          ",
                                  "new_start": "2026-03-12T03:00:00+00:00"}, token_page=url)
    assert response.status_code == 422
    page = text(response)
    assert "Give a reason of 10 to 500 characters." in page
    assert "That time is not free for both of you." in page
    response = student.post(url, {"reason": "short", "new_start": "not a time"},
                            token_page=url)
    page = text(response)
    assert response.status_code == 422
    assert "Give a reason of 10 to 500 characters." in page
    assert "Choose one of the open times." in page


def test_escrow_rows_on_the_earnings_page_carry_the_session_date(app, clock, coaching,
                                                                 paid_session, coach):
    paid_session(coaching["student"], coaching["contract"], THU)
    page = text(coach.get("/payments/"))
    # 09:00 UTC is 10:00 in Berlin, the coach's zone.
    assert re.search(r'data-testid="escrow-session-date">session (<[^>]+>)?Thu 12 Mar, '
                     r'10:00 CET', page), page
    with app.app_context():
        assert db.session.query(Payment).count() == 1
