"""The session life cycle's rules, checked against SPEC rather than against the code:
every status × every action × every role through the HTTP routes, the time rules at
their exact edges with the frozen clock, and two people acting on one session at once.

The clock fixture starts at Tue 10 Mar 2026 09:00 UTC. Sessions are booked for the
week of Mon 16 Mar (Clara in Berlin is free 09:00–17:00 CET = 08:00–16:00 UTC) and
reschedule requests propose times in the week of Mon 23 Mar, before the DST change.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import Notification
from skileez.payments.models import LedgerTransaction, Payment, Refund
from skileez.sessions import operations
from skileez.sessions.models import Rating, RescheduleRequest, Session
from tests.conftest import Client

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # where the clock fixture freezes time
PRICE = 4990
H, M, S1 = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)


def slot(index: int) -> datetime:
    """The index-th session time: four a day (08, 10, 12, 14 UTC), Mon 16 – Fri 20 Mar."""
    assert 0 <= index < 20
    return datetime(2026, 3, 16, 8, 0, tzinfo=UTC) + timedelta(days=index // 4,
                                                                hours=2 * (index % 4))


def target(index: int) -> datetime:
    """The index-th reschedule target: the same grid one week later (Mon 23 – Fri 27 Mar)."""
    return slot(index) + timedelta(days=7)


pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


@pytest.fixture
def contract(coaching, make_contract):
    """A contract large enough for every session one test needs."""
    return make_contract(coaching["student"], coaching["offering"], sessions=50)


@pytest.fixture
def people(app, coaching, make_user):
    """Signed-in browsers for the student, the coach and a stranger, each with its token."""
    make_user(email="eve@example.com", name="Eve Stranger")
    browsers = {}
    for role, email in (("student", "sam@example.com"), ("coach", "clara@example.com"),
                        ("stranger", "eve@example.com")):
        browsers[role] = Browser(app, email)
    return browsers


class Browser:
    """A signed-in Client that reuses its CSRF token (safe to use from another thread)."""

    def __init__(self, app, email):
        self.client = Client(app)
        self.client.login(email)
        self.token = self.client.csrf_token("/dashboard")

    def post(self, url, data=None):
        return self.client.http.post(url, data={**(data or {}), "csrf_token": self.token})


@pytest.fixture
def booked(clock, contract, coaching, book_session, paid_session):
    """book(index, paid=True) → session id of a session at ``slot(index)``, booked at T0."""

    def book(index: int, *, paid: bool = True) -> int:
        clock.freeze(T0)
        make = paid_session if paid else book_session
        return make(coaching["student"], contract, slot(index)).id

    return book


# --- reading the database -----------------------------------------------------------

def fetch(app, session_id) -> dict:
    """What a refused action must leave exactly as it was, read fresh from the database."""
    with app.app_context():
        s = db.session.get(Session, session_id)
        p = s.payment

        def count(model, *where):
            return db.session.scalar(select(func.count()).select_from(model).where(*where))

        return {
            "session": (s.status, s.starts_at, s.ends_at, s.confirmed_by_coach, s.started_at,
                        s.student_joined_at, s.coach_joined_at, s.completed_at,
                        s.student_notes, s.coach_notes, s.missed_by, s.cancelled_at, s.late),
            "payment": (p.status, p.refunded_minor, p.release_at) if p else None,
            "requests": [(r.id, r.status, r.approved_start) for r in s.reschedule_requests],
            "ratings": count(Rating, Rating.session_id == session_id),
            "ledger transactions": count(LedgerTransaction),
            "refunds": count(Refund),
            "notifications": count(Notification),
            "audit events": count(AuditEvent),
        }


def status_of(app, session_id) -> str:
    with app.app_context():
        return db.session.get(Session, session_id).status


def pending_request(app, session_id) -> RescheduleRequest | None:
    with app.app_context():
        request = db.session.scalar(select(RescheduleRequest).where(
            RescheduleRequest.session_id == session_id, RescheduleRequest.status == "pending"))
        if request is not None:
            db.session.expunge(request)
        return request


def money(app, session_id) -> dict:
    with app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.session_id == session_id))
        kinds = sorted(db.session.scalars(select(LedgerTransaction.kind).where(
            LedgerTransaction.payment_id == payment.id)).all())
        return {"status": payment.status, "refunded": payment.refunded_minor,
                "release_at": payment.release_at, "ledger": kinds,
                "refund rows": db.session.scalar(select(func.count()).select_from(Refund)
                                                 .where(Refund.payment_id == payment.id))}


def notifications(app, kind: str) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Notification)
                                 .where(Notification.kind == kind))


def run_sweep(app) -> dict:
    with app.app_context():
        return sweep()


# --- driving sessions into a status through the real operations -------------------------

def drive(app, clock, session_id: int, status: str, *, to: datetime,
          history: bool = False) -> None:
    """Move a paid (scheduled) session to ``status`` the way people would.

    ``to`` is the time a reschedule request proposes; with ``history`` the session first
    goes through a request the coach declined, so a decided request exists for it.
    """
    with app.app_context():
        session = db.session.get(Session, session_id)
        student, coach, start = session.student, session.coach, session.starts_at
        if history:
            clock.freeze(start - 72 * H)
            request = operations.request_reschedule(session, student, new_start=to,
                                                    reason="An earlier request, declined.")
            db.session.commit()
            operations.decline_reschedule(request, coach, note="No, sorry.")
            db.session.commit()
        if status == "scheduled":
            return
        if status == "reschedule_requested":
            clock.freeze(start - 72 * H)
            operations.request_reschedule(session, student, new_start=to,
                                          reason="My train was cancelled.")
        elif status == "cancelled":
            clock.freeze(start - 48 * H)
            operations.cancel(session, student, reason="Plans changed.")
        elif status == "missed":
            clock.freeze(start + 20 * M)
            operations.mark_missed(session, missed_by="coach", reason="Never came.",
                                   actor=student)
        else:
            clock.freeze(start)
            operations.start(session, coach)
            if status == "completed":
                db.session.commit()
                clock.freeze(start + 50 * M)
                operations.complete(session, actor=student)
        db.session.commit()


def expire(app, clock, session_id: int) -> None:
    """Let the payment hold run out and the sweep's operation expire it."""
    clock.freeze(T0 + timedelta(minutes=16))
    with app.app_context():
        operations.expire_hold(db.session.get(Session, session_id))
        db.session.commit()


