"""A Hypothesis state machine over the whole session life cycle and the money behind it.

Two students, each with a contract with one coach, book, pay (and fail to pay),
confirm, start, join, reschedule, cancel, complete, miss, rate and dispute sessions,
an admin resolves disputes, and the clock moves (by random amounts, or straight to a
moment that matters for some session: its start window, a notice limit, a hold's or a
request's deadline, the escrow release) with the sweep acting on every deadline.

Each action is predicted from the rules in SPEC.md before it runs: a legal one must
succeed; an illegal one must be refused with ``Conflict`` (illegal now) or
``DomainError`` (bad input) and must change nothing at all. After every step the
books, the calendar, the money of every payment, the ratings and the contracts are
checked, and after every sweep nothing that is due is left undone.

Actions are grouped into ten rules (book, payment, attend, reschedule, cancel, finish,
rate, dispute, time, connect): Hypothesis switches whole rules off per example (swarm
testing), and with 25 examples of 30 steps, long chains such as book → pay → start →
complete → dispute → resolve are only reached when few rules have to be switched on.

Holds that have run out but that no sweep has expired yet get particular attention
(``time_passes`` can let minutes go by without a sweep): paying for one, booking
around one and moving a session onto one are all exercised; the regression tests at
the end pin down each case the machine found.

Run with ``-s`` to see how often each action ran and how it ended (all examples).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from skileez import clock
from skileez.auth.models import User
from skileez.coaches.availability import coach_open_slots
from skileez.coaches.models import CoachProfile
from skileez.contracts.models import Contract
from skileez.core.errors import Conflict, DomainError
from skileez.core.money import share
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.payments import ledger
from skileez.payments.attempts import provider_call
from skileez.payments.models import (
    Dispute,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Payout,
    Refund,
)
from skileez.payments.operations import (
    ensure_payment_intent,
    open_dispute,
    payment_failed,
    payment_succeeded,
    resolve_dispute,
)
from skileez.policy import get_policy
from skileez.sessions import operations as ops
from skileez.sessions.models import RELEASED_STATUSES, Rating, RescheduleRequest, Session
from tests.conftest import _empty_all_tables

START = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin
BOOKING_WINDOW = timedelta(days=8)  # open slots are drawn from [now, now + this)
PRICE = 4999  # odd, so fees and partial refunds round
IN_ESCROW = ("held", "partially_refunded", "disputed")
ROLES = ("student", "coach", "outsider")
REASONS = ("My train was cancelled, sorry.", "  Need to move it, sorry  ", "too short")
OK, CONFLICT, INVALID = "ok", "conflict", "invalid"

MACHINE_SETTINGS = settings(
    max_examples=25, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

CLOCK_STEPS = st.one_of(
    st.integers(1, 59).map(lambda n: timedelta(minutes=n)),
    st.integers(1, 23).map(lambda n: timedelta(hours=n)),
    st.integers(1, 3).map(lambda n: timedelta(days=n)),
)

STATS: Counter = Counter()


def _record(name: str, outcome: str) -> None:
    STATS[(name, outcome)] += 1
    event(f"{name}: {outcome}")


# --- what a session is, as the model sees it ----------------------------------------------

def _stale_hold(session: Session, now: datetime) -> bool:
    """An unpaid hold that has run out but that no sweep has expired yet."""
    return session.status == "pending_payment" and session.hold_expires_at <= now


def _is_live(session: Session, now: datetime) -> bool:
    """Holds its place: not released, and not an unpaid hold that has run out."""
    return session.status not in RELEASED_STATUSES and not _stale_hold(session, now)


def _status(*statuses: str):
    return lambda session, now: session.status in statuses


def _unpaid_hold(session: Session, now: datetime) -> bool:
    return session.status == "pending_payment" and session.hold_expires_at > now


def _late_to_pay(session: Session, now: datetime) -> bool:
    return session.status == "expired" or _stale_hold(session, now)


def _span(delta: timedelta) -> str:
    if delta >= timedelta(days=1):
        return "days"
    return "hours" if delta >= timedelta(hours=1) else "minutes"


def _classify(error: Exception | None) -> str:
    if error is None:
        return OK
    return CONFLICT if isinstance(error, Conflict) else INVALID


def _fingerprint() -> tuple:
    """Everything an action could change; a refused action must leave it as it was."""
    def rows(*columns, order):
        return tuple(tuple(row) for row in db.session.execute(select(*columns).order_by(order)))

    return (
        rows(Session.id, Session.status, Session.starts_at, Session.ends_at,
             Session.confirmed_by_coach, Session.student_joined_at, Session.coach_joined_at,
             Session.completed_at, Session.missed_by, Session.cancelled_by_id,
             order=Session.id),
        rows(Payment.id, Payment.status, Payment.refunded_minor, Payment.release_at,
             Payment.released_at, order=Payment.id),
        rows(RescheduleRequest.id, RescheduleRequest.status, RescheduleRequest.approved_start,
             order=RescheduleRequest.id),
        rows(Rating.id, Rating.session_id, Rating.rater_id, order=Rating.id),
        rows(Dispute.id, Dispute.status, Dispute.resolution, order=Dispute.id),
        rows(Payout.id, Payout.status, order=Payout.id),
        rows(Refund.id, Refund.status, order=Refund.id),
        rows(LedgerTransaction.id, LedgerTransaction.kind, order=LedgerTransaction.id),
        rows(Contract.id, Contract.status, order=Contract.id),
    )


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self, app, make_user, make_offering, add_hours, make_contract):
        super().__init__()
        self.app = app
        _empty_all_tables(app)
        clock.freeze(START)
        coach = make_user("coach", name="Clara Coach", timezone="Europe/Berlin")
        sam = make_user(name="Sam Student", timezone="America/New_York")
        kim = make_user(name="Kim Student", timezone="Europe/Berlin")
        admin = make_user("admin", name="Ada Admin", timezone="UTC")
        offering = make_offering(coach, duration=60, price=PRICE, currency="EUR")
        add_hours(coach, [0, 1, 2, 3, 4], "09:00", "17:00")
        self.coach_id = coach.id
        self.admin_id = admin.id
        self.student_ids = (sam.id, kim.id)
        self.contract_ids = {sam.id: make_contract(sam, offering, sessions=3).id,
                             kim.id: make_contract(kim, offering, sessions=2).id}
        self.connected = False
        self.seen: Counter = Counter()  # what exists now; refreshed after every step
        with app.app_context():
            self.policy = get_policy()

    def teardown(self):
        with self.app.app_context():
            db.session.remove()
        clock.unfreeze()

    # --- choosing ----------------------------------------------------------------------

    def _any(self, *flags: str) -> bool:
        return any(self.seen[flag] for flag in flags)

    def _choose(self, data, actions: dict[str, bool], label: str) -> str:
        """An action whose state allows it, most often; any action now and then."""
        useful = [name for name, applies in actions.items() if applies]
        choices = [st.sampled_from(useful)] * 2 if useful else []
        return data.draw(st.one_of(*choices, st.sampled_from(list(actions))), label=label)

    def _pick(self, data, model, *tiers, label: str) -> int | None:
        """A row meeting the first test in ``tiers`` most often, later tests less often,
        and any row now and then, so illegal attempts are made too."""
        now = clock.now()
        with self.app.app_context():
            everything = db.session.scalars(select(model).order_by(model.id)).all()
            lists = [[row.id for row in everything if test(row, now)] for test in tiers]
            ids = [row.id for row in everything]
        choices = [st.sampled_from(found) for found in lists if found]
        choices = choices[:1] + choices
        if ids:
            choices.append(st.sampled_from(ids))
        return data.draw(st.one_of(*choices), label=label) if choices else None

    def _startable(self, session: Session, now: datetime) -> bool:
        return session.status == "scheduled" \
            and session.starts_at - self.policy.start_window_before <= now \
            <= session.starts_at + self.policy.start_window_after

    def _completable(self, session: Session, now: datetime) -> bool:
        return session.status == "in_progress" or (session.status == "scheduled"
                                                   and now >= session.starts_at)

    def _missable(self, session: Session, now: datetime) -> bool:
        return session.status in ("scheduled", "in_progress") \
            and now >= session.starts_at + self.policy.mark_missed_after_start

    @staticmethod
    def _disputable(session: Session, now: datetime) -> bool:
        payment = session.payment
        return session.status == "completed" and payment.status == "held" \
            and payment.release_at is not None and now < payment.release_at

    @staticmethod
    def _unconfirmed(session: Session, now: datetime) -> bool:
        return session.status == "scheduled" and not session.confirmed_by_coach

    def _actor(self, session: Session, who: str) -> User:
        if who == "student":
            return session.student
        if who == "coach":
            return session.coach
        other = next(sid for sid in self.student_ids if sid != session.student_id)
        return db.session.get(User, other)

    # --- running and judging -------------------------------------------------------------

    @staticmethod
    def _run(action) -> Exception | None:
        """Run one operation as a request does: commit on success, roll back on refusal."""
        try:
            action()
        except DomainError as error:
            db.session.rollback()
            return error
        db.session.commit()
        return None

    def _snapshot(self) -> tuple:
        with self.app.app_context():
            return _fingerprint()

    def _settle(self, name: str, expected: str, error: Exception | None, before: tuple,
                why: str) -> bool:
        """Compare the outcome with the prediction; a refusal must have changed nothing."""
        outcome = _classify(error)
        detail = f" ({error})" if error is not None else ""
        assert outcome == expected, (f"{name}: expected {expected} but got {outcome}{detail}; "
                                     f"the model said: {why}")
        if error is not None:
            with self.app.app_context():
                assert _fingerprint() == before, f"{name} was refused but changed something"
        _record(name, OK if error is None else f"refused ({outcome})")
        return error is None

    @staticmethod
    def _slot_free(session: Session, start: datetime) -> bool:
        """The question the operations ask: is ``start`` open for this session to move to?"""
        return start in coach_open_slots(session.coach, session.duration, start,
                                         start + timedelta(seconds=1),
                                         student_id=session.student_id,
                                         exclude_session_id=session.id, ignore_notice=True)

    @staticmethod
    def _move_targets(session: Session, now: datetime) -> list[datetime]:
        return coach_open_slots(session.coach, session.duration, now, now + BOOKING_WINDOW,
                                student_id=session.student_id, exclude_session_id=session.id,
                                ignore_notice=True)

    # --- rule: book ----------------------------------------------------------------------

    @initialize(data=st.data())
    def first_bookings(self, data):
        """Each student starts with a paid booking, whichever rules the example switches off
        (without this, the half of the examples that switch ``book`` off book nothing)."""
        for student_id in self.student_ids:
            session_id = self._book(data, "book and pay", only_open=True,
                                    student_id=student_id)
            if session_id is not None:
                self._pay(session_id, "book and pay")

    @rule(data=st.data())
    def book(self, data):
        """Book and pay at once (the usual saga), or only book: an open slot, a taken one,
        or one inside the coach's minimum notice."""
        how = self._choose(data, {"book and pay": self._any("room"), "book": True}, "how")
        session_id = self._book(data, how, only_open=how == "book and pay")
        if how == "book and pay" and session_id is not None:
            self._pay(session_id, how)

    def _book(self, data, name: str, only_open: bool, student_id: int | None = None
              ) -> int | None:
        if student_id is None:
            students = list(self.student_ids)
            if only_open:
                students = [sid for sid in students if self.seen[f"room {sid}"]] or students
            student_id = data.draw(st.sampled_from(students), label="student")
        before = self._snapshot()
        with self.app.app_context():
            student = db.session.get(User, student_id)
            contract = db.session.get(Contract, self.contract_ids[student_id])
            now = clock.now()
            duration = timedelta(minutes=contract.duration_minutes)
            open_now = coach_open_slots(contract.coach, duration, now, now + BOOKING_WINDOW,
                                        student_id=student_id)
            options = [st.sampled_from(open_now)] if open_now else []
            if not only_open:
                taken = sorted({s.starts_at + offset
                                for s in db.session.scalars(select(Session))
                                if s.status not in RELEASED_STATUSES
                                for offset in (timedelta(0), timedelta(minutes=30))})
                options += [st.sampled_from(taken)] if taken else []
                options.append(st.just(now + timedelta(hours=2)))  # within the notice
            if not options:
                return None
            starts_at = data.draw(st.one_of(*options), label="starts_at")
            is_open = starts_at in coach_open_slots(contract.coach, duration, starts_at,
                                                    starts_at + timedelta(seconds=1),
                                                    student_id=student_id)
            # A hold that ran out frees its place even before a sweep expires it.
            places = sum(_is_live(s, now) for s in contract.sessions)
            legal = contract.status == "active" and places < contract.total_sessions \
                and is_open
            why = (f"contract {contract.status}, {places}/{contract.total_sessions} places "
                   f"used, slot open: {is_open}")
            error = self._run(lambda: ops.book(student, contract.id, starts_at))
        if not self._settle(name, OK if legal else CONFLICT, error, before, why):
            return None
        with self.app.app_context():
            session = db.session.scalar(select(Session).order_by(Session.id.desc()))
            assert (session.starts_at, session.status) == (starts_at, "pending_payment")
            assert session.hold_expires_at == now + self.policy.payment_hold
            assert (session.payment.status, session.payment.amount_minor) == ("pending", PRICE)
            return session.id

    # --- rule: payment -------------------------------------------------------------------

    @precondition(lambda self: self._any("pending_payment", "expired"))
    @rule(data=st.data())
    def payment(self, data):
        """The test gateway's card page: the handlers a Stripe webhook reaches."""
        outcome = data.draw(st.sampled_from(["pay", "fail payment"]), label="outcome")
        session_id = self._pick(data, Session, _unpaid_hold, _late_to_pay, label="session")
        if outcome == "pay":
            self._pay(session_id, outcome)
        else:
            self._fail_payment(session_id)

    def _pay(self, session_id: int, name: str) -> None:
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            stale = _stale_hold(session, clock.now())
            with provider_call():  # a network call, between two commits as the pay page makes it
                ensure_payment_intent(session.payment)
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            payment = session.payment
            old_payment, old_session = payment.status, session.status
            result = payment_succeeded(payment.payment_intent_id,
                                       charge_id=f"ch_test_{payment.id}")
            db.session.commit()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            if old_payment not in ("pending", "failed"):
                assert result == "already recorded"
                assert _fingerprint() == before, "a repeated payment changed something"
            elif old_session == "pending_payment" and not stale:
                assert result == "held"
                assert (session.status, session.payment.status) == ("scheduled", "held")
            else:
                # SPEC: "a payment that succeeds after expiry is refunded automatically".
                assert result == "refunded late payment", (
                    f"paid after the hold ran out (session {old_session}): {result!r}")
                assert session.status == "expired" and session.payment.status == "refunded"
        _record(name, result)

    def _fail_payment(self, session_id: int) -> None:
        with self.app.app_context(), provider_call():
            ensure_payment_intent(db.session.get(Session, session_id).payment)
        before = self._snapshot()
        with self.app.app_context():
            payment = db.session.get(Session, session_id).payment
            old = payment.status
            result = payment_failed(payment.payment_intent_id, "Your card was declined.")
            db.session.commit()
        with self.app.app_context():
            payment = db.session.get(Session, session_id).payment
            if old in ("pending", "failed"):
                assert (result, payment.status) == ("failed", "failed")
                assert payment.session.status in ("pending_payment", "expired")
            else:
                assert result == "ignored: already paid"
                assert _fingerprint() == before
        _record("fail payment", result)

    # --- rule: attend (confirm, start, join) ----------------------------------------------

    @precondition(lambda self: self._any("scheduled", "in_progress"))
    @rule(data=st.data(), who=st.sampled_from(ROLES))
    def attend(self, data, who):
        action = self._choose(data, {"confirm": self._any("unconfirmed"),
                                     "start": self._any("startable"),
                                     "join": self._any("in_progress")}, "action")
        tests = {"confirm": self._unconfirmed, "start": self._startable,
                 "join": _status("in_progress")}
        session_id = self._pick(data, Session, tests[action], label="session")
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            actor = self._actor(session, who)
            now = clock.now()
            opens, closes = (session.starts_at - self.policy.start_window_before,
                             session.starts_at + self.policy.start_window_after)
            legal = {
                "confirm": who == "coach" and self._unconfirmed(session, now),
                "start": who != "outsider" and session.status == "scheduled"
                and opens <= now <= closes,
                "join": who != "outsider" and session.status == "in_progress",
            }[action]
            first_join = legal and getattr(session, f"{who}_joined_at", None) is None
            why = f"{who}, {session.status}, starts {session.starts_at}, now {now}"
            operation = {"confirm": ops.confirm, "start": ops.start, "join": ops.join}[action]
            error = self._run(lambda: operation(session, actor))
        if not self._settle(action, OK if legal else CONFLICT, error, before, why):
            return
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            if action == "confirm":
                assert session.confirmed_by_coach
            elif action == "start":
                assert (session.status, session.started_at) == ("in_progress", now)
            if action != "confirm" and first_join:
                assert getattr(session, f"{who}_joined_at") == now

    # --- rule: reschedule (request, approve, decline, withdraw) ---------------------------

    @precondition(lambda self: self._any("scheduled", "request pending"))
    @rule(data=st.data(), who=st.sampled_from(ROLES))
    def reschedule(self, data, who):
        pending = self._any("request pending")
        action = self._choose(data, {"request reschedule": self._any("scheduled"),
                                     "approve reschedule": pending,
                                     "decline reschedule": pending,
                                     "withdraw reschedule": pending}, "action")
        if action == "request reschedule":
            self._request_reschedule(data, who)
            return
        request_id = self._pick(data, RescheduleRequest, lambda r, now: r.status == "pending",
                                label="request")
        if request_id is not None:
            self._answer_reschedule(data, who, action, request_id)

    def _request_reschedule(self, data, who: str) -> None:
        session_id = self._pick(data, Session, _status("scheduled"), label="session")
        reason = data.draw(st.sampled_from(REASONS), label="reason")
        policy = self.policy
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            now = clock.now()
            targets = self._move_targets(session, now)
            new_start = data.draw(st.one_of(
                *([st.sampled_from(targets)] * 2 if targets else []),
                st.sampled_from([session.starts_at, session.starts_at + timedelta(minutes=10),
                                 now + timedelta(minutes=30)])), label="new_start")
            left = session.starts_at - now
            notice_ok = left >= (policy.reschedule_notice_coach if who == "coach"
                                 else policy.reschedule_notice_student_late_floor)
            late = who == "student" and left < policy.reschedule_notice_student
            good_input = len(reason.strip()) >= policy.reschedule_reason_min_chars \
                and new_start >= now + policy.reschedule_new_time_min_lead \
                and new_start != session.starts_at and self._slot_free(session, new_start)
            if who == "outsider" or session.status != "scheduled" or not notice_ok:
                expected = CONFLICT
            else:
                expected = OK if good_input else INVALID
            why = f"{who}, {session.status}, {left} before the start, good input: {good_input}"
            error = self._run(lambda: ops.request_reschedule(
                session, self._actor(session, who), new_start=new_start, reason=reason))
        if self._settle("request reschedule", expected, error, before, why):
            with self.app.app_context():
                session = db.session.get(Session, session_id)
                request = session.reschedule_requests[-1]
                assert session.status == "reschedule_requested"
                assert (request.status, request.proposed_start, request.late) == \
                    ("pending", new_start, late)
                assert request.deadline == min(
                    now + policy.reschedule_response_window,
                    session.starts_at - policy.reschedule_response_cap_before_start)

    def _answer_reschedule(self, data, who: str, action: str, request_id: int) -> None:
        before = self._snapshot()
        with self.app.app_context():
            request = db.session.get(RescheduleRequest, request_id)
            session = request.session
            actor = self._actor(session, who)
            now = clock.now()
            chosen = None
            if action == "approve reschedule" and data.draw(st.booleans(), label="other time"):
                targets = self._move_targets(session, now)
                chosen = data.draw(st.sampled_from(targets), label="chosen") if targets else None
            target = chosen or request.proposed_start
            if action == "withdraw reschedule":
                expected = OK if actor.id == request.requested_by_id \
                    and request.status == "pending" else CONFLICT
            elif who == "outsider" or actor.id == request.requested_by_id \
                    or request.status != "pending" or now >= request.deadline:
                expected = CONFLICT
            elif action == "decline reschedule":
                expected = OK
            elif target < now + self.policy.reschedule_new_time_min_lead:
                expected = INVALID
            else:
                expected = OK if self._slot_free(session, target) else CONFLICT
            why = f"{who}, request {request.status}, deadline {request.deadline}, now {now}"
            if action == "withdraw reschedule":
                error = self._run(lambda: ops.withdraw_reschedule(request, actor))
            elif action == "decline reschedule":
                error = self._run(lambda: ops.decline_reschedule(request, actor, note="No"))
            else:
                error = self._run(lambda: ops.approve_reschedule(request, actor,
                                                                 chosen_start=chosen))
        if not self._settle(action, expected, error, before, why):
            return
        with self.app.app_context():
            request = db.session.get(RescheduleRequest, request_id)
            session = request.session
            assert session.status == "scheduled"
            if action == "approve reschedule":
                assert (request.status, request.approved_start) == ("approved", target)
                assert session.starts_at == target
            else:
                assert request.status == {"decline reschedule": "declined",
                                          "withdraw reschedule": "withdrawn"}[action]
                assert session.starts_at == request.original_start

    # --- rule: cancel --------------------------------------------------------------------

    @precondition(lambda self: self._any("scheduled", "reschedule_requested"))
    @rule(data=st.data(), who=st.sampled_from(ROLES))
    def cancel(self, data, who):
        session_id = self._pick(data, Session, _status("scheduled", "reschedule_requested"),
                                label="session")
        policy = self.policy
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            now = clock.now()
            legal = who != "outsider" and session.status in ("scheduled",
                                                             "reschedule_requested")
            late = session.starts_at - now < policy.late_cancellation_window  # 24 h is free
            refund_share = policy.refund_coach_cancels if who == "coach" else (
                policy.refund_student_cancels_late if late
                else policy.refund_student_cancels_early)
            remaining = session.payment.remaining_minor
            why = f"{who}, {session.status}"
            error = self._run(lambda: ops.cancel(session, self._actor(session, who),
                                                 reason="Cannot make it"))
        if not self._settle("cancel", OK if legal else CONFLICT, error, before, why):
            return
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            payment = session.payment
            assert (session.status, session.late) == ("cancelled", late)
            assert all(r.status != "pending" for r in session.reschedule_requests)
            assert payment.refunded_minor == share(remaining, refund_share)
            if payment.refunded_minor == payment.amount_minor:
                assert payment.status == "refunded"
            else:  # the coach is paid the rest on the normal schedule
                assert payment.release_at == max(now, session.starts_at) \
                    + policy.escrow_release_delay

    # --- rule: finish (complete, mark missed) ---------------------------------------------

    @precondition(lambda self: self._any("completable", "missable"))
    @rule(data=st.data(), who=st.sampled_from(ROLES))
    def finish(self, data, who):
        action = self._choose(data, {"complete": self._any("completable"),
                                     "mark missed": self._any("missable")}, "action")
        if action == "complete":
            self._complete(data, who)
        else:
            self._mark_missed(data, who)

    def _complete(self, data, who: str) -> None:
        session_id = self._pick(data, Session, self._completable, label="session")
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            now = clock.now()
            legal = who != "outsider" and self._completable(session, now)
            why = f"{who}, {session.status}, starts {session.starts_at}, now {now}"
            error = self._run(lambda: ops.complete(session, actor=self._actor(session, who),
                                                   notes="Worked on the past tense."))
        if self._settle("complete", OK if legal else CONFLICT, error, before, why):
            with self.app.app_context():
                session = db.session.get(Session, session_id)
                assert (session.status, session.completed_at) == ("completed", now)
                assert getattr(session, f"{who}_notes") == "Worked on the past tense."
                assert session.payment.status == "held"
                assert session.payment.release_at == now + self.policy.escrow_release_delay

    def _mark_missed(self, data, who: str) -> None:
        session_id = self._pick(data, Session, self._missable, label="session")
        missed_by = data.draw(st.sampled_from(["student", "coach", "unattended", "someone"]),
                              label="missed_by")
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            now = clock.now()
            if missed_by not in ops.MISSED_REFUND:
                expected = INVALID
            elif who != "outsider" and self._missable(session, now):
                expected = OK
            else:
                expected = CONFLICT
            why = f"{who}, {session.status}, starts {session.starts_at}, now {now}"
            error = self._run(lambda: ops.mark_missed(
                session, missed_by=missed_by, reason="Did not show up",
                actor=self._actor(session, who)))
        if self._settle("mark missed", expected, error, before, why):
            with self.app.app_context():
                session = db.session.get(Session, session_id)
                assert (session.status, session.missed_by) == ("missed", missed_by)
                assert session.payment.status == "refunded"  # 100% by default

    # --- rule: rate ----------------------------------------------------------------------

    @precondition(lambda self: self._any("completed"))
    @rule(data=st.data(), who=st.sampled_from(ROLES), stars=st.integers(0, 6))
    def rate(self, data, who, stars):
        session_id = self._pick(data, Session, _status("completed"), label="session")
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            actor = self._actor(session, who)
            rated = any(r.rater_id == actor.id for r in session.ratings)
            if who == "outsider" or session.status != "completed" or rated:
                expected = CONFLICT
            else:
                expected = OK if 1 <= stars <= 5 else INVALID
            why = f"{who}, {session.status}, already rated: {rated}"
            error = self._run(lambda: ops.rate(session, actor, stars=stars, feedback="Good",
                                               public=True, would_recommend=True,
                                               tags=["patient"]))
        self._settle("rate", expected, error, before, why)

    # --- rule: dispute (open, resolve) ----------------------------------------------------

    @precondition(lambda self: self._any("disputable", "dispute open"))
    @rule(data=st.data())
    def dispute(self, data):
        action = self._choose(data, {"open dispute": self._any("disputable"),
                                     "resolve dispute": self._any("dispute open")}, "action")
        if action == "open dispute":
            self._open_dispute(data)
        else:
            self._resolve_dispute(data)

    def _open_dispute(self, data) -> None:
        session_id = self._pick(data, Session, self._disputable, _status("completed"),
                                label="session")
        who = data.draw(st.sampled_from(ROLES), label="who")
        before = self._snapshot()
        with self.app.app_context():
            session = db.session.get(Session, session_id)
            payment = session.payment
            legal = who == "student" and session.status == "completed" \
                and payment.status in ("held", "partially_refunded") \
                and payment.release_at is not None and clock.now() < payment.release_at
            why = (f"{who}, {session.status}, payment {payment.status}, release at "
                   f"{payment.release_at}, now {clock.now()}")
            error = self._run(lambda: open_dispute(payment, self._actor(session, who),
                                                   reason="The coach left after 20 minutes."))
        if self._settle("open dispute", OK if legal else CONFLICT, error, before, why):
            with self.app.app_context():
                assert db.session.get(Session, session_id).payment.status == "disputed"

    def _resolve_dispute(self, data) -> None:
        dispute_id = self._pick(data, Dispute, lambda d, now: d.status == "open",
                                label="dispute")
        if dispute_id is None:
            return
        resolution = data.draw(st.sampled_from(["release", "refund", "partial", "maybe"]),
                               label="resolution")
        tenths = data.draw(st.sampled_from([0, 1, 3, 7, 10]), label="tenths refunded")
        before = self._snapshot()
        with self.app.app_context():
            dispute = db.session.get(Dispute, dispute_id)
            remaining = dispute.payment.remaining_minor
            amount = remaining * tenths // 10  # 0 and all of it are not "partial"
            if resolution not in ("release", "refund", "partial"):
                expected = INVALID
            elif dispute.status != "open":
                expected = CONFLICT
            elif resolution == "partial" and not 0 < amount < remaining:
                expected = INVALID
            else:
                expected = OK
            why = f"dispute {dispute.status}, {resolution} of {amount}/{remaining}"
            admin = db.session.get(User, self.admin_id)
            error = self._run(lambda: resolve_dispute(dispute, admin, resolution=resolution,
                                                      refund_minor=amount, note="Checked"))
        if self._settle("resolve dispute", expected, error, before, why):
            with self.app.app_context():
                payment = db.session.get(Dispute, dispute_id).payment
                assert payment.status == ("refunded" if resolution == "refund" else "released")
                assert payment.refunded_minor == {"release": 0, "refund": remaining,
                                                  "partial": amount}[resolution]

    # --- rule: connect a payout account ---------------------------------------------------

    @precondition(lambda self: not self.connected)
    @rule()
    def connect_payout_account(self):
        """The coach finishes Stripe onboarding: payable balances can now be transferred."""
        with self.app.app_context():
            profile = db.session.scalar(select(CoachProfile)
                                        .where(CoachProfile.user_id == self.coach_id))
            profile.stripe_account_id = "acct_test_machine"
            profile.payouts_enabled = True
            db.session.commit()
        self.connected = True
        _record("connect payout account", OK)

    # --- rule: time ----------------------------------------------------------------------

    @rule(data=st.data())
    def time_passes(self, data):
        """Straight to a moment that matters for some session (a minute either side), or
        on by minutes to days; then the sweep runs. Or a few minutes pass before the
        next sweep, as they do between a deadline and the worker that acts on it."""
        how = data.draw(st.sampled_from(["to a moment", "to a moment", "advance",
                                         "before the next sweep"]), label="how")
        moments = self._moments()
        if how == "to a moment" and moments:
            attend = [m for m in moments if m[0] in ("start window opens", "start")]
            name, target = data.draw(st.one_of(*([st.sampled_from(attend)] if attend else []),
                                               st.sampled_from(moments)), label="moment")
            clock.advance(target - clock.now())
            self._sweep("time: to a moment", name)
        elif how == "before the next sweep":
            delta = data.draw(st.integers(1, 20), label="minutes")
            clock.advance(timedelta(minutes=delta))
            _record("time: before the next sweep", "minutes")
        else:
            delta = data.draw(CLOCK_STEPS, label="delta")
            clock.advance(delta)
            self._sweep("time: advance", _span(delta))

    def _moments(self) -> list[tuple[str, datetime]]:
        policy = self.policy
        now = clock.now()
        moments = []
        with self.app.app_context():
            for session in db.session.scalars(select(Session).order_by(Session.id)):
                start = session.starts_at
                marks = {
                    "hold expiry": session.hold_expires_at,
                    "48 h before": start - policy.reschedule_notice_coach,
                    "24 h before": start - policy.late_cancellation_window,
                    "10 h before": start - policy.reschedule_notice_student_late_floor,
                    "start window opens": start - policy.start_window_before,
                    "start": start,
                    "start window closes": start + policy.start_window_after,
                    "auto close": session.ends_at + policy.auto_close_after_end,
                    "release": session.payment.release_at,
                }
                for request in session.reschedule_requests:
                    if request.status == "pending":
                        marks["reschedule deadline"] = request.deadline
                moments += [(name, at + timedelta(minutes=offset))
                            for name, at in marks.items() if at is not None
                            for offset in (-1, 0, 1) if at + timedelta(minutes=offset) > now]
        return sorted(moments, key=lambda moment: moment[1])

    def _sweep(self, name: str, outcome: str) -> None:
        with self.app.app_context():
            results = sweep()
        _record(name, outcome)
        for handler, count in results.items():
            if count:
                STATS[(f"sweep: {handler}", "acted on")] += count
        self._nothing_due_is_left()

    def _nothing_due_is_left(self) -> None:
        """After a sweep, every deadline that has passed has been acted on."""
        with self.app.app_context():
            now = clock.now()
            for session in db.session.scalars(select(Session)):
                if session.status == "pending_payment":
                    assert session.hold_expires_at > now, f"hold of {session.id} not expired"
                if session.status in ("scheduled", "reschedule_requested", "in_progress"):
                    assert session.ends_at + self.policy.auto_close_after_end > now, \
                        f"session {session.id} ({session.status}) was not closed"
            for request in db.session.scalars(select(RescheduleRequest)
                                              .where(RescheduleRequest.status == "pending")):
                assert request.deadline > now, f"request {request.id} was not decided"
            for payment in db.session.scalars(select(Payment).where(
                    Payment.status.in_(("held", "partially_refunded")))):
                assert payment.release_at is None or payment.release_at > now, \
                    f"payment {payment.id} was not released at {payment.release_at}"
            for refund in db.session.scalars(select(Refund)):
                assert refund.status == "succeeded", f"refund {refund.id} is {refund.status}"
            for payout in db.session.scalars(select(Payout)):
                assert payout.status == ("paid" if self.connected else "payable"), \
                    f"payout {payout.id} is {payout.status}"

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def observe(self):
        """Not a check: remember what exists now, for the rules' preconditions."""
        with self.app.app_context():
            now = clock.now()
            seen = Counter(db.session.scalars(select(Session.status)))
            seen.update(f"request {status}" for status in
                        db.session.scalars(select(RescheduleRequest.status)))
            seen.update(f"dispute {status}" for status in
                        db.session.scalars(select(Dispute.status)))
            for contract in db.session.scalars(select(Contract)):
                places = sum(_is_live(session, now) for session in contract.sessions)
                room = contract.status == "active" and places < contract.total_sessions
                seen["room"] += room
                seen[f"room {contract.student_id}"] += room
            for session in db.session.scalars(select(Session)):
                for flag, test in (("startable", self._startable),
                                   ("completable", self._completable),
                                   ("missable", self._missable),
                                   ("disputable", self._disputable),
                                   ("unconfirmed", self._unconfirmed)):
                    seen[flag] += test(session, now)
        self.seen = seen

    @invariant()
    def books_balance(self):
        with self.app.app_context():
            assert ledger.check_invariants() == []

    @invariant()
    def no_double_booking(self):
        with self.app.app_context():
            live = [s for s in db.session.scalars(select(Session).order_by(Session.id))
                    if s.status not in RELEASED_STATUSES]
        for a, b in combinations(live, 2):
            pair = (f"sessions {a.id} ({a.status}, {a.starts_at}) and {b.id} ({b.status}, "
                    f"{b.starts_at})")
            if a.coach_id == b.coach_id:
                assert not (a.starts_at < b.coach_block_end
                            and b.starts_at < a.coach_block_end), f"coach double-booked: {pair}"
            if a.student_id == b.student_id:
                assert not (a.starts_at < b.ends_at and b.starts_at < a.ends_at), \
                    f"student double-booked: {pair}"

    @invariant()
    def money_is_in_exactly_one_place(self):
        """Per payment, from its own ledger entries: held + released + refunded = paid,
        each movement posted at most once, and what is left agrees with the status."""
        T, E = LedgerTransaction, LedgerEntry
        with self.app.app_context():
            amounts: dict[int, Counter] = defaultdict(Counter)
            postings: dict[int, Counter] = defaultdict(Counter)
            for payment_id, kind, account, count, total in db.session.execute(
                    select(T.payment_id, T.kind, E.account, func.count(func.distinct(T.id)),
                           func.sum(E.amount_minor))
                    .join(E, E.transaction_id == T.id).where(T.payment_id.is_not(None))
                    .group_by(T.payment_id, T.kind, E.account)):
                amounts[payment_id][kind, account] += int(total)
                postings[payment_id][kind] = max(postings[payment_id][kind], int(count))
            for payment in db.session.scalars(select(Payment)):
                got, posted = amounts[payment.id], postings[payment.id]
                escrow = sum(total for (_, account), total in got.items()
                             if account == "escrow")
                fee = got["release", "platform_revenue"]
                released = got["release", "coach_payable"] + fee
                refunded = got["refund", "refunds"]
                label = (f"payment {payment.id} ({payment.status}): escrow {escrow}, "
                         f"released {released}, refunded {refunded}")
                assert posted["payment_held"] <= 1 and posted["release"] <= 1, label
                assert min(escrow, released, refunded) >= 0, label
                if posted["payment_held"]:
                    assert -got["payment_held", "student_funding"] == payment.amount_minor
                    assert escrow + released + refunded == payment.amount_minor, label
                else:
                    assert payment.status in ("pending", "failed"), label
                    assert escrow == released == refunded == 0, label
                assert refunded == payment.refunded_minor \
                    == sum(item.amount_minor for item in payment.refunds), label
                if payment.status == "released":
                    assert escrow == 0 and released == payment.remaining_minor, label
                    assert fee == share(released, self.policy.platform_fee), label
                    assert payment.payout.amount_minor == released - fee, label
                elif payment.status == "refunded":
                    assert escrow == released == 0, label
                elif payment.status in IN_ESCROW:
                    assert escrow == payment.remaining_minor and released == 0, label

    @invariant()
    def sessions_and_payments_agree(self):
        with self.app.app_context():
            for session in db.session.scalars(select(Session)):
                payment = session.payment
                pending = [r for r in session.reschedule_requests if r.status == "pending"]
                label = f"session {session.id} ({session.status}), payment {payment.status}"
                assert len(pending) == (session.status == "reschedule_requested"), label
                expected = {
                    "pending_payment": ("pending", "failed"),
                    "scheduled": ("held",), "reschedule_requested": ("held",),
                    "in_progress": ("held",),
                    "expired": ("failed", "refunded"),
                    "missed": ("refunded",),  # refunded in full by default
                }.get(session.status, (*IN_ESCROW, "released", "refunded"))
                assert payment.status in expected, label
                if payment.status == "held" and session.status in ("completed", "cancelled"):
                    assert payment.release_at is not None, label
                if payment.status == "released" and not payment.disputes:
                    assert payment.released_at >= payment.release_at, label

    @invariant()
    def one_rating_per_person_per_session(self):
        with self.app.app_context():
            twice = db.session.execute(
                select(Rating.session_id, Rating.rater_id)
                .group_by(Rating.session_id, Rating.rater_id).having(func.count() > 1)).all()
            assert twice == []
            for rating in db.session.scalars(select(Rating)):
                session = rating.session
                assert session.status == "completed"
                assert {rating.rater_id, rating.ratee_id} == {session.student_id,
                                                              session.coach_id}

    @invariant()
    def contracts_track_completion(self):
        with self.app.app_context():
            for contract in db.session.scalars(select(Contract)):
                completed = db.session.scalar(select(func.count()).select_from(Session).where(
                    Session.contract_id == contract.id, Session.status == "completed"))
                assert contract.completed_sessions == completed <= contract.total_sessions
                assert (contract.status == "completed") == \
                    (completed == contract.total_sessions), (contract.status, completed)


