"""The session life cycle through its pages: start, join, reschedule, cancel, complete,
miss, rate; and the workers that act on its deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from skileez.coaches.models import CoachProfile
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import Notification
from skileez.payments.models import Payment
from skileez.sessions.models import Rating, Reminder, RescheduleRequest, Session
from tests.conftest import Client

# Frozen clock starts Tue 10 Mar 2026 09:00 UTC. Thu 12 Mar 09:00 UTC = 10:00 in Berlin.
THURSDAY = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


@pytest.fixture
def session(app, coaching, clock, paid_session):
    return paid_session(coaching["student"], coaching["contract"], THURSDAY)


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


def reload(app, session_id):
    with app.app_context():
        obj = db.session.get(Session, session_id)
        db.session.refresh(obj)
        if obj.payment is not None:  # loaded now, for use after the context ends
            db.session.expunge(obj.payment)
        db.session.expunge(obj)
        return obj


def test_session_page_states_each_rule_with_real_times(student, session):
    page = student.get(f"/sessions/{session.id}").get_data(as_text=True)
    # Sam is in New York: 09:00 UTC on Thu 12 Mar is 05:00 EDT.
    assert "You can start from Thu 12 Mar 2026, 04:55 EDT" in page
    assert "Free cancellation until Wed 11 Mar 2026, 05:00 EDT — in 24 hours" in page
    assert "You can ask to reschedule until Wed 11 Mar 2026, 05:00 EDT" in page
    assert 'hx-trigger="every 10s"' in page


def test_start_join_complete_notes_and_rate(app, student, coach, session, clock):
    url = f"/sessions/{session.id}"
    clock.advance(THURSDAY - timedelta(minutes=5) - clock.now())
    response = student.post(f"{url}/start", token_page=url)
    assert response.status_code == 303
    assert reload(app, session.id).status == "in_progress"
    live = coach.get(f"{url}/live", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'data-status="in_progress"' in live and "Join the meeting" in live
    joined = coach.post(f"{url}/join", token_page=url)
    assert joined.status_code == 303
    assert joined.headers["Location"].startswith("https://meet.jit.si/skileez-")
    with app.app_context():
        assert db.session.scalar(select(Notification.kind).where(
            Notification.recipient_id == session.coach_id,
            Notification.kind == "session_started")) == "session_started"
    clock.advance(timedelta(minutes=50))
    done = coach.post(f"{url}/complete", {"notes": "Past tense drills."},
                      token_page=f"{url}/complete")
    assert done.status_code == 303
    stored = reload(app, session.id)
    assert stored.status == "completed" and stored.coach_notes == "Past tense drills."
    assert stored.coach_joined_at and stored.student_joined_at
    with app.app_context():
        payment = db.session.get(Payment, stored.payment.id)
        assert payment.release_at == clock.now() + timedelta(hours=24)
    assert student.post(f"{url}/notes", {"notes": "Loved it."}, token_page=url) \
        .status_code == 303
    assert reload(app, session.id).student_notes == "Loved it."
    rated = student.post(f"{url}/rate", {"stars": "5", "feedback": "Great", "public": "y",
                                         "would_recommend": "y", "tags": "Patient, clear,patient"},
                         token_page=f"{url}/rate")
    assert rated.status_code == 303
    again = student.post(f"{url}/rate", {"stars": "4"}, token_page=url)
    assert again.status_code == 409
    with app.app_context():
        rating = db.session.scalar(select(Rating))
        assert rating.tags == ["patient", "clear"] and rating.stars == 5
        profile = db.session.scalar(select(CoachProfile).where(
            CoachProfile.user_id == session.coach_id))
        assert (profile.rating_average, profile.rating_count) == (5.0, 1)


def test_start_window_boundaries(app, student, session, clock):
    url = f"/sessions/{session.id}"
    clock.advance(THURSDAY - timedelta(minutes=5, seconds=1) - clock.now())
    early = student.post(f"{url}/start", token_page=url)
    assert early.status_code == 409 and "You can start from" in early.get_data(as_text=True)
    assert reload(app, session.id).status == "scheduled"
    clock.advance(timedelta(seconds=1))
    assert student.post(f"{url}/start", token_page=url).status_code == 303


def test_late_cancellation_shows_the_zero_refund_first(app, student, session, clock):
    clock.advance(THURSDAY - timedelta(hours=23) - clock.now())
    url = f"/sessions/{session.id}/cancel"
    page = student.get(url).get_data(as_text=True)
    assert "late cancellation" in page and "the payment is not refunded" in page
    assert "Refund to the student: €0.00" in page
    assert student.post(url, {"reason": "Sick"}, token_page=url).status_code == 303
    stored = reload(app, session.id)
    assert stored.status == "cancelled" and stored.late
    with app.app_context():
        payment = db.session.get(Payment, stored.payment.id)
        assert payment.status == "held" and payment.refunded_minor == 0
        assert payment.release_at == THURSDAY + timedelta(hours=24)


def test_coach_cancellation_refunds_everything(app, coach, session):
    url = f"/sessions/{session.id}/cancel"
    assert "The student gets a full refund." in coach.get(url).get_data(as_text=True)
    assert coach.post(url, {"reason": ""}, token_page=url).status_code == 303
    with app.app_context():
        payment = db.session.get(Payment, reload(app, session.id).payment.id)
        assert payment.status == "refunded" and payment.refunded_minor == 4990


def test_reschedule_request_and_approval_move_the_session(app, student, coach, session):
    url = f"/sessions/{session.id}/reschedule"
    page = student.get(url).get_data(as_text=True)
    new_start = "2026-03-13T09:00:00+00:00"
    assert f'value="{new_start}"' in page
    short = student.post(url, {"new_start": new_start, "reason": "short"}, token_page=url)
    assert short.status_code == 422 and "10 to 500 characters" in short.get_data(as_text=True)
    sent = student.post(url, {"new_start": new_start, "reason": "Dentist appointment"},
                        token_page=url)
    assert sent.status_code == 303
    assert reload(app, session.id).status == "reschedule_requested"
    with app.app_context():
        request = db.session.scalar(select(RescheduleRequest))
        # 24 h after the request (Wed 09:00), before the cap of 1 h before the start.
        assert request.deadline == datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    response = coach.post(f"/sessions/reschedule/{request.id}/approve", {"note": "Fine"},
                          token_page=f"/sessions/{session.id}")
    assert response.status_code == 303
    moved = reload(app, session.id)
    assert moved.status == "scheduled"
    assert moved.starts_at == datetime(2026, 3, 13, 9, 0, tzinfo=UTC)
    twice = coach.post(f"/sessions/reschedule/{request.id}/approve", {"note": ""},
                       token_page=f"/sessions/{session.id}")
    assert twice.status_code == 409


def test_unanswered_reschedule_is_decided_at_its_deadline(app, student, session, clock):
    url = f"/sessions/{session.id}/reschedule"
    student.post(url, {"new_start": "2026-03-13T09:00:00+00:00",
                       "reason": "Dentist appointment"}, token_page=url)
    clock.advance(timedelta(hours=24) - timedelta(seconds=1))
    with app.app_context():
        assert sweep()["decide_reschedule_requests"] == 0
    clock.advance(timedelta(seconds=1))
    with app.app_context():
        assert sweep()["decide_reschedule_requests"] == 1
        request = db.session.scalar(select(RescheduleRequest))
        assert request.status == "auto_approved"
    assert reload(app, session.id).starts_at == datetime(2026, 3, 13, 9, 0, tzinfo=UTC)


def test_missed_and_unattended(app, coach, session, clock, paid_session, coaching):
    url = f"/sessions/{session.id}/missed"
    clock.advance(THURSDAY + timedelta(minutes=15) - timedelta(seconds=1) - clock.now())
    early = coach.post(url, {"missed_by": "student", "reason": "No show"}, token_page=url)
    assert early.status_code == 409
    clock.advance(timedelta(seconds=1))
    assert coach.post(url, {"missed_by": "student", "reason": "No show"},
                      token_page=url).status_code == 303
    stored = reload(app, session.id)
    assert stored.status == "missed" and stored.missed_by == "student"
    with app.app_context():
        assert db.session.get(Payment, stored.payment.id).status == "refunded"
    # A session nobody starts is marked unattended 30 minutes after its end.
    later = paid_session(coaching["student"], coaching["contract"],
                         THURSDAY + timedelta(days=1))
    clock.advance(later.ends_at + timedelta(minutes=30) - timedelta(seconds=1) - clock.now())
    with app.app_context():
        assert sweep()["auto_missed"] == 0
    clock.advance(timedelta(seconds=1))
    with app.app_context():
        assert sweep()["auto_missed"] == 1
    assert reload(app, later.id).missed_by == "unattended"


def test_in_progress_session_completes_itself_after_the_end(app, student, session, clock):
    url = f"/sessions/{session.id}"
    clock.advance(THURSDAY - clock.now())
    student.post(f"{url}/start", token_page=url)
    clock.advance(timedelta(hours=1, minutes=30))
    with app.app_context():
        assert sweep()["auto_complete"] == 1
    stored = reload(app, session.id)
    assert stored.status == "completed" and stored.completed_by_id is None


def test_reminders_are_sent_once_each(app, session, clock):
    clock.advance(THURSDAY - timedelta(hours=24) - clock.now())
    for _ in range(3):
        with app.app_context():
            sweep()
    clock.advance(timedelta(hours=23))
    for _ in range(3):
        with app.app_context():
            sweep()
    with app.app_context():
        kinds = db.session.scalars(select(Reminder.kind).order_by(Reminder.id)).all()
        assert kinds == ["24h", "1h"]
        assert db.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "session_reminder")) == 4  # two reminders × two people


def test_strangers_get_404_on_every_session_page(app, session, make_user):
    make_user(email="eve@example.com")
    eve = Client(app)
    eve.login("eve@example.com")
    for suffix in ("", "/live", "/reschedule", "/cancel", "/complete", "/missed", "/rate"):
        assert eve.get(f"/sessions/{session.id}{suffix}").status_code == 404, suffix
    for suffix in ("/start", "/join", "/confirm-attendance", "/notes"):
        assert eve.post(f"/sessions/{session.id}{suffix}", token_page="/dashboard") \
            .status_code == 404, suffix


def test_public_feedback_appears_on_the_coach_profile(app, student, coach, session, clock):
    url = f"/sessions/{session.id}"
    clock.advance(THURSDAY - clock.now())
    student.post(f"{url}/start", token_page=url)
    student.post(f"{url}/complete", {"notes": ""}, token_page=f"{url}/complete")
    student.post(f"{url}/rate", {"stars": "4", "feedback": "Very patient teacher.",
                                 "public": "y", "would_recommend": "y"}, token_page=url)
    coach.post(f"{url}/rate", {"stars": "5", "feedback": "Private remark about Sam."},
               token_page=url)
    profile = Client(app).get(f"/coaches/{session.coach_id}").get_data(as_text=True)
    assert "Very patient teacher." in profile and "Private remark" not in profile
    assert "4.0 from 1 rating" in profile
    directory = Client(app).get("/coaches/").get_data(as_text=True)
    assert "★ 4.0 (1 rating)" in directory


def test_the_other_person_may_approve_a_different_open_time(app, student, coach, session):
    url = f"/sessions/{session.id}/reschedule"
    student.post(url, {"new_start": "2026-03-13T09:00:00+00:00",
                       "reason": "Dentist appointment"}, token_page=url)
    page = coach.get(f"/sessions/{session.id}").get_data(as_text=True)
    other = "2026-03-13T10:00:00+00:00"
    assert f'<option value="{other}">Another open time' in page
    with app.app_context():
        request_id = db.session.scalar(select(RescheduleRequest.id))
    response = coach.post(f"/sessions/reschedule/{request_id}/approve",
                          {"new_start": other, "note": "An hour later suits me better"},
                          token_page=f"/sessions/{session.id}")
    assert response.status_code == 303
    assert reload(app, session.id).starts_at == datetime(2026, 3, 13, 10, 0, tzinfo=UTC)