# --- the expected table, read off SPEC ----------------------------------------------------

STATUSES = ("pending_payment", "scheduled", "reschedule_requested", "in_progress",
            "completed", "cancelled", "expired", "missed")
BOTH = frozenset({"student", "coach"})

# action: (statuses it may start from, roles that may take it). In every crafted
# reschedule request the student asked, so the coach answers and the student withdraws.
SPEC_RULES = {
    # "The coach may confirm a scheduled session."
    "confirm": ({"scheduled"}, {"coach"}),
    # "Either participant can start a session … it becomes in_progress."
    "start": ({"scheduled"}, BOTH),
    # "the meeting link … becomes active. Joining records attendance for that person."
    "join": ({"in_progress"}, BOTH),
    # "Only scheduled sessions can be rescheduled; only participants; one pending request."
    "request_reschedule": ({"scheduled"}, BOTH),
    # "The other participant approves … or declines."
    "approve": ({"reschedule_requested"}, {"coach"}),
    "decline": ({"reschedule_requested"}, {"coach"}),
    # The requester may withdraw (RescheduleRequest: pending → withdrawn).
    "withdraw": ({"reschedule_requested"}, {"student"}),
    # "Participants can cancel a scheduled (or reschedule_requested) session."
    "cancel": ({"scheduled", "reschedule_requested"}, BOTH),
    # "once it is in_progress, or once its start time has passed while it is scheduled."
    "complete": ({"scheduled", "in_progress"}, BOTH),
    # Notes belong to completion; "the other person can add theirs afterwards."
    "notes": ({"completed"}, BOTH),
    # "scheduled or in_progress ──mark missed──▶ missed", from 15 min after the start.
    "missed": ({"scheduled", "in_progress"}, BOTH),
    # "Only completed sessions, only participants, one rating per person per session."
    "rate": ({"completed"}, BOTH),
}
ANSWERS = ("approve", "decline", "withdraw")

