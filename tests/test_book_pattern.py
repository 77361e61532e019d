"""Booking the rest of a contract as a weekly pattern, charged to the saved card.

What a student notices: the preview lists every week in their zone (and the coach's),
free or taken with the nearest free time offered; confirming books them all or none;
each session is then paid off-session, or waits with a notice and a link to pay. The
pattern keeps its local time across a DST change. The last test is the issue's
done-when: eight students booking eight-week patterns at once over overlapping times.
"""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from skileez.extensions import db
from skileez.notifications.models import Notification, OutboxEmail
from skileez.payments.models import Payment, SavedCard, SavedCardCharge
from skileez.payments.pattern import weekly_starts
from skileez.sessions.models import Session
from tests.conftest import Client

BERLIN = ZoneInfo("Europe/Berlin")
# Saturday 10 October 2026, 10:00 in Berlin: three Tuesdays before the clocks go back
# (Sunday 25 October), five after.
NOW = datetime(2026, 10, 10, 8, 0, tzinfo=UTC)
FIRST_DAY = date(2026, 10, 12)

pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


@pytest.fixture
def evening(make_user, make_offering, add_hours, make_contract, clock):
    """A Berlin coach free on Tuesday evenings; a Berlin student with 8 places left."""
    clock.freeze(NOW)
    coach = make_user("coach", name="Clara Schmidt", email="clara@example.com",
                      timezone="Europe/Berlin")
    student = make_user(name="Sam Rivera", email="sam@example.com", timezone="Europe/Berlin")
    offering = make_offering(coach, title="Conversation practice", duration=60, price=4990)
    add_hours(coach, [1], "17:00", "21:00")
    contract = make_contract(student, offering, sessions=8)
    return {"coach": coach, "student": student, "offering": offering, "contract": contract}


def signed_in(app, email) -> Client:
    client = Client(app)
    client.login(email)
    return client


def save_test_card(client, card="ok"):
    response = client.post("/payments/card/test-save", {"card": card},
                           token_page="/payments/card")
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


def pattern_query(count=8, at="18:00", weekday=1, first_day=FIRST_DAY):
    return {"weekday": weekday, "at": at, "first_day": first_day.isoformat(), "count": count}


def preview(client, contract_id, **pattern):
    return client.get(f"/payments/pattern/{contract_id}",
                      query_string=pattern_query(**pattern))


def confirm(client, contract_id, starts, **pattern):
    data = {**pattern_query(**pattern), "starts": [start.isoformat() for start in starts]}
    return client.post(f"/payments/pattern/{contract_id}", data,
                       token_page=f"/payments/pattern/{contract_id}")


def test_weekly_18_00_in_berlin_stays_18_00_local_across_the_october_change():
    """The UTC hour moves (16:00 → 17:00); the wall-clock time the student chose does not."""
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 8, "Europe/Berlin")
    assert [start.astimezone(BERLIN).strftime("%a %H:%M") for start in starts] == \
        ["Tue 18:00"] * 8
    assert [start.hour for start in starts] == [16, 16, 17, 17, 17, 17, 17, 17]
    assert starts[0] == datetime(2026, 10, 13, 16, 0, tzinfo=UTC)
    # Built from local dates, not by adding 168 hours: the week over the change has 169.
    assert starts[2] - starts[1] == timedelta(hours=169)


def test_spring_gap_time_is_read_as_the_slot_engine_reads_it():
    """02:30 does not exist on 29 March 2026 in Berlin: read with the offset before the gap."""
    (start,) = weekly_starts(6, 2 * 60 + 30, date(2026, 3, 29), 1, "Europe/Berlin")
    assert start.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"


def test_without_a_saved_card_the_preview_explains_and_confirming_is_refused(
        app, evening):
    client = signed_in(app, "sam@example.com")
    contract_id = evening["contract"].id
    page = preview(client, contract_id)
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "save one first" in body and 'data-testid="save-card-first"' in body
    assert "Save a card to book these" in body
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 2, "Europe/Berlin")
    response = confirm(client, contract_id, starts, count=2)
    assert response.status_code == 409
    assert "Save a card first" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0


