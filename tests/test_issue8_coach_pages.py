"""Issue 8, coach side: the profile form round trip, offering price bounds, the dashboard's
sessions, the directory price filter, open times on the profile, time off over bookings."""

from __future__ import annotations

from sqlalchemy import select

from skileez.coaches.models import CoachProfile, CoachSubject
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