# When each action is tried, relative to the session's start, so that its time rule
# holds and the status alone decides.
MOMENTS = {
    "confirm": -72 * H, "start": timedelta(0), "join": 5 * M, "request_reschedule": -72 * H,
    # Requests are made at start − 72 h; their deadline is 24 h later.
    "approve": -71 * H, "decline": -71 * H, "withdraw": -71 * H,
    "cancel": -48 * H, "complete": 30 * M, "notes": 2 * H, "missed": 20 * M, "rate": 2 * H,
}

ALLOWED = "allowed"
REFUSED_STATE = frozenset({409})  # "An illegal transition … is answered … (409)"
# SPEC does not say which code a participant gets for an action that belongs to the other
# role; 403 and 409 are both a refusal that changes nothing.
REFUSED_ROLE = frozenset({403, 409})
NOT_FOUND = frozenset({404})  # "Someone who is not a participant gets 404"

# A decided (declined) request exists for every status a session reaches after being
# scheduled; pending_payment and expired sessions never had one.
HISTORY = {"scheduled", "in_progress", "completed", "cancelled", "missed"}


def expected(status: str, action: str, role: str):
    if role == "stranger":
        return NOT_FOUND
    if action in ANSWERS and status not in HISTORY | {"reschedule_requested"}:
        return NOT_FOUND  # there is no request at all to answer
    statuses, roles = SPEC_RULES[action]
    if role not in roles:
        return REFUSED_ROLE
    return ALLOWED if status in statuses else REFUSED_STATE


def send(browser: Browser, action: str, session_id: int, request_id: int | None,
         to: datetime):
    base = f"/sessions/{session_id}"
    if action in ANSWERS:
        return browser.post(f"/sessions/reschedule/{request_id or 999999}/{action}",
                            {"note": "Noted."})
    url, data = {
        "confirm": (f"{base}/confirm-attendance", {}),
        "start": (f"{base}/start", {}),
        "join": (f"{base}/join", {}),
        "request_reschedule": (f"{base}/reschedule", {"new_start": to.isoformat(),
                                                      "reason": "I have a doctor's visit."}),
        "cancel": (f"{base}/cancel", {"reason": "Something came up."}),
        "complete": (f"{base}/complete", {"notes": ""}),
        "notes": (f"{base}/notes", {"notes": "We covered the past tense."}),
        "missed": (f"{base}/missed", {"missed_by": "student", "reason": "Did not come."}),
        "rate": (f"{base}/rate", {"stars": "4", "feedback": "Good", "would_recommend": "y"}),
    }[action]
    return browser.post(url, data)


def check_allowed(app, action, role, session_id, before, response, to) -> list[str]:
    """The action did what SPEC says it does; returns what went wrong."""
    after = fetch(app, session_id)
    status = after["session"][0]
    joined = {"student": after["session"][5], "coach": after["session"][6]}
    notes = {"student": after["session"][8], "coach": after["session"][9]}
    requests = {rid: state for rid, state, _ in after["requests"]}
    if action == "join":
        meeting = app.config["MEETING_BASE_URL"]
        ok = (response.status_code == 303 and status == "in_progress" and joined[role]
              and response.headers.get("Location", "").startswith(meeting + "/skileez-"))
    elif response.status_code != 303:
        ok = False
    elif action == "confirm":
        ok = after["session"][3] is True and status == before["session"][0]
    elif action in ANSWERS:
        outcome = {"approve": "approved", "decline": "declined", "withdraw": "withdrawn"}
        ok = (status == "scheduled" and outcome[action] in requests.values()
              and after["session"][1] == (to if action == "approve" else before["session"][1]))
    elif action == "notes":
        ok = status == "completed" and notes[role] == "We covered the past tense."
    elif action == "rate":
        ok = status == "completed" and after["ratings"] == before["ratings"] + 1
    else:
        ok = status == {"start": "in_progress", "request_reschedule": "reschedule_requested",
                        "cancel": "cancelled", "complete": "completed",
                        "missed": "missed"}[action]
    return [] if ok else [f"{action} by the {role}: HTTP {response.status_code}, "
                          f"session now {status}"]


