"""Disputes with both sides (issue 11): the coach answers, the admin reads the whole
session and decides knowing what each person gets, and both are told why.

The story behind every test: Sam (New York) books a session with Clara (Berlin), asks
to move it a day and Clara agrees; on the day both join, Clara completes it with notes,
Sam adds his, and then disputes the payment. An admin (in Tokyo) decides.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from skileez.auth.models import User
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.notifications.compose import render_email
from skileez.notifications.models import Notification
from skileez.payments import ledger
from skileez.payments.models import Dispute, Payment
from skileez.payments.operations import ensure_payment_intent, open_dispute, payment_succeeded
from skileez.sessions import operations as sessions
from skileez.sessions.models import RescheduleRequest, Session
from tests.conftest import Client

BOOKED = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)     # Thu 10:00 in Berlin
MOVED_TO = datetime(2026, 3, 13, 10, 0, tzinfo=UTC)  # Fri 11:00 in Berlin
TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
ANSWER = "Sam's connection dropped twice; I stayed in the room for the full hour."


def _the_session(session_id: int) -> Session:
    return db.session.get(Session, session_id)


@pytest.fixture
def disputed(app, coaching, book_session, clock, make_user):
    """A session with a full history, paid, completed and disputed by the student."""
    make_user("admin", name="Ada Admin", email="root@example.com", timezone="Asia/Tokyo")
    booked = book_session(coaching["student"], coaching["contract"], BOOKED)
    with app.app_context():
        with transaction():
            payment = _the_session(booked.id).payment
            ensure_payment_intent(payment)
            payment_succeeded(payment.payment_intent_id, charge_id="ch_test")
        with transaction():
            session = _the_session(booked.id)
            sessions.request_reschedule(session, db.session.get(User, session.student_id),
                                        new_start=MOVED_TO,
                                        reason="A work trip came up; could we do Friday?")
        with transaction():
            session = _the_session(booked.id)
            sessions.approve_reschedule(session.reschedule_requests[0],
                                        db.session.get(User, session.coach_id),
                                        note="Friday works for me.")
        clock.advance(MOVED_TO + timedelta(minutes=1) - clock.now())
        with transaction():
            session = _the_session(booked.id)
            sessions.start(session, db.session.get(User, session.coach_id))
        clock.advance(timedelta(minutes=6))
        with transaction():
            session = _the_session(booked.id)
            sessions.join(session, db.session.get(User, session.student_id))
        clock.advance(timedelta(minutes=55))
        with transaction():
            session = _the_session(booked.id)
            sessions.complete(session, actor=db.session.get(User, session.coach_id),
                              notes="Covered the past tense; homework: exercise 4.")
        with transaction():
            session = _the_session(booked.id)
            sessions.add_notes(session, db.session.get(User, session.student_id),
                               "Audio kept cutting out.")
        clock.advance(timedelta(hours=1))
        with transaction():
            session = _the_session(booked.id)
            dispute = open_dispute(session.payment, db.session.get(User, session.student_id),
                                   reason="The coach's audio cut out for half the session.")
        return {"session": booked.id, "payment": session.payment.id, "dispute": dispute.id}


def signed_in(app, email: str) -> Client:
    client = Client(app)
    client.login(email)
    return client


def answer_url(ids) -> str:
    return f"/payments/{ids['payment']}/dispute/answer"


def stored_answer(app, ids):
    with app.app_context():
        return db.session.get(Dispute, ids["dispute"]).coach_answer


def notifications(app, email: str, kind: str) -> list[dict]:
    with app.app_context():
        return list(db.session.scalars(
            select(Notification.payload).join(User, User.id == Notification.recipient_id)
            .where(User.email == email, Notification.kind == kind)
            .order_by(Notification.id)))


# --- the coach's answer ----------------------------------------------------------------

def test_the_coach_is_told_and_answers_and_the_student_sees_it(app, disputed):
    opened = notifications(app, "clara@example.com", "dispute_opened")
    assert len(opened) == 1 and opened[0]["can_answer"] is True
    coach = signed_in(app, "clara@example.com")
    session_page = coach.get(f"/sessions/{disputed['session']}").get_data(as_text=True)
    assert answer_url(disputed) in session_page and "Answer the dispute" in session_page
    form = coach.get(answer_url(disputed)).get_data(as_text=True)
    assert "The coach&#39;s audio cut out for half the session." in form
    response = coach.post(answer_url(disputed), {"answer": ANSWER},
                          token_page=answer_url(disputed))
    assert response.status_code == 303
    assert stored_answer(app, disputed) == ANSWER
    told = notifications(app, "sam@example.com", "dispute_answered")
    assert len(told) == 1 and told[0]["answer"] == ANSWER and told[0]["edited"] is False

    student = signed_in(app, "sam@example.com")
    page = student.get(f"/payments/{disputed['payment']}/dispute").get_data(as_text=True)
    assert "Sam&#39;s connection dropped twice" in page
    assert "The coach&#39;s audio cut out" in page


def test_the_coach_can_edit_until_the_decision_and_the_student_is_told_once_per_edit(
        app, disputed):
    coach = signed_in(app, "clara@example.com")
    url = answer_url(disputed)
    assert coach.post(url, {"answer": ANSWER}, token_page=url).status_code == 303
    # Sent again unchanged (a double click, a reload): nobody is told twice.
    assert coach.post(url, {"answer": ANSWER}, token_page=url).status_code == 303
    edited = ANSWER + " I offered a free make-up session."
    shown = coach.get(url).get_data(as_text=True)
    assert "Save my edited answer" in shown and "I stayed in the room" in shown
    assert coach.post(url, {"answer": edited}, token_page=url).status_code == 303
    assert stored_answer(app, disputed) == edited
    told = notifications(app, "sam@example.com", "dispute_answered")
    assert [item["edited"] for item in told] == [False, True]


def test_an_answer_over_2000_characters_is_refused_beside_the_field(app, disputed):
    coach = signed_in(app, "clara@example.com")
    url = answer_url(disputed)
    response = coach.post(url, {"answer": "x" * 2001}, token_page=url)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Keep your answer to 2000 characters or fewer." in page
    assert 'id="answer"' in page and "is-invalid" in page
    assert stored_answer(app, disputed) is None
    assert notifications(app, "sam@example.com", "dispute_answered") == []
    # Exactly 2000 is fine.
    assert coach.post(url, {"answer": "y" * 2000}, token_page=url).status_code == 303


def test_an_empty_answer_is_refused(app, disputed):
    coach = signed_in(app, "clara@example.com")
    url = answer_url(disputed)
    response = coach.post(url, {"answer": "   "}, token_page=url)
    assert response.status_code == 422
    assert "Write your side of what happened." in response.get_data(as_text=True)
    assert stored_answer(app, disputed) is None


def test_after_the_decision_the_answer_is_read_only(app, disputed):
    coach = signed_in(app, "clara@example.com")
    url = answer_url(disputed)
    coach.post(url, {"answer": ANSWER}, token_page=url)
    decide(app, disputed, "release", note="The recording shows the full hour.")
    page = coach.get(url)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "can no longer be changed" in text and "<textarea" not in text
    assert "The recording shows the full hour." in text
    late = coach.post(url, {"answer": "One more thing."}, token_page=f"/sessions/"
                      f"{disputed['session']}")
    assert late.status_code == 409
    assert stored_answer(app, disputed) == ANSWER


def test_another_coach_gets_404_and_the_student_403(app, disputed, make_user):
    make_user("coach", name="Otto Other", email="otto@example.com")
    other = signed_in(app, "otto@example.com")
    url = answer_url(disputed)
    assert other.get(url).status_code == 404
    assert other.post(url, {"answer": ANSWER}, token_page="/dashboard").status_code == 404
    student = signed_in(app, "sam@example.com")
    assert student.get(url).status_code == 403
    assert student.post(url, {"answer": ANSWER}, token_page="/dashboard").status_code == 403
    assert stored_answer(app, disputed) is None


def test_no_answer_page_without_a_dispute(app, coaching, paid_session, clock):
    session = paid_session(coaching["student"], coaching["contract"], BOOKED)
    with app.app_context():
        payment_id = db.session.scalar(select(Payment.id).where(
            Payment.session_id == session.id))
    coach = signed_in(app, "clara@example.com")
    assert coach.get(f"/payments/{payment_id}/dispute/answer").status_code == 404


# --- the admin's page and decision ------------------------------------------------------

def decide(app, ids, resolution: str, *, amount: str = "", note: str):
    admin = signed_in(app, "root@example.com")
    url = f"/admin/disputes/{ids['dispute']}"
    data = {"resolution": resolution, "refund_amount": amount, "note": note}
    review = admin.post(url, data, token_page=url)
    assert review.status_code == 200, review.get_data(as_text=True)[:3000]
    done = admin.post(url, {**data, "confirmed": "yes"}, token_page=url)
    assert done.status_code == 303, done.get_data(as_text=True)[:3000]
    return review.get_data(as_text=True)


def test_the_admin_page_shows_the_whole_session_and_both_sides(app, disputed):
    coach = signed_in(app, "clara@example.com")
    coach.post(answer_url(disputed), {"answer": ANSWER}, token_page=answer_url(disputed))
    admin = signed_in(app, "root@example.com")
    response = admin.get(f"/admin/disputes/{disputed['dispute']}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    # Both sides.
    assert "The coach&#39;s audio cut out for half the session." in page
    assert "Sam&#39;s connection dropped twice" in page
    # Both people with their zones; times in the admin's zone, named.
    assert "zone America/New_York" in page and "zone Europe/Berlin" in page
    assert "Times are in your zone, Asia/Tokyo." in page
    # Attendance: who joined when (Fri 13 Mar 10:01 UTC = 19:01 Tokyo; Sam at 19:07).
    assert "Fri 13 Mar 2026, 19:01" in page and "Fri 13 Mar 2026, 19:07" in page
    assert "by Clara Schmidt" in page  # started and completed by the coach
    # Both notes, the reschedule history, the timeline, the ledger.
    assert "Covered the past tense; homework: exercise 4." in page
    assert "Audio kept cutting out." in page
    assert "A work trip came up; could we do Friday?" in page and "Friday works for me." in page
    assert "approved by Clara Schmidt" in page
    assert "student joined the meeting" in page.lower()
    assert "payment held" in page and "escrow" in page and "€49.90" in page
    # Each decision says what each person gets before it is made (fee 10%: 4.99).
    assert "Student gets €0.00 back; coach gets €44.91." in page
    assert "Student gets €49.90 back; coach gets €0.00." in page
    # And the list links to it, saying the coach has answered.
    listed = admin.get("/admin/disputes").get_data(as_text=True)
    assert f"/admin/disputes/{disputed['dispute']}" in listed and "the coach has answered" in listed


def test_the_admin_page_is_for_admins_only(app, disputed):
    for email in ("clara@example.com", "sam@example.com"):
        assert signed_in(app, email).get(f"/admin/disputes/{disputed['dispute']}") \
            .status_code in (403, 404)
    admin = signed_in(app, "root@example.com")
    assert admin.get("/admin/disputes/999999").status_code == 404


@pytest.mark.parametrize("resolution, amount, student_gets, coach_gets, refunded, payout", [
    ("release", "", "€0.00", "€44.91", 0, 4491),
    ("refund", "", "€49.90", "€0.00", 4990, None),
    # 29.90 released: fee 2.99, coach 26.91.
    ("partial", "20.00", "€20.00", "€26.91", 2000, 2691),
])
def test_the_decision_is_confirmed_with_amounts_and_both_are_told_why(
        app, disputed, resolution, amount, student_gets, coach_gets, refunded, payout):
    reason = "The recording shows the audio failing for 25 minutes."
    review = decide(app, disputed, resolution, amount=amount, note=reason)
    assert f"Student gets {student_gets} back; coach gets {coach_gets}." in review
    assert "Confirm this decision" in review
    with app.app_context():
        payment = db.session.get(Payment, disputed["payment"])
        assert payment.refunded_minor == refunded
        assert (payment.payout.amount_minor if payment.payout else None) == payout
        assert db.session.get(Dispute, disputed["dispute"]).status == "resolved"
        assert ledger.check_invariants() == []
    for email in ("sam@example.com", "clara@example.com"):
        [told] = notifications(app, email, "dispute_resolved")
        assert told["note"] == reason
        assert (told["student_gets"], told["coach_gets"]) == (student_gets, coach_gets)
    # What both read (the email and the notification's detail) names amounts and reason.
    with app.app_context():
        sam = db.session.scalar(select(User).where(User.email == "sam@example.com"))
        [payload] = [p for p in notifications(app, "sam@example.com", "dispute_resolved")]
        _subject, text, _html = render_email("dispute_resolved", sam, payload)
    assert f"Sam Rivera gets {student_gets} back; Clara Schmidt gets {coach_gets}." in text
    assert reason in text


def test_reviewing_a_decision_changes_nothing(app, disputed):
    admin = signed_in(app, "root@example.com")
    url = f"/admin/disputes/{disputed['dispute']}"
    review = admin.post(url, {"resolution": "refund", "note": "Audio failed."},
                        token_page=url)
    assert review.status_code == 200
    with app.app_context():
        assert db.session.get(Dispute, disputed["dispute"]).status == "open"
        assert db.session.get(Payment, disputed["payment"]).status == "disputed"
    assert notifications(app, "sam@example.com", "dispute_resolved") == []


def test_a_decision_needs_a_reason_and_a_possible_amount(app, disputed):
    admin = signed_in(app, "root@example.com")
    url = f"/admin/disputes/{disputed['dispute']}"
    response = admin.post(url, {"resolution": "partial", "refund_amount": "60",
                                "note": "", "confirmed": "yes"}, token_page=url)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Give the reason for your decision; both people are told it." in page
    assert "less than the full amount. €49.90 is held." in page
    with app.app_context():
        assert db.session.get(Dispute, disputed["dispute"]).status == "open"


def test_deciding_twice_is_a_conflict(app, disputed):
    decide(app, disputed, "refund", note="Audio failed.")
    admin = signed_in(app, "root@example.com")
    url = f"/admin/disputes/{disputed['dispute']}"
    again = admin.post(url, {"resolution": "release", "note": "Changed my mind.",
                             "confirmed": "yes"}, token_page=url)
    assert again.status_code == 409
    # The page that comes back (no decision form any more) says why nothing happened.
    assert "This dispute is already resolved." in again.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Payment, disputed["payment"]).status == "refunded"
    resolved = admin.get(url).get_data(as_text=True)
    assert "refunded in full" in resolved and "Audio failed." in resolved


# --- query budget: flat with the size of the session's history --------------------------

def _statements(app, client, url) -> int:
    with app.app_context():
        engine = db.engine
    count = 0

    def counting(_conn, _cursor, statement, *_args):
        nonlocal count
        # The test's own savepoints are not the page's statements.
        if not statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            count += 1

    event.listen(engine, "before_cursor_execute", counting)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", counting)
    return count


def _more_history(app, ids, n: int) -> None:
    """More reschedule requests (each naming two people): the list that grows per session."""
    with app.app_context(), transaction():
        session = _the_session(ids["session"])
        for i in range(n):
            db.session.add(RescheduleRequest(
                session_id=session.id, requested_by_id=session.coach_id,
                original_start=session.starts_at, proposed_start=session.starts_at,
                reason=f"Old request {i}", deadline=session.starts_at, status="declined",
                decided_by_id=session.student_id, decided_at=session.starts_at))


def test_the_pages_stay_within_the_budget_whatever_the_history(app, disputed):
    admin = signed_in(app, "root@example.com")
    coach = signed_in(app, "clara@example.com")
    coach.post(answer_url(disputed), {"answer": ANSWER}, token_page=answer_url(disputed))
    pages = [(admin, f"/admin/disputes/{disputed['dispute']}"), (coach, answer_url(disputed)),
             (signed_in(app, "sam@example.com"), f"/payments/{disputed['payment']}/dispute")]
    before = [_statements(app, client, url) for client, url in pages]
    _more_history(app, disputed, 5)
    after = [_statements(app, client, url) for client, url in pages]
    assert all(count <= 10 for count in before + after), (before, after)
    assert after == before
    decide(app, disputed, "partial", amount="10", note="Part of the hour was lost.")
    assert _statements(app, admin, f"/admin/disputes/{disputed['dispute']}") <= 10
    assert _statements(app, coach, answer_url(disputed)) <= 10
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Dispute)) == 1


def test_an_answer_racing_the_decision_is_refused_not_saved(app, disputed):
    """The coach's page was loaded while open; the admin decides before the answer lands."""
    from sqlalchemy import update

    from skileez.core.errors import Conflict
    from skileez.payments.operations import answer_dispute

    with app.app_context():
        dispute = db.session.get(Dispute, disputed["dispute"])
        coach = db.session.get(User, dispute.payment.coach_id)
        assert dispute.is_open
        # Decided behind the loaded object's back: it still reads "open", as the coach's
        # request would after its checks and before its write.
        db.session.execute(update(Dispute).where(Dispute.id == dispute.id)
                           .values(status="resolved", resolution="release")
                           .execution_options(synchronize_session=False))
        assert dispute.is_open
        with pytest.raises(Conflict, match="decided this dispute a moment ago"):
            answer_dispute(dispute, coach, answer=ANSWER)
        db.session.rollback()
    assert stored_answer(app, disputed) is None