def test_preview_marks_taken_weeks_and_offers_the_nearest_free_time(
        app, evening, make_user, make_contract, paid_session):
    other = make_user(name="Olga", email="olga@example.com")
    other_contract = make_contract(other, evening["offering"], sessions=2)
    taken = datetime(2026, 10, 27, 17, 0, tzinfo=UTC)  # week 3, 18:00 CET
    paid_session(other, other_contract, taken)
    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    page = preview(client, evening["contract"].id, count=4)
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert body.count('data-free="yes"') == 3 and body.count('data-free="no"') == 1
    # 60 minutes plus the coach's 15-minute buffer: 19:30 is the nearest free start after
    # the 18:00–19:00 session (16:30 would end inside the buffer before it, and the coach
    # starts at 17:00, so nothing earlier fits either).
    alternative = datetime(2026, 10, 27, 18, 30, tzinfo=UTC)
    assert f'value="{alternative.isoformat()}"' in body
    assert "Nearest free: " in body and "Tue 27 Oct" in body
    # Offered, not ticked: only the three free weeks are booked unless the student ticks it.
    assert body.count('name="starts"') == 4 and body.count(" checked>") == 3
    assert f'value="{alternative.isoformat()}" id="start-3">' in body
    assert "19:30" in body
    # The coach's time is shown too (the same zone here, named).
    assert "CET" in body and "CEST" in body


def test_confirming_books_every_week_and_charges_each_to_the_saved_card(app, evening):
    client = signed_in(app, "sam@example.com")
    save_test_card(client, "ok")
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 8, "Europe/Berlin")
    response = confirm(client, evening["contract"].id, starts)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].endswith(f"/contracts/{evening['contract'].id}")
    with app.app_context():
        sessions = db.session.scalars(select(Session).order_by(Session.starts_at)).all()
        assert [s.starts_at for s in sessions] == starts
        assert [s.starts_at.astimezone(BERLIN).hour for s in sessions] == [18] * 8
        assert {s.status for s in sessions} == {"scheduled"}
        payments = db.session.scalars(select(Payment)).all()
        assert len(payments) == 8 and {p.status for p in payments} == {"held"}
        assert {c.status for c in db.session.scalars(select(SavedCardCharge))} == \
            {"succeeded"}
        received = db.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "payment_received"))
        assert received == 8
    contract_page = client.get(f"/contracts/{evening['contract'].id}").get_data(as_text=True)
    assert "Every place is booked" in contract_page


@pytest.mark.parametrize(("card", "status", "words"), [
    ("action", "needs_action", "Your bank asks you to confirm the payment"),
    ("decline", "declined", "We could not charge"),
])
def test_a_charge_that_needs_the_student_leaves_that_session_waiting_with_a_link(
        app, evening, clock, card, status, words):
    client = signed_in(app, "sam@example.com")
    save_test_card(client, card)
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 3, "Europe/Berlin")
    clock.advance(timedelta(minutes=1))
    response = confirm(client, evening["contract"].id, starts, count=3)
    assert response.status_code == 303
    with app.app_context():
        sessions = db.session.scalars(select(Session).order_by(Session.starts_at)).all()
        assert {s.status for s in sessions} == {"pending_payment"}
        # The pay window is the policy's hold from the notice.
        assert {s.hold_expires_at for s in sessions} == {clock.now() + timedelta(minutes=15)}
        assert {c.status for c in db.session.scalars(select(SavedCardCharge))} == {status}
        notices = db.session.scalars(select(Notification).where(
            Notification.kind == "saved_card_not_charged")).all()
        assert sorted(n.payload["session_id"] for n in notices) == sorted(s.id for s in sessions)
        email = db.session.scalar(select(OutboxEmail).where(
            OutboxEmail.kind == "saved_card_not_charged"))
        assert "Action needed" in email.subject
        payment_id = sessions[0].payment.id
        assert f"/payments/{payment_id}/pay" in email.text_body
    inbox = client.get("/notifications/").get_data(as_text=True)
    assert words in inbox
    pay = client.get(f"/payments/{payment_id}/pay")
    assert pay.status_code == 200
    # On the pay page, the student pays the waiting session with the test card page.
    paid = client.post(f"/payments/{payment_id}/test-card", {"card": "success"},
                       token_page=f"/payments/{payment_id}/pay")
    assert paid.status_code == 303
    with app.app_context():
        assert db.session.get(Payment, payment_id).status == "held"


