"""Issue #8 item 8: the words for money agree with the state, on every page that shows them.

Each case drives a real payment into one state through the operations, puts the clock
before or after its release date, and reads what the student (New York), the coach
(Berlin) and an admin (UTC) see: the session page's money box for the two people, the
admin payment page for the admin. Dates are in the reader's zone; a release still
ahead is "will be", one behind "is being" or "was".
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from skileez import clock as clock_module
from skileez.auth.models import User
from skileez.extensions import db
from skileez.payments import operations as payments
from skileez.payments.models import Dispute, Payment
from skileez.payments.words import describe_money
from skileez.sessions import operations as sessions
from skileez.sessions.models import Session
from tests.conftest import Client

# The clock fixture freezes at Tue 10 Mar 2026 09:00 UTC (05:00 EDT, 10:00 CET).
THU = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
DONE = THU + timedelta(hours=1)             # completed: Thu 10:00 UTC
RELEASE = DONE + timedelta(hours=24)        # Fri 13 Mar 10:00 UTC
AFTER = RELEASE + timedelta(minutes=1)

ZONES = {  # how each reader sees an instant, in the 'short' style with the zone named
    "student": lambda t: t.astimezone(_ny()).strftime("%a %d %b, %H:%M EDT"),
    "coach": lambda t: t.astimezone(_berlin()).strftime("%a %d %b, %H:%M CET"),
    "admin": lambda t: t.strftime("%a %d %b, %H:%M UTC"),
}


def _ny():
    from zoneinfo import ZoneInfo
    return ZoneInfo("America/New_York")


def _berlin():
    from zoneinfo import ZoneInfo
    return ZoneInfo("Europe/Berlin")


def names(role):
    return {"coach": "you" if role == "coach" else "Clara Schmidt",
            "card": "your card" if role == "student" else "Sam Rivera's card"}


# --- building each state through the real operations -----------------------------------

def _people(coaching, admin):
    return (db.session.get(User, coaching["student"].id),
            db.session.get(User, coaching["coach"].id), db.session.get(User, admin.id))


def _complete(session, student):
    clock_module.freeze(DONE)
    sessions.complete(session, actor=student)


def build(state, coaching, admin, session_id):
    """Drive the session's payment into ``state``; return the instant to read it at."""
    session = db.session.get(Session, session_id)
    payment = session.payment
    student, coach, admin = _people(coaching, admin)
    if state == "pending":
        return datetime(2026, 3, 10, 9, 5, tzinfo=UTC)
    if state == "failed":
        payments.ensure_payment_intent(payment)
        payments.payment_failed(payment.payment_intent_id, "Your card was declined.")
        return datetime(2026, 3, 10, 9, 5, tzinfo=UTC)
    if state == "expired":
        clock_module.freeze(datetime(2026, 3, 10, 9, 20, tzinfo=UTC))
        sessions.expire_stale_holds()
        return clock_module.now()
    payments.ensure_payment_intent(payment)
    payments.payment_succeeded(payment.payment_intent_id, charge_id=f"ch_{payment.id}")
    if state == "held_scheduled":
        return datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    if state == "refunded":
        sessions.cancel(session, coach, reason="ill")
        return clock_module.now()
    _complete(session, student)
    if state == "completed_before_release":
        return RELEASE - timedelta(hours=2)
    if state == "completed_release_due":
        return AFTER
    if state == "partial_before_release":
        payments.refund(payment, 1000, reason="shorter session", actor=admin)
        return RELEASE - timedelta(hours=2)
    if state == "disputed":
        payments.open_dispute(payment, student, reason="The coach left after ten minutes.")
        return RELEASE - timedelta(hours=2)
    if state == "dispute_resolved_partial":
        dispute = payments.open_dispute(payment, student, reason="Coach left after ten min.")
        clock_module.freeze(AFTER)
        payments.resolve_dispute(dispute, admin, resolution="partial", refund_minor=1000)
        return AFTER + timedelta(hours=1)
    clock_module.freeze(AFTER)
    if state == "partial_released":
        payments.refund(payment, 1000, reason="shorter session", actor=admin)
    payments.release(payment)
    return AFTER + timedelta(hours=1)