@pytest.mark.parametrize("status", STATUSES)
def test_every_action_in_every_status_for_every_role(app, clock, booked, people, status):
    cells = [(action, role) for action in SPEC_RULES for role in ("student", "coach",
                                                                    "stranger")]
    allowed = [cell for cell in cells if expected(status, *cell) == ALLOWED]
    # One session for all the refusals, and a fresh one for each action that succeeds.
    unpaid = status in ("pending_payment", "expired")
    ids = [booked(i, paid=not unpaid) for i in range(1 + len(allowed))]
    for index, session_id in enumerate(ids):
        if status == "expired":
            expire(app, clock, session_id)
        elif status != "pending_payment":
            drive(app, clock, session_id, status, to=target(index),
                  history=index == 0 and status in HISTORY)
    assert {status_of(app, session_id) for session_id in ids} == {status}
    base = ids[0]
    fresh = dict(zip(allowed, ids[1:], strict=True))

    problems = []
    for action, role in cells:
        want = expected(status, action, role)
        session_id = fresh.get((action, role), base)
        index = ids.index(session_id)
        request = pending_request(app, session_id)
        if request is None:
            with app.app_context():
                request = db.session.scalar(select(RescheduleRequest).where(
                    RescheduleRequest.session_id == session_id))
        with app.app_context():
            starts_at = db.session.get(Session, session_id).starts_at
        clock.freeze(starts_at + MOMENTS[action])
        proposed = target(index)  # free for a new request; what crafted requests proposed
        before = fetch(app, session_id)
        response = send(people[role], action, session_id,
                        request.id if request else None, proposed)
        if want == ALLOWED:
            problems += check_allowed(app, action, role, session_id, before, response,
                                      proposed)
            continue
        if response.status_code not in want:
            problems.append(f"{action} by the {role}: HTTP {response.status_code}, "
                            f"expected {sorted(want)}")
        after = fetch(app, session_id)
        if after != before:
            changed = {key: (before[key], after[key]) for key in before
                       if before[key] != after[key]}
            problems.append(f"{action} by the {role} was refused but changed {changed}")
    assert problems == [], "\n".join(problems)


# --- the time rules at their exact edges -----------------------------------------------------

def test_start_window_opens_5_minutes_before_and_closes_15_after(app, clock, booked, people):
    early, late = booked(0), booked(1)
    for session_id, moment, code in ((early, -5 * M - S1, 409), (early, -5 * M, 303),
                                     (late, 15 * M + S1, 409), (late, 15 * M, 303)):
        clock.freeze(slot(0 if session_id == early else 1) + moment)
        before = fetch(app, session_id)
        response = people["student"].post(f"/sessions/{session_id}/start")
        assert response.status_code == code, moment
        if code == 409:
            assert fetch(app, session_id) == before, moment
        else:
            assert status_of(app, session_id) == "in_progress", moment


NOTICE_CASES = {
    # role: [(time left before the start, allowed, late)]
    "coach": [(48 * H + S1, True, False), (48 * H, True, False), (48 * H - S1, False, None)],
    "student": [(24 * H + S1, True, False), (24 * H, True, False), (24 * H - S1, True, True),
                (10 * H + S1, True, True), (10 * H, True, True), (10 * H - S1, False, None)],
}


@pytest.mark.parametrize("role", sorted(NOTICE_CASES))
def test_reschedule_notice_edges(app, clock, booked, people, role):
    session_id = booked(0)
    url = f"/sessions/{session_id}/reschedule"
    for left, allowed, late in NOTICE_CASES[role]:
        clock.freeze(slot(0) - left)
        before = fetch(app, session_id)
        response = people[role].post(url, {"new_start": target(0).isoformat(),
                                           "reason": "I have a doctor's visit."})
        if not allowed:
            assert response.status_code == 409, left
            assert fetch(app, session_id) == before, left
            continue
        assert response.status_code == 303, (left, response.get_data(as_text=True)[:2000])
        request = pending_request(app, session_id)
        assert request is not None and request.late is late, left
        assert status_of(app, session_id) == "reschedule_requested"
        # Take it back so the next attempt starts from a scheduled session again.
        assert people[role].post(f"/sessions/reschedule/{request.id}/withdraw") \
            .status_code == 303
        assert status_of(app, session_id) == "scheduled"


