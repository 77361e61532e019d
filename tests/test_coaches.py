"""Coach pages: profile, offerings, availability, the public directory and profiles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.coaches.models import AvailabilityRule, CoachProfile, Offering, TimeOff
from skileez.extensions import db

COACH_PAGES = ["/coaches/me/profile", "/coaches/me/offerings", "/coaches/me/offerings/new",
               "/coaches/me/availability", "/coaches/me/availability/preview"]


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def coach(make_user):
    return make_user("coach", email="clara@example.com", name="Clara Schmidt",
                     timezone="Europe/Berlin")


@pytest.fixture
def coach_client(client, coach):
    client.login("clara@example.com")
    return client


def test_coaches_get_a_profile_when_they_register(app, coach):
    with app.app_context():
        assert db.session.scalar(select(CoachProfile).where(
            CoachProfile.user_id == coach.id)).buffer_minutes == 15


@pytest.mark.parametrize("role", ["student", "admin"])
def test_coach_pages_are_403_for_other_roles(client, make_user, role):
    make_user(role, email="x@example.com")
    client.login("x@example.com")
    for page in COACH_PAGES:
        assert client.get(page).status_code == 403, page
    assert client.post("/coaches/me/availability/rules", {"weekday": "0", "start": "09:00",
                                                          "end": "10:00"},
                       token_page="/dashboard").status_code == 403


def test_every_coach_page_is_403_for_a_student_whatever_the_method(app, client, make_user):
    """Taken from the URL map, so a coach page registered without its check is caught."""
    make_user("student", email="x@example.com")
    client.login("x@example.com")
    values = {"offering_id": 1, "rule_id": 1, "time_off_id": 1, "action": "activate"}
    adapter = app.url_map.bind("skileez.test")
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/coaches/me/")]
    assert len(rules) >= 11
    for rule in rules:
        url = adapter.build(rule.endpoint, {name: values[name] for name in rule.arguments})
        for method in sorted(rule.methods & {"GET", "POST"}):
            response = client.get(url) if method == "GET" \
                else client.post(url, {}, token_page="/dashboard")
            assert response.status_code == 403, (method, url)


def test_coach_pages_open_for_coaches(coach_client):
    for page in COACH_PAGES:
        assert coach_client.get(page).status_code == 200, page


def test_profile_saves_normalised_subjects(app, coach_client, coach):
    response = coach_client.post("/coaches/me/profile", {
        "headline": "  Spanish for professionals ", "bio": "Ten years of teaching.",
        "subjects": "Spanish, Grammar ,spanish,  Exam   Prep", "buffer_minutes": "10",
        "min_notice_hours": "24", "horizon_days": "90"}, token_page="/coaches/me/profile")
    assert response.status_code == 303
    with app.app_context():
        profile = db.session.scalar(select(CoachProfile).where(
            CoachProfile.user_id == coach.id))
        assert profile.headline == "Spanish for professionals"
        assert profile.subject_names == ["exam prep", "grammar", "spanish"]
        assert (profile.buffer_minutes, profile.min_notice_hours, profile.horizon_days) == (
            10, 24, 90)


PROFILE = {"headline": "Spanish", "bio": "", "subjects": "spanish", "buffer_minutes": "15",
           "min_notice_hours": "12", "horizon_days": "60"}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("headline", "", "Write a one-line headline"),
    ("headline", "x" * 121, "under 120 characters"),
    ("subjects", ", ".join(f"s{n}" for n in range(11)), "at most 10 subjects"),
    ("subjects", "x" * 41, "under 40 characters"),
    ("buffer_minutes", "61", "from 0 to 60 minutes"),
    ("buffer_minutes", "-1", "from 0 to 60 minutes"),
    ("buffer_minutes", "ten", "Not a valid integer value"),
    ("min_notice_hours", "169", "from 0 to 168 hours"),
    ("horizon_days", "0", "from 1 to 365 days"),
    ("horizon_days", "366", "from 1 to 365 days"),
])
def test_bad_profile_input_is_explained_and_not_saved(app, coach_client, coach, field, value,
                                                      message):
    response = coach_client.post("/coaches/me/profile", {**PROFILE, field: value},
                                 token_page="/coaches/me/profile")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with app.app_context():
        profile = db.session.scalar(select(CoachProfile).where(
            CoachProfile.user_id == coach.id))
        assert profile.headline == "" and profile.subject_names == []


OFFERING = {"title": "Conversation practice", "description": "Talk!", "duration_minutes": "45",
            "currency": "EUR", "price": "49.90"}


@pytest.mark.parametrize(("currency", "price", "minor"), [
    ("EUR", "49.90", 4990), ("EUR", "49,90", 4990), ("USD", "1,200", 120000),
    ("JPY", "5000", 5000), ("CHF", "80", 8000), ("GBP", "1.50", 150),
])
def test_create_offering_stores_exact_minor_units(app, coach_client, coach, currency, price,
                                                  minor):
    response = coach_client.post("/coaches/me/offerings/new",
                                 {**OFFERING, "currency": currency, "price": price},
                                 token_page="/coaches/me/offerings/new")
    assert response.status_code == 303
    with app.app_context():
        offering = db.session.scalar(select(Offering))
        assert (offering.price_minor, offering.currency, offering.duration_minutes,
                offering.status) == (minor, currency, 45, "active")
    listing = coach_client.get("/coaches/me/offerings").get_data(as_text=True)
    assert "Conversation practice" in listing


@pytest.mark.parametrize(("field", "value", "message"), [
    ("title", "", "Give the offering a title."),
    ("title", "x" * 121, "under 120 characters"),
    ("duration_minutes", "10", "from 15 to 240 minutes"),
    ("duration_minutes", "245", "from 15 to 240 minutes"),
    ("duration_minutes", "47", "Use 5-minute steps"),
    ("duration_minutes", "", "Enter a duration"),
    ("price", "", "Enter a price"),
    ("price", "49.999", "at most 2 decimal places"),
    ("price", "-5", "Enter an amount such as 49.90."),
    ("price", "lots", "Enter an amount such as 49.90."),
    ("currency", "XXX", "Not a valid choice"),
    ("description", "x" * 2001, "under 2000 characters"),
])
def test_bad_offering_input_is_explained_and_not_saved(app, coach_client, field, value,
                                                       message):
    response = coach_client.post("/coaches/me/offerings/new", {**OFFERING, field: value},
                                 token_page="/coaches/me/offerings/new")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, Offering) == 0


def test_yen_has_no_minor_unit(app, coach_client):
    response = coach_client.post("/coaches/me/offerings/new",
                                 {**OFFERING, "currency": "JPY", "price": "5000.5"},
                                 token_page="/coaches/me/offerings/new")
    assert response.status_code == 422
    assert "JPY has no minor unit" in response.get_data(as_text=True)


def test_edit_and_deactivate_offering(app, coach_client, coach, make_offering):
    offering = make_offering(coach, price=4000)
    page = coach_client.get(f"/coaches/me/offerings/{offering.id}/edit").get_data(as_text=True)
    assert 'value="40.00"' in page
    response = coach_client.post(f"/coaches/me/offerings/{offering.id}/edit",
                                 {**OFFERING, "price": "45"},
                                 token_page=f"/coaches/me/offerings/{offering.id}/edit")
    assert response.status_code == 303
    response = coach_client.post(f"/coaches/me/offerings/{offering.id}/deactivate",
                                 token_page="/coaches/me/offerings")
    assert response.status_code == 303
    with app.app_context():
        stored = db.session.get(Offering, offering.id)
        assert (stored.price_minor, stored.status) == (4500, "inactive")
    again = coach_client.post(f"/coaches/me/offerings/{offering.id}/deactivate",
                              token_page="/coaches/me/offerings")
    assert again.status_code == 409
    assert "already inactive" in again.get_data(as_text=True)


def test_another_coachs_offering_is_404(app, coach_client, make_user, make_offering):
    other = make_user("coach", email="other@example.com")
    offering = make_offering(other)
    assert coach_client.get(f"/coaches/me/offerings/{offering.id}/edit").status_code == 404
    assert coach_client.post(f"/coaches/me/offerings/{offering.id}/deactivate",
                             token_page="/coaches/me/offerings").status_code == 404
    with app.app_context():
        assert db.session.get(Offering, offering.id).status == "active"


def test_weekly_hours_added_and_removed_with_htmx(app, coach_client, coach):
    response = coach_client.post("/coaches/me/availability/rules",
                                 {"weekday": "1", "start": "09:00", "end": "12:30"},
                                 htmx=True, token_page="/coaches/me/availability")
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith('<div class="card border-0 shadow-sm" id="weekly-rules"')
    assert "09:00–12:30" in fragment
    assert response.headers["HX-Trigger"] == "availability-changed"
    # Midnight as an end means the end of the day.
    coach_client.post("/coaches/me/availability/rules",
                      {"weekday": "1", "start": "20:00", "end": "00:00"},
                      htmx=True, token_page="/coaches/me/availability")
    with app.app_context():
        rules = db.session.scalars(select(AvailabilityRule).order_by(
            AvailabilityRule.start_minute)).all()
        assert [(r.weekday, r.start_minute, r.end_minute) for r in rules] == [
            (1, 540, 750), (1, 1200, 1440)]
        first_id = rules[0].id
    response = coach_client.post(f"/coaches/me/availability/rules/{first_id}/delete",
                                 htmx=True, token_page="/coaches/me/availability")
    assert response.status_code == 200
    assert "09:00–12:30" not in response.get_data(as_text=True)
    assert count(app, AvailabilityRule) == 1


@pytest.mark.parametrize(("start", "end", "message"), [
    ("12:00", "09:00", "The end must be after the start."),
    ("10:00", "10:00", "The end must be after the start."),
    ("11:00", "13:00", "This overlaps Tuesday 09:00–12:00"),
    ("08:00", "09:30", "This overlaps Tuesday 09:00–12:00"),
    ("25:00", "26:00", "Enter a time such as 09:00."),
    ("nine", "10:00", "Enter a time such as 09:00."),
    ("09:00", "", "Enter an end."),
])
def test_bad_weekly_hours_are_explained_and_not_saved(app, coach_client, coach, add_hours,
                                                      start, end, message):
    add_hours(coach, [1], "09:00", "12:00")
    for htmx in (True, False):
        response = coach_client.post("/coaches/me/availability/rules",
                                     {"weekday": "1", "start": start, "end": end},
                                     htmx=htmx, token_page="/coaches/me/availability")
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    assert count(app, AvailabilityRule) == 1


def test_another_coachs_rule_is_404(app, coach_client, make_user, add_hours):
    other = make_user("coach", email="other@example.com")
    add_hours(other, [0])
    with app.app_context():
        rule_id = db.session.scalar(select(AvailabilityRule.id))
    assert coach_client.post(f"/coaches/me/availability/rules/{rule_id}/delete",
                             token_page="/coaches/me/availability").status_code == 404
    assert count(app, AvailabilityRule) == 1


def test_time_off_is_entered_in_the_coachs_zone(app, coach_client, coach, clock):
    response = coach_client.post("/coaches/me/availability/time-off", {
        "starts_at": "2026-03-20T09:00", "ends_at": "2026-03-21T18:00", "note": "Holiday"},
        token_page="/coaches/me/availability")
    assert response.status_code == 303
    with app.app_context():
        item = db.session.scalar(select(TimeOff))
        # Berlin is UTC+1 in March (before the 29th).
        assert item.starts_at == datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
        assert item.ends_at == datetime(2026, 3, 21, 17, 0, tzinfo=UTC)
    page = coach_client.get("/coaches/me/availability").get_data(as_text=True)
    assert "Fri 20 Mar 2026, 09:00 CET" in page and "Holiday" in page


@pytest.mark.parametrize(("starts", "ends", "message"), [
    ("2026-03-21T09:00", "2026-03-20T09:00", "The end must be after the start."),
    ("2026-03-01T09:00", "2026-03-02T09:00", "This period is already over"),
    ("not a date", "2026-03-20T09:00", "Not a valid datetime value"),
    ("0001-01-01T00:00", "2026-03-20T09:00", "between the years 2000 and 2100"),
    ("2026-03-20T09:00", "9999-12-31T23:59", "between the years 2000 and 2100"),
    ("", "2026-03-20T09:00", "Enter when the time off starts."),
])
def test_bad_time_off_is_explained_and_not_saved(app, coach_client, clock, starts, ends,
                                                 message):
    response = coach_client.post("/coaches/me/availability/time-off",
                                 {"starts_at": starts, "ends_at": ends, "note": ""},
                                 token_page="/coaches/me/availability")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, TimeOff) == 0


def test_preview_lists_open_slots_in_the_coachs_zone(coach_client, coach, add_hours,
                                                     make_offering, clock):
    # Frozen at Tue 10 Mar 2026 09:00 UTC; notice 12 h, so Wednesday is the first day.
    add_hours(coach, [2], "09:00", "11:00")
    make_offering(coach, duration=60)
    page = coach_client.get("/coaches/me/availability/preview").get_data(as_text=True)
    assert "Wed 11 Mar 2026" in page
    assert page.count('class="slot-pill"') == 2 * 3  # 09:00, 09:30, 10:00 on two Wednesdays
    assert ">09:00<" in page and ">10:00<" in page and ">10:30<" not in page


# --- the directory -----------------------------------------------------------

@pytest.fixture
def directory(make_user, make_offering, add_hours, app):
    clara = make_user("coach", name="Clara Schmidt", email="clara@example.com",
                      timezone="Europe/Berlin")
    marcus = make_user("coach", name="Marcus Reed", email="marcus@example.com",
                       timezone="America/New_York")
    aiko = make_user("coach", name="Aiko Tanaka", email="aiko@example.com",
                     timezone="Asia/Tokyo")
    idle = make_user("coach", name="Idle Coach", email="idle@example.com")
    gone = make_user("coach", name="Gone Coach", email="gone@example.com")
    make_offering(clara, title="Spanish", price=3900, currency="EUR")
    make_offering(clara, title="German exam", price=5500, currency="EUR")
    make_offering(marcus, title="Python", price=8000, currency="USD")
    make_offering(aiko, title="Japanese", price=5000, currency="JPY")
    make_offering(gone, title="Anything", price=1000, currency="EUR")
    add_hours(clara, [0, 1, 2, 3, 4], "09:00", "12:00")
    with app.app_context():
        from skileez.coaches.operations import update_profile

        update_profile(db.session.get(User, clara.id), headline="Languages",
                       bio="", subjects="spanish, german", buffer_minutes=15,
                       min_notice_hours=12, horizon_days=60)
        db.session.get(User, gone.id).status = "deactivated"
        db.session.commit()
    return {"clara": clara, "marcus": marcus, "aiko": aiko, "idle": idle}


def names(client, **params):
    body = client.get("/coaches/", query_string=params).get_data(as_text=True)
    found = [n for n in ("Clara Schmidt", "Marcus Reed", "Aiko Tanaka", "Idle Coach",
                         "Gone Coach") if n in body]
    return sorted(found, key=body.index)


def test_directory_lists_active_coaches_with_active_offerings(client, directory):
    assert names(client) == ["Aiko Tanaka", "Clara Schmidt", "Marcus Reed"]


def test_directory_search_by_name_and_subject(client, directory):
    assert names(client, q="marcus") == ["Marcus Reed"]
    assert names(client, q="GERMAN") == ["Clara Schmidt"]
    assert names(client, q="nothing like this") == []


def test_directory_filters_by_currency_and_price(client, directory):
    assert names(client, currency="EUR") == ["Clara Schmidt"]
    assert names(client, currency="EUR", min_price="40") == ["Clara Schmidt"]
    assert names(client, currency="EUR", max_price="30") == []
    assert names(client, currency="JPY", max_price="5000") == ["Aiko Tanaka"]
    body = client.get("/coaches/", query_string={"min_price": "10"}).get_data(as_text=True)
    assert "choose a currency beside the price to filter by it" in body
    body = client.get("/coaches/", query_string={"currency": "JPY", "min_price": "1.5"}) \
        .get_data(as_text=True)
    assert "JPY has no minor unit" in body


def test_directory_sorts_by_price_across_currency_decimals(client, directory):
    # Nominal amounts, not minor units: ¥5,000 is 5000 (not 50.00), above $80.00 and €39.00.
    assert names(client, sort="price_asc") == ["Clara Schmidt", "Marcus Reed", "Aiko Tanaka"]
    assert names(client, sort="price_desc") == ["Aiko Tanaka", "Marcus Reed", "Clara Schmidt"]


def test_directory_sorts_by_rating(app, client, directory):
    with app.app_context():
        for key, average, ratings in (("marcus", 4.9, 12), ("aiko", 4.2, 3)):
            profile = db.session.scalar(select(CoachProfile).where(
                CoachProfile.user_id == directory[key].id))
            profile.rating_average, profile.rating_count = average, ratings
        db.session.commit()
    assert names(client, sort="rating") == ["Marcus Reed", "Aiko Tanaka", "Clara Schmidt"]
    body = client.get("/coaches/").get_data(as_text=True)
    assert "★ 4.9 (12 ratings)" in body and "No ratings yet" in body


def test_directory_cards_show_from_price_and_next_slot_in_viewer_zone(client, directory,
                                                                      make_user, clock):
    make_user(email="sam@example.com", timezone="America/New_York")
    client.login("sam@example.com")
    body = client.get("/coaches/", query_string={"q": "clara"}).get_data(as_text=True)
    assert "from €39.00" in body
    # Clara (Berlin) is free Wed 11 Mar 09:00 CET = 04:00 EDT in New York (DST began 8 Mar).
    assert "Next free:" in body and ">Wed 11 Mar, 04:00 EDT</time>" in body
    assert "No open times soon" in client.get("/coaches/", query_string={"q": "marcus"}) \
        .get_data(as_text=True)


def test_directory_htmx_returns_the_results_fragment(client, directory):
    response = client.get("/coaches/", query_string={"q": "aiko"},
                          headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="directory-results">') and "<html" not in body


def test_directory_paginates(client, make_user, make_offering):
    for n in range(14):
        coach = make_user("coach", name=f"Coach {n:02d}", email=f"c{n}@example.com")
        make_offering(coach)
    first = client.get("/coaches/").get_data(as_text=True)
    assert "Page 1 of 2" in first and "Coach 11" in first and "Coach 12" not in first
    assert "Coach 13" in client.get("/coaches/?page=2").get_data(as_text=True)


def test_public_profile(client, directory, app):
    body = client.get(f"/coaches/{directory['clara'].id}").get_data(as_text=True)
    assert "Clara Schmidt" in body and "Languages" in body and "€39.00" in body
    assert "Sign in to propose" in body
    assert client.get(f"/coaches/{directory['idle'].id}").status_code == 200
    with app.app_context():
        student_id = db.session.scalar(select(User.id).where(User.role == "coach")) + 1000
    assert client.get(f"/coaches/{student_id}").status_code == 404
    gone = client.get("/coaches/", query_string={"q": "gone"})
    assert "Gone Coach" not in gone.get_data(as_text=True)