def expected(state, role):
    """(headline, detail) a reader sees; {coach}, {card} and times filled per reader."""
    at = ZONES[role]
    n = names(role)
    hold = at(datetime(2026, 3, 10, 9, 15, tzinfo=UTC))
    keep = (f"Pay by {hold} to keep this time." if role == "student"
            else f"The time is held for payment until {hold}.")
    released_to = "Paid — released to you" if role == "coach" else "Paid — released to the coach"
    return {
        "pending": ("Not paid yet", keep),
        "failed": ("Not paid yet — the last attempt failed", f"Your card was declined. {keep}"),
        "expired": ("Not paid — the booking expired",
                    "The hold on this time ran out before payment, so nothing was charged and "
                    "the time was released."),
        "held_scheduled": ("Paid — held by Skileez",
                           f"€49.90 is held until the session is done, then released to "
                           f"{n['coach']} 24 hours after it is completed."),
        "completed_before_release": (
            f"Paid — held until {at(RELEASE)}",
            f"€44.91 will be released to {n['coach']} on {at(RELEASE)}."),
        "completed_release_due": (
            "Paid — being released",
            f"€44.91 is being released to {n['coach']}; the release was due {at(RELEASE)}."),
        "released": (released_to,
                     f"€44.91 was released to {n['coach']} on {at(AFTER)}; the Skileez fee "
                     "was €4.99."),
        "partial_before_release": (
            "Partly refunded",
            f"refunded to {n['card']}. €35.91 will be released to {n['coach']} on "
            f"{at(RELEASE)}."),
        "partial_released": (
            released_to,
            f"€35.91 was released to {n['coach']} on {at(AFTER)}, after €10.00 was refunded "
            f"to {n['card']}; the Skileez fee was €3.99."),
        "disputed": ("Disputed — on hold",
                     "€49.90 is held until an admin decides the dispute; nothing is released "
                     "to the coach before then."),
        "dispute_resolved_partial": (
            released_to,
            f"€35.91 was released to {n['coach']} on {at(AFTER)}, after €10.00 was refunded "
            f"to {n['card']}; the Skileez fee was €3.99."),
        "refunded": ("Refunded", f"€49.90 was refunded to {n['card']} on "
                                 f"{at(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))}."),
    }[state]


STATES = ["pending", "failed", "expired", "held_scheduled", "completed_before_release",
          "completed_release_due", "released", "partial_before_release", "partial_released",
          "disputed", "dispute_resolved_partial", "refunded"]


@pytest.fixture
def admin(make_user):
    return make_user("admin", name="Ada Admin", email="ada@example.com", timezone="UTC")


@pytest.fixture
def booked(app, clock, coaching, book_session):
    return book_session(coaching["student"], coaching["contract"], THU)


def read(app, state, role, coaching, admin, booked):
    with app.app_context():
        read_at = build(state, coaching, admin, booked.id)
        db.session.commit()
        payment_id = db.session.get(Session, booked.id).payment.id
    clock_module.freeze(read_at)
    client = Client(app)
    client.login({"student": "sam@example.com", "coach": "clara@example.com",
                  "admin": "ada@example.com"}[role])
    url = f"/admin/payments/{payment_id}" if role == "admin" else f"/sessions/{booked.id}"
    response = client.get(url)
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    headline = re.search(r'data-testid="money-headline">([^<]*)<', page).group(1).strip()
    detail = re.search(r'data-testid="money-detail">([^<]*)<', page).group(1).strip()
    return headline, detail, page, payment_id


