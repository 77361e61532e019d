"""Issue 8, coach side: the profile form round trip, offering price bounds, the dashboard's
sessions, the directory price filter, open times on the profile, time off over bookings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from skileez.coaches.models import CoachProfile, CoachSubject, Offering
from skileez.extensions import db
from tests.formparse import form_values

PROFILE_PAGE = "/coaches/me/profile"


def _stored_profile(app, coach_id):
    with app.app_context():
        profile = db.session.scalar(select(CoachProfile).where(CoachProfile.user_id == coach_id))
        return {"headline": profile.headline, "bio": profile.bio,
                "subjects": profile.subject_names, "buffer": profile.buffer_minutes,
                "notice": profile.min_notice_hours, "horizon": profile.horizon_days}


def _coach(make_user):
    return make_user("coach", email="clara@example.com", name="Clara Schmidt",
                     timezone="Europe/Berlin")


def test_new_coach_sees_an_empty_subjects_field(client, make_user):
    _coach(make_user)
    client.login("clara@example.com")
    fields = form_values(client.get(PROFILE_PAGE).get_data(as_text=True), with_field="subjects")
    assert fields["subjects"] == ""


def test_profile_form_survives_two_unchanged_saves(app, client, make_user, make_offering):
    coach = _coach(make_user)
    make_offering(coach)
    client.login("clara@example.com")
    first = client.post(PROFILE_PAGE, {
        "headline": "Spanish for professionals", "bio": "Line one.\nLine two.",
        "subjects": "Spanish, grammar", "buffer_minutes": "10", "min_notice_hours": "24",
        "horizon_days": "90"}, token_page=PROFILE_PAGE)
    assert first.status_code == 303
    before = _stored_profile(app, coach.id)
    assert before["subjects"] == ["grammar", "spanish"]

    for _ in range(2):
        page = client.get(PROFILE_PAGE).get_data(as_text=True)
        fields = form_values(page, with_field="subjects")
        assert fields["subjects"] == "grammar, spanish"
        assert "CoachSubject" not in page
        response = client.post(PROFILE_PAGE, fields)
        assert response.status_code == 303, response.get_data(as_text=True)
        assert _stored_profile(app, coach.id) == before

    public = client.get(f"/coaches/{coach.id}").get_data(as_text=True)
    assert ">grammar</span>" in public and ">spanish</span>" in public
    assert "CoachSubject" not in public and "[]" not in public
    directory = client.get("/coaches/").get_data(as_text=True)
    assert ">spanish</span>" in directory and "CoachSubject" not in directory


def test_saving_an_existing_subject_with_a_new_one_and_duplicates(app, client, make_user):
    coach = _coach(make_user)
    client.login("clara@example.com")
    base = {"headline": "Spanish", "bio": "", "buffer_minutes": "15",
            "min_notice_hours": "12", "horizon_days": "60"}
    assert client.post(PROFILE_PAGE, {**base, "subjects": "spanish, grammar"},
                       token_page=PROFILE_PAGE).status_code == 303
    response = client.post(PROFILE_PAGE, {**base, "subjects": " Spanish ,EXAM  prep, spanish,"
                                                            "exam prep"},
                           token_page=PROFILE_PAGE)
    assert response.status_code == 303
    assert _stored_profile(app, coach.id)["subjects"] == ["exam prep", "spanish"]
    with app.app_context():
        assert len(db.session.scalars(select(CoachSubject)).all()) == 2


def test_booking_rules_change_and_stay_after_a_second_save(app, client, make_user):
    coach = _coach(make_user)
    client.login("clara@example.com")
    fields = form_values(client.get(PROFILE_PAGE).get_data(as_text=True), with_field="subjects")
    fields.update(headline="Spanish", buffer_minutes="30", min_notice_hours="48",
                  horizon_days="120")
    assert client.post(PROFILE_PAGE, fields).status_code == 303
    again = form_values(client.get(PROFILE_PAGE).get_data(as_text=True), with_field="subjects")
    assert (again["buffer_minutes"], again["min_notice_hours"], again["horizon_days"]) == (
        "30", "48", "120")
    assert client.post(PROFILE_PAGE, again).status_code == 303
    stored = _stored_profile(app, coach.id)
    assert (stored["buffer"], stored["notice"], stored["horizon"]) == (30, 48, 120)


# --- item 7: offering price bounds -------------------------------------------------

OFFERING = {"title": "Conversation", "description": "", "duration_minutes": "60"}


@pytest.mark.parametrize(("currency", "price", "ok"), [
    ("EUR", "0", False), ("EUR", "0.99", False), ("EUR", "1", True), ("EUR", "1.00", True),
    ("EUR", "100000", True), ("EUR", "100000.01", False), ("EUR", "1,000,000,000", False),
    ("JPY", "0", False), ("JPY", "1", True), ("JPY", "100000", True),
    ("JPY", "100001", False),
])
def test_offering_price_must_be_within_the_policy_bounds(app, client, make_user, currency,
                                                         price, ok):
    _coach(make_user)
    client.login("clara@example.com")
    response = client.post("/coaches/me/offerings/new",
                           {**OFFERING, "currency": currency, "price": price},
                           token_page="/coaches/me/offerings/new")
    with app.app_context():
        stored = db.session.scalars(select(Offering)).all()
    if ok:
        assert response.status_code == 303
        assert len(stored) == 1
    else:
        assert response.status_code == 422
        body = response.get_data(as_text=True)
        symbol = "€" if currency == "EUR" else "¥"
        assert f"Choose a price from {symbol}1" in body and "100,000" in body
        assert stored == []


def test_price_bounds_can_be_set_per_currency(make_app, make_user, make_client):
    app = make_app(POLICY={"offering_price_per_currency": "JPY=100:15000000"})
    make_user("coach", email="clara@example.com")
    client = make_client(app)
    client.login("clara@example.com")
    low = client.post("/coaches/me/offerings/new", {**OFFERING, "currency": "JPY",
                                                    "price": "99"},
                      token_page="/coaches/me/offerings/new")
    assert low.status_code == 422 and "¥100 to ¥15,000,000" in low.get_data(as_text=True)
    assert client.post("/coaches/me/offerings/new", {**OFFERING, "currency": "JPY",
                                                     "price": "15000000"},
                       token_page="/coaches/me/offerings/new").status_code == 303


def test_editing_an_offering_to_a_huge_price_is_refused(app, client, make_user, make_offering):
    coach = _coach(make_user)
    offering = make_offering(coach, price=5000)
    client.login("clara@example.com")
    response = client.post(f"/coaches/me/offerings/{offering.id}/edit",
                           {**OFFERING, "currency": "EUR", "price": "1000000000"},
                           token_page=f"/coaches/me/offerings/{offering.id}/edit")
    assert response.status_code == 422
    with app.app_context():
        assert db.session.get(Offering, offering.id).price_minor == 5000


# --- item 2: the dashboard lists sessions ------------------------------------------

WED_14_BERLIN = datetime(2026, 3, 11, 13, 0, tzinfo=UTC)  # 09:00 EDT in New York


@pytest.fixture
def booked(clock, coaching, paid_session):
    session = paid_session(coaching["student"], coaching["contract"], WED_14_BERLIN)
    return {**coaching, "session": session}


def test_student_and_coach_see_the_session_in_their_own_zone(client, booked):
    client.login("sam@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    upcoming = page[page.index('data-testid="upcoming"'):]
    assert "with Clara Schmidt" in upcoming
    assert "Wed 11 Mar 2026, 09:00 EDT" in upcoming
    assert "in 28 hours" in upcoming and "Booked and paid" in upcoming
    assert "No sessions booked yet" not in page
    client.logout()

    client.login("clara@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    upcoming = page[page.index('data-testid="upcoming"'):]
    assert "with Sam Rivera" in upcoming and "Wed 11 Mar 2026, 14:00 CET" in upcoming


def test_unpaid_session_offers_pay_to_the_student(client, clock, coaching, book_session):
    session = book_session(coaching["student"], coaching["contract"], WED_14_BERLIN)
    client.login("sam@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Waiting for payment" in page
    assert re.search(r'href="/payments/\d+/pay" data-testid="dashboard-action">Pay<', page)
    assert session.id


def test_a_startable_session_shows_start_and_the_coach_sees_todays_agenda(client, clock, booked):
    clock.freeze(WED_14_BERLIN - timedelta(minutes=3))
    client.login("clara@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    start_url = f'/sessions/{booked["session"].id}/start'
    assert f'action="{start_url}"' in page
    assert '>Start</button>' in page and "in 3 minutes" in page
    agenda = page[page.index("Today's agenda"):page.index("Upcoming sessions")]
    assert "Wed 11 Mar 2026" in agenda and "with Sam Rivera" in agenda
    assert "14:00 CET" in agenda
    response = client.post(start_url, token_page="/dashboard")
    assert response.status_code == 303


def test_agenda_is_empty_on_another_day(client, clock, booked):
    clock.freeze(WED_14_BERLIN + timedelta(days=1))
    client.login("clara@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "No sessions today." in page


def _dashboard_statements(app, client) -> int:
    statements = []

    def count(*_args):
        statements.append(1)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get("/dashboard").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(statements)


@pytest.mark.parametrize("role_email", ["sam@example.com", "clara@example.com"])
def test_dashboard_statement_count_stays_flat(app, client, clock, make_user, make_offering,
                                              add_hours, make_contract, paid_session,
                                              role_email):
    coach = make_user("coach", name="Clara Schmidt", email="clara@example.com")
    student = make_user(name="Sam Rivera", email="sam@example.com",
                        timezone="America/New_York")
    offering = make_offering(coach)
    add_hours(coach, [0, 1, 2, 3, 4], "09:00", "17:00")
    contract = make_contract(student, offering, sessions=10)
    paid_session(student, contract, WED_14_BERLIN)
    client.login(role_email)
    one = _dashboard_statements(app, client)
    for day in (1, 2, 5, 6, 7, 8, 9, 12, 13):  # weekdays after Wednesday
        paid_session(student, contract, WED_14_BERLIN + timedelta(days=day))
    ten = _dashboard_statements(app, client)
    assert ten == one
    page = client.get("/dashboard").get_data(as_text=True)
    assert page.count('data-testid="session-row"') == 8  # the list is capped


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml" and b"<svg" in response.data


# --- item 12: open times on the profile, time off over booked sessions ----------------

def test_open_times_link_to_booking_for_a_student_with_a_contract(client, clock, coaching):
    client.login("sam@example.com")
    page = client.get(f"/coaches/{coaching['coach'].id}").get_data(as_text=True)
    links = re.findall(r'href="(/sessions/book/(\d+)/confirm\?start=[^"]+)" '
                       r'data-testid="open-time"', page)
    assert len(links) == 12
    assert {int(c) for _, c in links} == {coaching["contract"].id}
    confirm = client.get(links[0][0].replace("&amp;", "&"))
    assert confirm.status_code == 200


def test_open_times_are_plain_text_for_others_with_how_to_start(client, clock, coaching,
                                                                make_user):
    make_user(name="Other Student", email="other@example.com")
    client.login("other@example.com")
    page = client.get(f"/coaches/{coaching['coach'].id}").get_data(as_text=True)
    assert 'data-testid="open-time"' not in page
    assert "first propose a contract" in page
    client.logout()
    page = client.get(f"/coaches/{coaching['coach'].id}").get_data(as_text=True)
    assert 'data-testid="open-time"' not in page and "first propose a contract" in page


def _time_off(client, choice=None):
    data = {"starts_at": "2026-03-11T08:00", "ends_at": "2026-03-11T18:00", "note": "Dentist"}
    if choice:
        data["on_overlap"] = choice
    return client.post("/coaches/me/availability/time-off", data,
                       token_page="/coaches/me/availability")


def _state(app, session_id):
    from skileez.coaches.models import TimeOff
    from skileez.sessions.models import Session

    with app.app_context():
        session = db.session.get(Session, session_id)
        return session.status, session.payment.status, len(db.session.scalars(
            select(TimeOff)).all())


def test_time_off_over_a_booked_session_warns_and_saves_nothing(app, client, booked):
    client.login("clara@example.com")
    response = _time_off(client)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-testid="time-off-overlap"' in body
    assert "Wed 11 Mar 2026, 14:00 CET with Sam Rivera" in re.sub(r"<[^>]+>", "", body)
    assert "The student gets a full refund." in body
    assert _state(app, booked["session"].id) == ("scheduled", "held", 0)


def test_time_off_can_keep_or_cancel_the_sessions_it_covers(app, client, booked):
    client.login("clara@example.com")
    assert _time_off(client, "keep").status_code == 303
    assert _state(app, booked["session"].id) == ("scheduled", "held", 1)


def test_time_off_cancelling_the_sessions_refunds_the_student(app, client, booked):
    client.login("clara@example.com")
    response = _time_off(client, "cancel")
    assert response.status_code == 303
    status, payment, time_off = _state(app, booked["session"].id)
    assert (status, time_off) == ("cancelled", 1)
    assert payment == "refunded"
    assert "1 session cancelled" in client.get("/coaches/me/availability").get_data(
        as_text=True)


def test_time_off_releases_an_unpaid_booking_so_it_cannot_be_paid_afterwards(
        app, client, clock, coaching, book_session):
    """Found by a walk: "cancel these sessions" left the unpaid hold inside the time
    off, and the student could still pay for a time the coach had taken off."""
    from skileez.notifications.models import Notification
    from skileez.payments.operations import payment_can_be_paid
    from skileez.sessions.models import Session

    hold = book_session(coaching["student"], coaching["contract"],
                        datetime(2026, 3, 11, 13, 0, tzinfo=UTC))
    client.login("clara@example.com")
    warning = re.sub(r"<[^>]+>", "", _time_off(client).get_data(as_text=True))
    assert "Not paid yet: the booking is released and Sam Rivera is told." in warning
    assert _time_off(client, "cancel").status_code == 303
    assert _state(app, hold.id) == ("expired", "failed", 1)
    with app.app_context():
        session = db.session.get(Session, hold.id)
        assert not payment_can_be_paid(session.payment)
        notices = db.session.scalars(select(Notification.kind).where(
            Notification.recipient_id == coaching["student"].id)).all()
    assert "booking_released" in notices and "booking_expired" not in notices