def test_one_week_taken_meanwhile_books_nothing_and_shows_the_fresh_preview(
        app, evening, make_user, make_contract, paid_session):
    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 4, "Europe/Berlin")
    other = make_user(name="Olga", email="olga@example.com")
    paid_session(other, make_contract(other, evening["offering"], sessions=1), starts[2])
    response = confirm(client, evening["contract"].id, starts, count=4)
    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "This time was just taken" in body
    assert body.count('data-free="no"') == 1  # the fresh preview shows which week
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session).where(
            Session.student_id == evening["student"].id)) == 0
        assert db.session.scalar(select(func.count()).select_from(SavedCardCharge)) == 0


@pytest.mark.parametrize(("pattern", "field_message"), [
    ({"count": 9}, "This contract has 8 places left."),
    ({"count": 0}, "Book from 1 to 50 sessions."),
    ({"at": "25:00"}, "Give a time such as 18:00."),
    ({"first_day": date(2026, 10, 1)}, "Choose a date from today to a year ahead."),
])
def test_bad_patterns_are_shown_beside_the_field_and_book_nothing(app, evening, pattern,
                                                                  field_message):
    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    page = preview(client, evening["contract"].id, **pattern)
    assert page.status_code == 422
    assert field_message in page.get_data(as_text=True)
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 1, "Europe/Berlin")
    response = confirm(client, evening["contract"].id, starts, **pattern)
    assert response.status_code == 422
    assert field_message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0


def test_only_the_student_of_the_contract_books_a_pattern(app, evening, make_user):
    make_user(name="Eve", email="eve@example.com")
    stranger = signed_in(app, "eve@example.com")
    assert preview(stranger, evening["contract"].id).status_code == 404
    coach = signed_in(app, "clara@example.com")
    assert preview(coach, evening["contract"].id).status_code == 403


def test_a_charge_whose_card_was_removed_waits_for_the_student(app, evening, monkeypatch):
    """The job re-checks the card before calling out: a removed card is never charged."""
    from skileez.core import queue
    from skileez.payments.cards import charge_saved_card

    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 1, "Europe/Berlin")
    held_back = []
    # The job waits in its queue (not run at commit) while the student removes the card.
    monkeypatch.setattr(queue, "dispatch", lambda *args, **kwargs: held_back.append(args)
                        or True)
    assert confirm(client, evening["contract"].id, starts, count=1).status_code == 303
    monkeypatch.undo()
    assert any(args[1] is charge_saved_card for args in held_back)
    with app.app_context():
        payment_id = db.session.scalar(select(Payment.id))
    # While the charge is waiting, the pay page does not offer to pay a second time.
    waiting = client.get(f"/payments/{payment_id}/pay")
    assert waiting.status_code == 409
    assert "being charged for this session right now" in waiting.get_data(as_text=True)
    assert client.post("/payments/card/remove", token_page="/payments/card").status_code == 303
    with app.app_context():
        charge = db.session.scalar(select(SavedCardCharge))
        assert charge_saved_card(charge.id) == "declined"
        db.session.expire_all()
        assert db.session.get(SavedCardCharge, charge.id).status == "declined"
        session = db.session.scalar(select(Session))
        assert session.status == "pending_payment"
        assert db.session.scalar(select(SavedCard)).status == "removed"
        assert db.session.scalar(select(Notification).where(
            Notification.kind == "saved_card_not_charged")) is not None


# --- the done-when: eight students at once ---------------------------------------------------