@pytest.mark.parametrize(("left", "late"), [
    pytest.param(24 * H + S1, False, id="24h+1s"),
    pytest.param(24 * H, False, id="exactly-24h"),
    pytest.param(24 * H - S1, True, id="24h-1s"),
])
def test_late_cancellation_edge(app, clock, booked, people, left, late):
    by_student, by_coach = booked(0), booked(1)
    for index, (role, session_id) in enumerate((("student", by_student),
                                                 ("coach", by_coach))):
        clock.freeze(slot(index) - left)
        url = f"/sessions/{session_id}/cancel"
        assert people[role].post(url, {"reason": "Ill."}).status_code == 303, role
        with app.app_context():
            stored = db.session.get(Session, session_id)
            assert (stored.status, stored.late) == ("cancelled", late), role
    student_money, coach_money = money(app, by_student), money(app, by_coach)
    # The coach's cancellation always refunds everything.
    assert coach_money == {"status": "refunded", "refunded": PRICE, "release_at": None,
                           "ledger": ["payment_held", "refund"], "refund rows": 1}
    if late:  # 0%: the coach is paid on the normal release schedule
        assert student_money == {"status": "held", "refunded": 0,
                                 "release_at": slot(0) + 24 * H,
                                 "ledger": ["payment_held"], "refund rows": 0}
    else:
        assert student_money == {"status": "refunded", "refunded": PRICE, "release_at": None,
                                 "ledger": ["payment_held", "refund"], "refund rows": 1}


def test_mark_missed_opens_15_minutes_after_the_start(app, clock, booked, people):
    never_started, started = booked(0), booked(1)
    drive(app, clock, started, "in_progress", to=target(1))
    for index, session_id in enumerate((never_started, started)):
        url = f"/sessions/{session_id}/missed"
        data = {"missed_by": "student", "reason": "Did not come."}
        clock.freeze(slot(index) + 15 * M - S1)
        before = fetch(app, session_id)
        assert people["coach"].post(url, data).status_code == 409
        assert fetch(app, session_id) == before
        clock.freeze(slot(index) + 15 * M)
        assert people["coach"].post(url, data).status_code == 303
        assert status_of(app, session_id) == "missed"
        assert money(app, session_id)["refunded"] == PRICE  # missed by the student: 100%


def test_workers_close_sessions_exactly_30_minutes_after_the_end(app, clock, booked):
    in_progress, never_started = booked(0), booked(2)  # 08:00 and 12:00 UTC on Mon 16
    drive(app, clock, in_progress, "in_progress", to=target(0))
    end_of = {in_progress: slot(0) + H, never_started: slot(2) + H}

    clock.freeze(end_of[in_progress] + 30 * M - S1)
    assert run_sweep(app)["auto_complete"] == 0
    assert status_of(app, in_progress) == "in_progress"
    clock.freeze(end_of[in_progress] + 30 * M)
    assert run_sweep(app)["auto_complete"] == 1
    with app.app_context():
        stored = db.session.get(Session, in_progress)
        assert (stored.status, stored.completed_by_id) == ("completed", None)
    assert money(app, in_progress)["release_at"] == clock.now() + 24 * H

    clock.freeze(end_of[never_started] + 30 * M - S1)
    assert run_sweep(app)["auto_missed"] == 0
    assert status_of(app, never_started) == "scheduled"
    clock.freeze(end_of[never_started] + 30 * M)
    assert run_sweep(app)["auto_missed"] == 1
    with app.app_context():
        stored = db.session.get(Session, never_started)
        assert (stored.status, stored.missed_by) == ("missed", "unattended")
    assert money(app, never_started)["status"] == "refunded"


