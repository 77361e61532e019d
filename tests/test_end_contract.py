"""Ending a contract early, and the coach pausing new bookings (issue 11).

Ending cancels every session booked ahead exactly as one-by-one cancellations by the
same person would (the same refunds, the same late line), releases unpaid bookings,
and says how the contract ended; the money applied is always the money the confirm
page showed.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from skileez.contracts.models import Contract
from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.notifications.compose import preview as email_preview
from skileez.notifications.models import Notification, OutboxEmail
from skileez.payments.models import Payment
from skileez.sessions.lifecycle import FINAL
from skileez.sessions.models import Session
from tests.conftest import Client

# The clock is frozen at Tue 10 Mar 2026 09:00 UTC. Clara coaches from Berlin
# (09:00–17:00 on weekdays), Sam studies from New York.
WED_0800 = datetime(2026, 3, 11, 8, 0, tzinfo=UTC)   # 23 h ahead: late for the student
WED_1000 = datetime(2026, 3, 11, 10, 0, tzinfo=UTC)
THU_0900 = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)   # 48 h ahead: in time
FRI_0900 = datetime(2026, 3, 13, 9, 0, tzinfo=UTC)
MON_0900 = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
PRICE = 4990

pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


def login(app, email) -> Client:
    client = Client(app)
    client.login(email)
    return client


@pytest.fixture
def student(app, coaching):
    return login(app, "sam@example.com")


@pytest.fixture
def coach(app, coaching):
    return login(app, "clara@example.com")


def end_url(contract) -> str:
    return f"/contracts/{contract.id}/end"


def open_preview(client, contract) -> tuple[str, str]:
    """The confirm page and the fingerprint its form carries."""
    response = client.get(end_url(contract))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    match = re.search(r'id="fingerprint" name="fingerprint" type="hidden" value="([0-9a-f]*)"',
                      page)
    assert match, "the confirm form carries the preview's fingerprint"
    return page, match.group(1)


def end(client, contract, reason="Moving abroad, sorry.", fingerprint=None):
    if fingerprint is None:
        _, fingerprint = open_preview(client, contract)
    return client.post(end_url(contract), {"reason": reason, "fingerprint": fingerprint},
                       token_page=end_url(contract))


def contract_row(app, contract_id) -> Contract:
    with app.app_context():
        row = db.session.get(Contract, contract_id)
        db.session.expunge(row)
        return row


def statuses(app, contract_id) -> dict:
    with app.app_context():
        return dict(db.session.execute(select(Session.starts_at, Session.status).where(
            Session.contract_id == contract_id)).all())


def payments(app, contract_id) -> dict:
    with app.app_context():
        return {row.starts_at: (row.status, row.refunded_minor) for row in db.session.execute(
            select(Session.starts_at, Payment.status, Payment.refunded_minor)
            .join(Payment, Payment.session_id == Session.id)
            .where(Session.contract_id == contract_id))}


def kinds_for(app, user_id) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Notification.kind).where(
            Notification.recipient_id == user_id).order_by(Notification.id)))


def emails(app, kind) -> dict:
    """``{recipient address: plain text}`` of the emails of ``kind``, as they will be sent."""
    with app.app_context():
        rows = db.session.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind)).all()
        return {row.to_address: email_preview(row)[1] for row in rows}


def test_coach_ends_and_every_booked_session_is_refunded_in_full(app, coaching, clock, coach,
                                                                 student, paid_session):
    """A coach's cancellation refunds the student in full, late or not, so ending does too."""
    contract = coaching["contract"]
    paid_session(coaching["student"], contract, WED_0800)
    paid_session(coaching["student"], contract, THU_0900)
    page, _ = open_preview(coach, contract)
    # Clara reads the times in Berlin, with the zone named.
    assert "Wed 11 Mar 2026, 09:00 CET" in page and "Thu 12 Mar 2026, 10:00 CET" in page
    assert page.count("€49.90</strong> of €49.90 paid") == 2
    assert "Late" in page  # Wednesday is within 24 hours
    assert "€99.80" in page
    assert "3 places not booked are released." in page

    response = end(coach, contract, reason="I am closing my practice.")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/contracts/{contract.id}")
    row = contract_row(app, contract.id)
    assert row.status == "cancelled"
    assert row.ended_by_id == coaching["coach"].id and row.end_reason == "I am closing my practice."
    assert set(statuses(app, contract.id).values()) == {"cancelled"}
    assert payments(app, contract.id) == {WED_0800: ("refunded", PRICE),
                                          THU_0900: ("refunded", PRICE)}
    shown = coach.get(f"/contracts/{contract.id}").get_data(as_text=True)
    assert "Ended by Clara Schmidt on" in shown and "I am closing my practice." in shown
    assert "€99.80 refunded to Sam Rivera" in shown  # the flash after the redirect
    # One notice about the ending each, not one per session.
    assert kinds_for(app, coaching["coach"].id).count("contract_ended") == 1
    assert "session_cancelled" not in kinds_for(app, coaching["student"].id)
    assert kinds_for(app, coaching["student"].id).count("contract_ended") == 1
    mail = emails(app, "contract_ended")
    assert set(mail) == {"sam@example.com", "clara@example.com"}
    sam = mail["sam@example.com"]
    assert "Clara Schmidt ended the contract Conversation practice" in sam
    assert "I am closing my practice." in sam
    # Sam's email gives the times in New York.
    assert "Wed 11 Mar 2026, 04:00 EDT (late): refund to Sam Rivera €49.90" in sam
    assert "Refunded in all: €99.80" in sam
    assert "You ended the contract" in mail["clara@example.com"]