@pytest.mark.real_commits  # each example empties the tables it used
def test_session_life_cycle_state_machine(app, make_user, make_offering, add_hours,
                                          make_contract):
    STATS.clear()
    run_state_machine_as_test(
        lambda: LifecycleMachine(app, make_user, make_offering, add_hours, make_contract),
        settings=MACHINE_SETTINGS)
    width = max(len(name) for name, _ in STATS)
    print("\nactions in all examples (ok, refused, or what the handler answered):")
    for (name, outcome), count in sorted(STATS.items()):
        print(f"  {name:<{width}}  {outcome:<28} {count:>5}")


# --- what the machine found, pinned down ----------------------------------------------------

THURSDAY = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)  # the `clock` fixture starts Tue 09:00 UTC
WEDNESDAY = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)


def _in(app, fn):
    with app.app_context():
        result = fn()
        db.session.commit()
        return result


def test_a_payment_after_the_hold_ran_out_is_refunded_even_before_the_sweep(
        app, coaching, clock, book_session):
    session = book_session(coaching["student"], coaching["contract"], THURSDAY)
    intent = _in(app, lambda: ensure_payment_intent(
        db.session.get(Session, session.id).payment).payment_intent_id)
    clock.advance(timedelta(minutes=16))  # the 15-minute hold ran out; no sweep yet
    assert _in(app, lambda: payment_succeeded(intent, charge_id="ch_late")) \
        == "refunded late payment"
    with app.app_context():
        stored = db.session.get(Session, session.id)
        assert (stored.status, stored.payment.status) == ("expired", "refunded")
        assert ledger.check_invariants() == []