@pytest.mark.parametrize("role", ["student", "coach", "admin"])
@pytest.mark.parametrize("state", STATES)
def test_money_words_on_the_page_match_the_state(app, clock, coaching, admin, booked, state,
                                                 role):
    headline, detail, _page, _ = read(app, state, role, coaching, admin, booked)
    want_headline, want_detail = expected(state, role)
    assert headline == want_headline
    assert want_detail in detail
    # Never past tense about a release still ahead, never "held" once the money left.
    if state in ("completed_before_release", "partial_before_release"):
        assert "was released" not in detail and "Released" not in headline
    if state in ("released", "partial_released", "dispute_resolved_partial", "refunded"):
        assert "held" not in headline.lower() and "is held" not in detail
    if state == "expired":
        assert "failed" not in (headline + detail).lower()


def test_admin_payment_page_shows_the_split_after_a_partial_refund(app, clock, coaching, admin,
                                                                   booked):
    _h, _d, page, _ = read(app, "partial_before_release", "admin", coaching, admin, booked)
    split = re.search(r'data-testid="split">(.*?)</dd>', page, re.S).group(1)
    assert split.startswith("fee €3.99, coach €35.91")
    assert re.search(r'data-testid="in-escrow">€39.90<', page)


def test_a_resolved_dispute_no_longer_says_held(app, clock, coaching, admin, booked):
    read(app, "dispute_resolved_partial", "admin", coaching, admin, booked)
    client = Client(app)
    client.login("ada@example.com")
    page = html.unescape(client.get("/admin/disputes?status=resolved").get_data(as_text=True))
    with app.app_context():
        dispute_id = db.session.query(Dispute).one().id
    words = re.search(rf'data-testid="dispute-money-{dispute_id}">([^<]*)<', page).group(1)
    assert words == "Paid — released to the coach"
    assert "held" not in words


def test_an_expired_hold_is_not_listed_as_failed_in_payment_history(app, clock, coaching,
                                                                    admin, booked):
    read(app, "expired", "student", coaching, admin, booked)
    client = Client(app)
    client.login("sam@example.com")
    page = html.unescape(client.get("/payments/").get_data(as_text=True))
    with app.app_context():
        payment_id = db.session.query(Payment).one().id
    cell = re.search(rf'data-testid="money-{payment_id}">(.*?)</td>', page, re.S).group(1)
    assert "Not paid — the booking expired" in cell and "failed" not in cell.lower()


def test_receipt_and_earnings_use_the_same_words(app, clock, coaching, admin, booked):
    _h, _d, _page, payment_id = read(app, "completed_before_release", "coach", coaching, admin,
                                     booked)
    coach = Client(app)
    coach.login("clara@example.com")
    earnings = html.unescape(coach.get("/payments/").get_data(as_text=True))
    assert (f"€44.91 will be released to you on {ZONES['coach'](RELEASE)}."
            in earnings)
    student = Client(app)
    student.login("sam@example.com")
    receipt = html.unescape(student.get(f"/payments/{payment_id}/receipt")
                            .get_data(as_text=True))
    assert f"Paid — held until {ZONES['student'](RELEASE)}." in receipt


def test_describe_money_takes_its_tense_from_the_clock(app, clock, coaching, admin, booked):
    with app.app_context():
        build("completed_before_release", coaching, admin, booked.id)
        db.session.commit()
        payment = db.session.get(Session, booked.id).payment
        coach = db.session.get(User, coaching["coach"].id)
        before = describe_money(payment, coach, RELEASE - timedelta(minutes=1))
        after = describe_money(payment, coach, RELEASE + timedelta(minutes=1))
    assert "will be released" in before.detail
    assert "is being released" in after.detail and "will be" not in after.detail
    assert before.amounts.coach_share == 4491 and before.amounts.fee == 499


def test_payment_emails_carry_the_same_words(app, clock, coaching, admin, booked):
    from skileez.notifications.models import OutboxEmail

    with app.app_context():
        build("released", coaching, admin, booked.id)
        db.session.commit()
        mails = db.session.query(OutboxEmail).all()
        released = [m for m in mails if "released to you" in m.subject]
        assert released, [m.subject for m in mails]
        body = released[-1].text_body
    assert "Paid — released to you: €44.91 was released to you on" in body