@pytest.mark.parametrize(("starts_at", "late", "refunded"), [
    (THU_0900, False, PRICE),  # 48 hours ahead: free cancellation, everything back
    (WED_0800, True, 0),       # 23 hours ahead: late, the policy refunds nothing
])
def test_student_ending_gets_the_policy_share_of_a_single_cancellation(
        app, coaching, clock, student, paid_session, starts_at, late, refunded):
    contract = coaching["contract"]
    paid_session(coaching["student"], contract, starts_at)
    page, _ = open_preview(student, contract)
    assert ("This is a late cancellation" in page) is late
    assert f"€{refunded / 100:.2f}</strong> of €49.90 paid" in page
    assert end(student, contract).status_code == 303
    shown = student.get(f"/contracts/{contract.id}").get_data(as_text=True)
    # The student is told in the second person, and nothing "remains" on an ended contract.
    assert "refunded to you." in shown and "refunded to Sam Rivera" not in shown
    assert "remaining</span>" not in shown
    assert payments(app, contract.id) == {
        starts_at: ("refunded" if refunded else "held", refunded)}
    with app.app_context():
        session = db.session.scalar(select(Session).where(Session.contract_id == contract.id))
        assert (session.status, session.late, session.cancelled_by_id) == (
            "cancelled", late, coaching["student"].id)
        # What is not refunded goes to the coach on the normal release schedule.
        payment = session.payment
        assert (payment.release_at is not None) is (not refunded)
    sam = emails(app, "contract_ended")["sam@example.com"]
    assert ("(late)" in sam) is late


def test_mixed_sessions_completed_in_progress_paid_and_unpaid(app, coaching, clock, student,
                                                             coach, paid_session,
                                                             book_session):
    """Completed sessions stay, a session under way blocks the ending until it is settled,
    paid ones are cancelled by the policy and an unpaid booking is released."""
    contract = coaching["contract"]
    first = paid_session(coaching["student"], contract, WED_0800)
    second = paid_session(coaching["student"], contract, WED_1000)
    paid_session(coaching["student"], contract, THU_0900)
    paid_session(coaching["student"], contract, FRI_0900)
    clock.advance(WED_0800 - clock.now())
    for session in (first,):
        url = f"/sessions/{session.id}"
        assert coach.post(f"{url}/start", token_page=url).status_code == 303
        assert coach.post(f"{url}/complete", {"notes": ""}, token_page=url).status_code == 303
    clock.advance(WED_1000 + timedelta(minutes=2) - clock.now())
    url = f"/sessions/{second.id}"
    assert coach.post(f"{url}/start", token_page=url).status_code == 303
    book_session(coaching["student"], contract, MON_0900)  # awaiting payment

    refused = student.get(end_url(contract))
    assert refused.status_code == 200
    text = refused.get_data(as_text=True)
    assert "mark the session in progress as completed or missed first" in text
    assert 'name="fingerprint"' not in text  # nothing to confirm
    posted = student.post(end_url(contract), {"reason": "Too busy", "fingerprint": "x"},
                          token_page=f"/contracts/{contract.id}")
    assert posted.status_code == 409
    assert "mark the session in progress as completed or missed first" in \
        posted.get_data(as_text=True)
    assert contract_row(app, contract.id).status == "active"

    assert coach.post(f"{url}/complete", {"notes": ""}, token_page=url).status_code == 303
    page, _ = open_preview(student, contract)
    # Now Wed 10:02 UTC: Thursday's session is 23 hours away (late), Friday's 47 (in time).
    assert "Unpaid bookings that will be released" in page
    assert "Every place is booked or used." in page
    assert end(student, contract, reason="Too busy this spring").status_code == 303
    assert statuses(app, contract.id) == {
        WED_0800: "completed", WED_1000: "completed", THU_0900: "cancelled",
        FRI_0900: "cancelled", MON_0900: "expired"}
    money = payments(app, contract.id)
    assert money[THU_0900] == ("held", 0) and money[FRI_0900] == ("refunded", PRICE)
    assert money[MON_0900][0] == "failed"  # the abandoned payment of the released booking
    assert contract_row(app, contract.id).status == "cancelled"  # 2 of 5 places completed
    # The released booking is explained by the ending, not by a second notice.
    assert "booking_expired" not in kinds_for(app, coaching["student"].id)
    sam = emails(app, "contract_ended")["sam@example.com"]
    assert "1 unpaid booking released; nothing was charged for it." in sam