def test_moving_a_session_onto_a_run_out_hold_expires_the_hold(
        app, coaching, clock, make_user, make_contract, paid_session, book_session):
    other = make_user(name="Kim", email="kim@example.com")
    moved = paid_session(other, make_contract(other, coaching["offering"], sessions=1),
                         THURSDAY)
    stale = book_session(coaching["student"], coaching["contract"], WEDNESDAY)
    clock.advance(timedelta(minutes=16))  # the hold on Wednesday ran out; no sweep yet

    def move():
        session = db.session.get(Session, moved.id)
        request = ops.request_reschedule(session, session.student, new_start=WEDNESDAY,
                                         reason="A clash at work, sorry.")
        ops.approve_reschedule(request, session.coach)

    _in(app, move)  # was: PostgreSQL refused (exclusion constraint), SQLite overlapped
    with app.app_context():
        assert db.session.get(Session, moved.id).starts_at == WEDNESDAY
        assert db.session.get(Session, stale.id).status == "expired"


def test_a_run_out_hold_frees_its_place_in_the_contract(
        app, coaching, clock, make_user, make_contract, book_session):
    student = make_user(name="Kim", email="kim@example.com")
    contract = make_contract(student, coaching["offering"], sessions=1)
    book_session(student, contract, WEDNESDAY)
    clock.advance(timedelta(minutes=16))  # the hold ran out; no sweep yet
    assert book_session(student, contract, THURSDAY).status == "pending_payment"