@pytest.mark.parametrize("outcome", ["auto_approved", "auto_declined"])
def test_unanswered_reschedule_is_decided_exactly_at_its_deadline(
        app, clock, booked, people, coaching, make_user, make_contract, paid_session,
        outcome):
    session_id = booked(0)
    clock.freeze(T0)
    url = f"/sessions/{session_id}/reschedule"
    assert people["student"].post(url, {"new_start": target(0).isoformat(),
                                         "reason": "I have a doctor's visit."}) \
        .status_code == 303
    request = pending_request(app, session_id)
    assert request.deadline == T0 + 24 * H
    if outcome == "auto_declined":  # someone else takes the proposed time meanwhile
        clock.freeze(T0 + 2 * H)
        other = make_user(email="olga@example.com", timezone="Europe/Berlin")
        paid_session(other, make_contract(other, coaching["offering"]), target(0))

    clock.freeze(request.deadline - S1)
    assert run_sweep(app)["decide_reschedule_requests"] == 0
    assert pending_request(app, session_id) is not None
    clock.freeze(request.deadline)
    assert run_sweep(app)["decide_reschedule_requests"] == 1
    with app.app_context():
        decided = db.session.get(RescheduleRequest, request.id)
        stored = db.session.get(Session, session_id)
        assert (decided.status, decided.decided_at) == (outcome, request.deadline)
        assert stored.status == "scheduled"
        moved_to = target(0) if outcome == "auto_approved" else slot(0)
        assert (stored.starts_at, stored.ends_at) == (moved_to, moved_to + H)
        assert stored.payment.status == "held"  # the escrowed payment follows the session
    assert notifications(app, "reschedule_auto_decided") == 2  # both people are told


@pytest.mark.parametrize("who", ["coach", "worker"])
def test_a_free_proposed_time_can_still_be_approved_near_the_start(app, clock, booked, people,
                                                                   who):
    session_id = booked(0)  # Mon 16 Mar 08:00 UTC
    proposed = slot(2)  # the same day at 12:00: 24 h after the request, free for both
    clock.freeze(slot(0) - 20 * H)  # a late request by the student, capped deadline 07:00
    assert people["student"].post(f"/sessions/{session_id}/reschedule", {
        "new_start": proposed.isoformat(), "reason": "I have a doctor's visit."}) \
        .status_code == 303
    request = pending_request(app, session_id)
    if who == "coach":
        clock.freeze(request.deadline - H)  # 5 h before the proposed time
        response = people["coach"].post(f"/sessions/reschedule/{request.id}/approve",
                                        {"note": ""})
        assert response.status_code == 303
        outcome = "approved"
    else:
        clock.freeze(request.deadline)  # 5 h before the proposed time
        assert run_sweep(app)["decide_reschedule_requests"] == 1
        outcome = "auto_approved"
    with app.app_context():
        assert db.session.get(RescheduleRequest, request.id).status == outcome
        assert db.session.get(Session, session_id).starts_at == proposed


def test_reschedule_deadline_is_capped_one_hour_before_the_start(app, clock, booked, people):
    session_id = booked(0)
    url = f"/sessions/{session_id}/reschedule"
    data = {"new_start": target(0).isoformat(), "reason": "I have a doctor's visit."}
    # 30 h before: 24 h after the request is still before the cap.
    clock.freeze(slot(0) - 30 * H)
    assert people["student"].post(url, data).status_code == 303
    request = pending_request(app, session_id)
    assert request.deadline == slot(0) - 30 * H + 24 * H
    assert people["student"].post(f"/sessions/reschedule/{request.id}/withdraw") \
        .status_code == 303
    # 20 h before: request + 24 h would be after the start; the cap is start − 1 h.
    clock.freeze(slot(0) - 20 * H)
    assert people["student"].post(url, data).status_code == 303
    request = pending_request(app, session_id)
    assert request.late is True
    assert request.deadline == slot(0) - H
    clock.freeze(slot(0) - H - S1)
    assert run_sweep(app)["decide_reschedule_requests"] == 0
    clock.freeze(slot(0) - H)
    assert run_sweep(app)["decide_reschedule_requests"] == 1
    with app.app_context():
        assert db.session.get(RescheduleRequest, request.id).status == "auto_approved"
        assert db.session.get(Session, session_id).starts_at == target(0)