def test_ending_twice_is_refused_and_changes_nothing(app, coaching, clock, coach, student,
                                                     paid_session):
    contract = coaching["contract"]
    paid_session(coaching["student"], contract, THU_0900)
    _, fingerprint = open_preview(coach, contract)
    assert end(coach, contract, fingerprint=fingerprint).status_code == 303
    with app.app_context():
        events = db.session.scalar(select(func.count()).select_from(AuditEvent))
        notices = db.session.scalar(select(func.count()).select_from(Notification))
    again = student.post(end_url(contract), {"reason": "Me too", "fingerprint": fingerprint},
                         token_page=f"/contracts/{contract.id}")
    assert again.status_code == 409
    assert "This contract is already cancelled; it cannot be ended again." in \
        again.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events
        assert db.session.scalar(select(func.count()).select_from(Notification)) == notices
    assert contract_row(app, contract.id).ended_by_id == coaching["coach"].id
    # The contract page offers no second ending.
    assert "End contract" not in student.get(f"/contracts/{contract.id}").get_data(as_text=True)


def test_a_stale_preview_is_refused_instead_of_applying_other_money(app, coaching, clock,
                                                                    student, paid_session,
                                                                    book_session):
    contract = coaching["contract"]
    paid_session(coaching["student"], contract, THU_0900)
    # 24 h 01 min before Thursday's start: in time, everything back.
    clock.advance(THU_0900 - timedelta(hours=24, minutes=1) - clock.now())
    page, fingerprint = open_preview(student, contract)
    assert "€49.90</strong> of €49.90 paid" in page
    clock.advance(timedelta(minutes=2))  # now it would be late: nothing back
    stale = end(student, contract, fingerprint=fingerprint)
    assert stale.status_code == 409
    body = stale.get_data(as_text=True)
    assert "Things changed since you opened this page" in body
    assert "€0.00</strong> of €49.90 paid" in body  # the page shows the new figures
    assert contract_row(app, contract.id).status == "active"
    assert payments(app, contract.id) == {THU_0900: ("held", 0)}

    # A session booked meanwhile makes the preview stale too.
    _, fingerprint = open_preview(student, contract)
    book_session(coaching["student"], contract, FRI_0900)
    assert end(student, contract, fingerprint=fingerprint).status_code == 409
    assert set(statuses(app, contract.id).values()) == {"scheduled", "pending_payment"}


def test_a_reason_is_required_and_limited(app, coaching, clock, student):
    contract = coaching["contract"]
    for reason, message in (("  ", "Say why you are ending the contract"),
                            ("x" * 501, "Keep the reason under 500 characters.")):
        response = end(student, contract, reason=reason)
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    assert contract_row(app, contract.id).status == "active"


def test_strangers_get_404_and_the_student_cannot_pause(app, coaching, clock, make_user,
                                                        student):
    contract = coaching["contract"]
    make_user(email="eve@example.com")
    eve = login(app, "eve@example.com")
    assert eve.get(end_url(contract)).status_code == 404
    assert eve.post(end_url(contract), {"reason": "x"},
                    token_page="/dashboard").status_code == 404
    assert eve.post(f"/contracts/{contract.id}/pause",
                    token_page="/dashboard").status_code == 404
    assert student.post(f"/contracts/{contract.id}/pause",
                        token_page="/dashboard").status_code == 403
    assert contract_row(app, contract.id).paused is False