@pytest.mark.real_commits
def test_eight_students_booking_eight_week_patterns_at_once_never_overlap(
        app, make_user, make_offering, add_hours, make_contract, clock):
    """Overlapping weekly times across the DST change, eight threads at once: no two of the
    coach's sessions overlap (buffer included), and every session booked is either paid
    (held) or waiting for its student with a notice saying why."""
    clock.freeze(NOW)
    coach = make_user("coach", name="Clara Schmidt", email="clara@example.com")
    offering = make_offering(coach, duration=60, price=4990)
    add_hours(coach, [1], "16:00", "22:00")
    cards = ["ok", "ok", "action", "decline", "ok", "action", "ok", "decline"]
    times = ["18:00", "18:30", "18:00", "19:00", "17:30", "18:30", "19:30", "18:00"]
    clients, contracts = [], []
    for n in range(8):
        email = f"racer{n}@example.com"
        student = make_user(name=f"Racer {n}", email=email)
        contracts.append(make_contract(student, offering, sessions=8))
        client = signed_in(app, email)
        save_test_card(client, cards[n])
        clients.append((client, client.csrf_token(f"/payments/pattern/{contracts[n].id}")))
    barrier, results = threading.Barrier(8), [None] * 8

    def attempt(index):
        client, token = clients[index]
        hours, minutes = map(int, times[index].split(":"))
        starts = weekly_starts(1, hours * 60 + minutes, FIRST_DAY, 8, "Europe/Berlin")
        barrier.wait()
        response = client.http.post(f"/payments/pattern/{contracts[index].id}", data={
            **pattern_query(at=times[index]), "csrf_token": token,
            "starts": [start.isoformat() for start in starts]})
        results[index] = (response.status_code, response.get_data(as_text=True))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = [status for status, _ in results]
    assert set(statuses) <= {303, 409}, statuses
    assert statuses.count(303) >= 1
    assert statuses.count(409) >= 2  # three of them want 18:00 every week: one at most wins
    for status, body in results:
        assert "database is locked" not in body
        if status == 409:
            assert "This time was just taken" in body
    with app.app_context():
        sessions = db.session.scalars(select(Session).order_by(Session.starts_at)).all()
        # All or nothing per student: a winner has all eight weeks, a loser none.
        per_student = {}
        for s in sessions:
            per_student[s.student_id] = per_student.get(s.student_id, 0) + 1
        assert set(per_student.values()) == {8}
        assert len(per_student) == statuses.count(303)
        buffer = timedelta(minutes=15)
        for earlier, later in itertools.pairwise(sessions):
            assert later.starts_at >= earlier.ends_at + buffer, (earlier.id, later.id)
        waiting = {n.payload["session_id"] for n in db.session.scalars(
            select(Notification).where(Notification.kind == "saved_card_not_charged"))}
        for s in sessions:
            if s.status == "scheduled":
                assert s.payment.status == "held"
            else:
                assert s.status == "pending_payment" and s.id in waiting, s.id
                assert s.payment.failure_message


def test_confirming_with_nothing_ticked_keeps_the_preview_and_says_why(app, evening):
    """Found by a tester: every week "Not free", nothing ticked, "Book" pressed — the
    preview vanished for "Fix the pattern on the left", with no message anywhere."""
    client = signed_in(app, "sam@example.com")
    save_test_card(client, "ok")
    response = confirm(client, evening["contract"].id, [], count=2)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose at least one time to book." in body
    assert body.count('name="starts"') == 2  # the two weeks are still there to tick
    assert "Fix the pattern on the left" not in body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0


def test_booking_one_week_is_told_in_the_singular(app, evening):
    client = signed_in(app, "sam@example.com")
    save_test_card(client, "ok")
    [start] = weekly_starts(1, 18 * 60, FIRST_DAY, 1, "Europe/Berlin")
    response = confirm(client, evening["contract"].id, [start], count=1)
    assert response.status_code == 303
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 session booked. It is being charged to your saved card" in shown