# --- two people at once ----------------------------------------------------------------------

def race(*calls):
    """Run the calls at the same moment in threads; return their responses in order."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as error:  # surfaced by the assertion below
            results[index] = error

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert not any(isinstance(result, BaseException) for result in results), results
    return results


ROUNDS = 3


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_complete_and_cancel_at_once_have_one_winner(app, clock, booked, people):
    ids = [booked(i) for i in range(ROUNDS)]
    outcomes = []
    for index, session_id in enumerate(ids):
        clock.freeze(slot(index) + 10 * M)  # scheduled, start passed: both are legal alone
        complete, cancel = race(
            lambda s=session_id: people["student"].post(f"/sessions/{s}/complete",
                                                        {"notes": ""}),
            lambda s=session_id: people["coach"].post(f"/sessions/{s}/cancel",
                                                      {"reason": "Ill."}))
        codes = sorted((complete.status_code, cancel.status_code))
        assert codes == [303, 409], (complete.status_code, cancel.status_code)
        status = status_of(app, session_id)
        won = "completed" if complete.status_code == 303 else "cancelled"
        assert status == won
        outcomes.append(status)
        paid = money(app, session_id)
        if status == "completed":  # release scheduled, nothing refunded
            assert paid == {"status": "held", "refunded": 0,
                            "release_at": clock.now() + 24 * H,
                            "ledger": ["payment_held"], "refund rows": 0}
        else:  # the coach cancelled: full refund, no release
            assert paid == {"status": "refunded", "refunded": PRICE, "release_at": None,
                            "ledger": ["payment_held", "refund"], "refund rows": 1}
        with app.app_context():
            moves = db.session.scalars(select(AuditEvent.to_state).where(
                AuditEvent.object_type == "sessions", AuditEvent.object_id == session_id,
                AuditEvent.from_state == "scheduled")).all()
            assert moves == [status]


@pytest.mark.parametrize("rival", ["approve", "withdraw"])
@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_answering_one_reschedule_request_twice_at_once(app, clock, booked, people, rival):
    """The coach approves in two tabs at once (or the student withdraws meanwhile)."""
    second_tab = Browser(app, "clara@example.com")
    rival_browser = second_tab if rival == "approve" else people["student"]
    for index in range(ROUNDS):
        session_id = booked(index)
        clock.freeze(slot(index) - 72 * H)
        assert people["student"].post(f"/sessions/{session_id}/reschedule", {
            "new_start": target(index).isoformat(),
            "reason": "I have a doctor's visit."}).status_code == 303
        request = pending_request(app, session_id)
        approvals_before = notifications(app, "reschedule_approved")
        first, second = race(
            lambda r=request: people["coach"].post(f"/sessions/reschedule/{r.id}/approve",
                                                   {"note": ""}),
            lambda r=request: rival_browser.post(f"/sessions/reschedule/{r.id}/{rival}",
                                                 {"note": ""}))
        assert sorted((first.status_code, second.status_code)) == [303, 409]
        approved = first.status_code == 303 or rival == "approve"
        with app.app_context():
            decided = db.session.get(RescheduleRequest, request.id)
            stored = db.session.get(Session, session_id)
            assert decided.status == ("approved" if approved else "withdrawn")
            assert stored.status == "scheduled"
            assert stored.starts_at == (target(index) if approved else slot(index))
            request_moves = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                              .where(AuditEvent.object_type ==
                                                     "reschedule_requests",
                                                     AuditEvent.object_id == request.id,
                                                     AuditEvent.from_state == "pending"))
            session_moves = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                              .where(AuditEvent.object_type == "sessions",
                                                     AuditEvent.object_id == session_id,
                                                     AuditEvent.from_state ==
                                                     "reschedule_requested"))
            assert (request_moves, session_moves) == (1, 1)
        assert notifications(app, "reschedule_approved") - approvals_before == int(approved)
        assert money(app, session_id)["status"] == "held"