def test_a_paused_contract_refuses_new_bookings_until_the_coach_resumes(
        app, coaching, clock, coach, student, paid_session):
    contract = coaching["contract"]
    booked = paid_session(coaching["student"], contract, THU_0900)
    detail = f"/contracts/{contract.id}"
    assert coach.post(f"{detail}/pause", token_page=detail).status_code == 303
    assert coach.post(f"{detail}/pause", token_page=detail).status_code == 409  # already
    coach_page = coach.get(detail).get_data(as_text=True)
    assert "You paused new bookings on" in coach_page and "Resume bookings" in coach_page
    assert "The coach has paused new bookings" in student.get(detail).get_data(as_text=True)
    booking_page = student.get(f"/sessions/book/{contract.id}").get_data(as_text=True)
    assert "The coach has paused new bookings" in booking_page
    refused = student.post(f"/sessions/book/{contract.id}/confirm",
                           {"starts_at": FRI_0900.isoformat()}, token_page=detail)
    assert refused.status_code == 409
    assert "The coach has paused new bookings" in refused.get_data(as_text=True)
    assert "contract_paused" in kinds_for(app, coaching["student"].id)
    # Sessions already booked are not affected.
    assert statuses(app, contract.id) == {THU_0900: "scheduled"}
    assert student.get(f"/sessions/{booked.id}/cancel").status_code == 200

    assert coach.post(f"{detail}/resume", token_page=detail).status_code == 303
    booked_again = student.post(f"/sessions/book/{contract.id}/confirm",
                                {"starts_at": FRI_0900.isoformat()}, token_page=detail)
    assert booked_again.status_code == 303
    assert statuses(app, contract.id)[FRI_0900] == "pending_payment"


def test_contract_completed_by_its_last_session_cannot_be_ended(app, make_contract, coaching,
                                                                clock, coach, paid_session):
    """The existing path: the last place's completion completes the contract by itself."""
    contract = make_contract(coaching["student"], coaching["offering"], sessions=1)
    only = paid_session(coaching["student"], contract, WED_0800)
    clock.advance(WED_0800 - clock.now())
    url = f"/sessions/{only.id}"
    assert coach.post(f"{url}/complete", {"notes": ""}, token_page=url).status_code == 303
    assert contract_row(app, contract.id).status == "completed"
    page = coach.get(end_url(contract))
    assert "This contract is already completed" in page.get_data(as_text=True)
    assert end(coach, contract, fingerprint="").status_code == 409


def _race(coach, student, contract, starts_at) -> dict:
    """The coach confirms the ending while the student books, released at one instant."""
    _, fingerprint = open_preview(coach, contract)
    coach_token = coach.csrf_token(end_url(contract))
    student_token = student.csrf_token(f"/contracts/{contract.id}")
    barrier, results = threading.Barrier(2), {}

    def ending():
        barrier.wait()
        results["end"] = coach.http.post(end_url(contract), data={
            "reason": "Closing", "fingerprint": fingerprint, "csrf_token": coach_token})

    def booking():
        barrier.wait()
        results["book"] = student.http.post(
            f"/sessions/book/{contract.id}/confirm",
            data={"starts_at": starts_at.isoformat(), "csrf_token": student_token})

    threads = [threading.Thread(target=ending), threading.Thread(target=booking)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.real_commits
def test_ending_while_the_student_books_leaves_no_booking_on_an_ended_contract(
        app, coaching, make_contract, clock, paid_session):
    """Ending and booking race on the contract's row lock (PostgreSQL) or the serialized
    write (SQLite): whichever wins, no live session is left on an ended contract."""
    rounds = 4
    contracts = [make_contract(coaching["student"], coaching["offering"], sessions=3)
                 for _ in range(rounds)]
    for n, contract in enumerate(contracts):
        paid_session(coaching["student"], contract, THU_0900 + timedelta(hours=2 * n))
    coach, student = login(app, "clara@example.com"), login(app, "sam@example.com")
    for n, contract in enumerate(contracts):
        results = _race(coach, student, contract, FRI_0900 + timedelta(hours=2 * n))
        assert results["end"].status_code in (303, 409)
        assert results["book"].status_code in (303, 409)
        for response in results.values():
            assert "database is locked" not in response.get_data(as_text=True)
        row = contract_row(app, contract.id)
        live = {status for status in statuses(app, contract.id).values()
                if status not in FINAL}
        if row.status != "active":
            assert live == set(), (n, live)
            assert results["end"].status_code == 303
        else:
            # The booking won and made the ending's preview stale: nothing was ended.
            assert results["end"].status_code == 409
            assert results["book"].status_code == 303


def test_a_session_whose_time_came_but_nobody_started_is_explained_not_called_started(
        app, coaching, clock, student, paid_session):
    """Found by a tester: "has started and is not finished yet" about a session nobody
    had started. It has no outcome yet, and the page says how it will get one."""
    contract = coaching["contract"]
    paid_session(coaching["student"], contract, WED_1000)
    clock.advance(WED_1000 + timedelta(minutes=5) - clock.now())
    text = student.get(end_url(contract)).get_data(as_text=True)
    assert "has started" not in text
    assert "was due to start and has no outcome yet" in text
    # Marked missed from 15 minutes after the start, in the student's zone (New York).
    assert "missed from 06:15 EDT" in text and "30 minutes after its end" in text
    assert contract_row(app, contract.id).status == "active"
