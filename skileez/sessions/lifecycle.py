"""The rules of the session life cycle, as answers with reasons.

The legal moves themselves are ``Session.__transitions__`` (one table, enforced
by the transition helper). This module adds *when* and *who*: each
``can_<action>`` returns a ``Decision`` whose reason is the sentence a person
sees next to the button, or instead of it, with real times in their zone.
Operations call the same functions, so the page and the rule cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from skileez import clock
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.core.timezones import format_local
from skileez.core.words import deadline_words, duration_words, percent_words, refund_words
from skileez.policy import get_policy

# Named sets of states, so Python, SQL and templates say "final" rather than listing
# states (and cannot disagree about which ones they are).
# Nothing more can happen to the session.
FINAL = ("completed", "cancelled", "expired", "missed")
# Still going ahead: it holds its time and someone may still act on it.
GOING_AHEAD = ("pending_payment", "scheduled", "reschedule_requested", "in_progress")
# Paid, not started yet: it can be started, moved or cancelled.
BOOKED = ("scheduled", "reschedule_requested")
# Paid and the meeting is on: still to happen, or happening now.
MEETING_ON = ("scheduled", "reschedule_requested", "in_progress")
# Whether it took place is still open: it can be completed or reported missed.
AWAITING_OUTCOME = ("scheduled", "in_progress")

# A state in a few words, for lists (the dashboard); STATE_WORDS below says it in a sentence.
STATUS_LABELS = {
    "pending_payment": "Waiting for payment",
    "scheduled": "Booked and paid",
    "reschedule_requested": "Reschedule requested",
    "in_progress": "In progress now",
    "completed": "Completed",
    "missed": "Missed",
    "cancelled": "Cancelled",
    "expired": "Expired (not paid in time)",
}

STATE_WORDS = {
    "pending_payment": "The session is waiting for payment.",
    "scheduled": "The session is scheduled.",
    "reschedule_requested": "A reschedule request is waiting for an answer.",
    "in_progress": "The session is in progress.",
    "completed": "The session is completed.",
    "cancelled": "The session was cancelled.",
    "expired": "The booking expired before payment.",
    "missed": "The session was missed.",
}


def is_final(session) -> bool:
    return session.status in FINAL


def is_going_ahead(session) -> bool:
    return session.status in GOING_AHEAD


def is_booked(session) -> bool:
    return session.status in BOOKED


def meeting_is_on(session) -> bool:
    return session.status in MEETING_ON


def awaits_outcome(session) -> bool:
    return session.status in AWAITING_OUTCOME


def awaits_payment(session) -> bool:
    return session.status == "pending_payment"


def is_in_progress(session) -> bool:
    return session.status == "in_progress"


def is_completed(session) -> bool:
    return session.status == "completed"


def _state(session) -> str:
    return STATE_WORDS.get(session.status, f"The session is {session.status}.")


def role_of(session, user) -> str | None:
    if not (user and getattr(user, "is_authenticated", False)):
        return None
    if user.id == session.student_id:
        return "student"
    if user.id == session.coach_id:
        return "coach"
    return None


def _at(moment: datetime, user) -> str:
    return deadline_words(moment, user.timezone)


def _participant(session, user) -> Decision:
    return ALLOWED if role_of(session, user) else deny("Only the two participants can do this.")


def can_pay(session, user, now: datetime | None = None) -> Decision:
    """The student pays while the time is still held for them (the sweep may not have
    expired a hold that ran out yet, so the clock decides, not only the state)."""
    if role_of(session, user) != "student":
        return deny("Only the student pays for a session.")
    if not awaits_payment(session):
        return deny(_state(session))
    hold = session.hold_expires_at
    if hold is not None and hold <= (now or clock.now()):
        return deny("The hold on this time ran out. Book it again if it is still free.")
    if hold is None:
        return ALLOWED
    return Decision(True, f"Held for you until {format_local(hold, user.timezone, 'short')}.")


def can_release_hold(session, user) -> Decision:
    """A coach taking time off over an unpaid booking ends its hold at once: nothing was
    paid, so there is nothing to refund, and the time must not be paid for afterwards."""
    if role_of(session, user) != "coach":
        return deny("Only the coach can release an unpaid booking.")
    if not awaits_payment(session):
        return deny(_state(session))
    return Decision(True, f"Not paid yet: the booking is released and "
                          f"{session.student.name} is told.")


def can_confirm(session, user) -> Decision:
    if role_of(session, user) != "coach":
        return deny("Only the coach confirms a session.")
    if session.status != "scheduled":
        return deny(_state(session))
    if session.confirmed_by_coach:
        return deny("Already confirmed.")
    return Decision(True, "Let the student know you will be there.")


def start_window(session) -> tuple[datetime, datetime]:
    policy = get_policy()
    return (session.starts_at - policy.start_window_before,
            session.starts_at + policy.start_window_after)


def can_start(session, user, now: datetime | None = None) -> Decision:
    if not role_of(session, user):
        return deny("Only the two participants can start the session.")
    if session.status != "scheduled":
        return deny(_state(session))
    now = now or clock.now()
    opens, closes = start_window(session)
    if now < opens:
        return deny(f"You can start from {_at(opens, user)}.")
    if now > closes:
        return deny(f"The start window closed at {format_local(closes, user.timezone)}.")
    return Decision(True, f"Start window open until {format_local(closes, user.timezone)}.")


def can_join(session, user) -> Decision:
    if not role_of(session, user):
        return deny("Only the two participants can join.")
    if session.status != "in_progress":
        return deny("The meeting room opens when one of you starts the session.")
    return Decision(True, "The meeting room is open.")


@dataclass(frozen=True)
class RescheduleNotice:
    allowed: bool
    late: bool
    reason: str


def reschedule_notice(session, user, now: datetime | None = None) -> RescheduleNotice:
    """By default, coach: 48 h before. Student: 24 h, or late down to 10 h. Nobody within 10 h."""
    policy = get_policy()
    now = now or clock.now()
    left = session.starts_at - now
    role = role_of(session, user)
    if role == "coach":
        deadline = session.starts_at - policy.reschedule_notice_coach
        if left >= policy.reschedule_notice_coach:
            return RescheduleNotice(True, False, f"Coaches can ask to reschedule until "
                                                 f"{_at(deadline, user)}.")
        return RescheduleNotice(False, False, "Coaches must ask at least "
                                f"{duration_words(policy.reschedule_notice_coach)} before the "
                                f"start; that was {format_local(deadline, user.timezone)}.")
    normal = session.starts_at - policy.reschedule_notice_student
    floor = session.starts_at - policy.reschedule_notice_student_late_floor
    if left >= policy.reschedule_notice_student:
        return RescheduleNotice(True, False, f"You can ask to reschedule until "
                                             f"{_at(normal, user)} (after that it counts as "
                                             f"late, and closes at "
                                             f"{format_local(floor, user.timezone)}).")
    if left >= policy.reschedule_notice_student_late_floor:
        return RescheduleNotice(True, True, "A request now counts as late. Rescheduling closes "
                                            f"at {_at(floor, user)}.")
    return RescheduleNotice(False, False, "Rescheduling closes "
                            f"{duration_words(policy.reschedule_notice_student_late_floor)} "
                            f"before the start ({format_local(floor, user.timezone)}).")


def can_request_reschedule(session, user, now: datetime | None = None) -> Decision:
    if not role_of(session, user):
        return deny("Only the two participants can reschedule.")
    if session.status == "reschedule_requested":
        return deny("A reschedule request is already waiting for an answer.")
    if session.status != "scheduled":
        return deny(_state(session))
    notice = reschedule_notice(session, user, now)
    return Decision(notice.allowed, notice.reason)


def reschedule_deadline(session, requested_at: datetime) -> datetime:
    policy = get_policy()
    return min(requested_at + policy.reschedule_response_window,
               session.starts_at - policy.reschedule_response_cap_before_start)


def can_answer_reschedule(request, user, now: datetime | None = None) -> Decision:
    session = request.session
    role = role_of(session, user)
    if not role:
        return deny("Only the two participants can answer.")
    if request.requested_by_id == user.id:
        return deny("The other participant answers your request.")
    if request.status != "pending":
        return deny(f"This request was {request.status.replace('_', ' ')}.")
    now = now or clock.now()
    if now >= request.deadline:
        return deny("The answer deadline has passed; it is being decided automatically.")
    return Decision(True, f"Answer by {_at(request.deadline, user)}; after that it is approved "
                          "automatically if the time is still free, and declined otherwise.")


def open_reschedule_request(session):
    """The reschedule request still waiting for an answer, if any (there is one at most)."""
    return next((request for request in session.reschedule_requests
                 if request.status == "pending"), None)


def can_withdraw_reschedule(request, user) -> Decision:
    if request.requested_by_id != getattr(user, "id", None):
        return deny("Only the person who asked can withdraw the request.")
    if request.status != "pending":
        return deny(f"This request was {request.status.replace('_', ' ')}.")
    return ALLOWED


@dataclass(frozen=True)
class CancelTerms:
    allowed: bool
    late: bool
    refund_share: Decimal
    reason: str


def cancel_terms(session, user, now: datetime | None = None) -> CancelTerms:
    """Who cancels and when decides the refund: shown before confirming, applied after."""
    policy = get_policy()
    role = role_of(session, user)
    if not role:
        return CancelTerms(False, False, Decimal(0), "Only the two participants can cancel.")
    if not is_booked(session):
        return CancelTerms(False, False, Decimal(0),
                           _state(session))
    now = now or clock.now()
    free_until = session.starts_at - policy.late_cancellation_window
    # "The window or more before the start" is free: exactly the window left is not late.
    late = session.starts_at - now < policy.late_cancellation_window
    if role == "coach":
        return CancelTerms(True, late, policy.refund_coach_cancels,
                           f"The student gets {refund_words(policy.refund_coach_cancels)}."
                           + (" Cancelling this late counts against your record." if late
                              else ""))
    if not late:
        return CancelTerms(True, False, policy.refund_student_cancels_early,
                           f"Free cancellation until {_at(free_until, user)}: you get "
                           f"{percent_words(policy.refund_student_cancels_early)} back.")
    share = policy.refund_student_cancels_late
    return CancelTerms(True, True, share,
                       "This is a late cancellation (less than "
                       f"{duration_words(policy.late_cancellation_window)} before the start): "
                       + ("the payment is not refunded." if share == 0
                          else f"you get {percent_words(share)} back."))


def can_cancel(session, user, now: datetime | None = None) -> Decision:
    terms = cancel_terms(session, user, now)
    return Decision(terms.allowed, terms.reason)


def can_complete(session, user, now: datetime | None = None) -> Decision:
    if not role_of(session, user):
        return deny("Only the two participants can complete the session.")
    now = now or clock.now()
    if session.status == "in_progress":
        return Decision(True, "Mark it done when you have finished.")
    if session.status == "scheduled":
        if now >= session.starts_at:
            return Decision(True, "The start time has passed: you can mark it done.")
        return deny(f"You can complete it once it has started ({_at(session.starts_at, user)}).")
    return deny(_state(session))


def can_mark_missed(session, user, now: datetime | None = None) -> Decision:
    if not role_of(session, user):
        return deny("Only the two participants can report a no-show.")
    if not awaits_outcome(session):
        return deny(_state(session))
    now = now or clock.now()
    opens = session.starts_at + get_policy().mark_missed_after_start
    if now < opens:
        return deny(f"A no-show can be reported from {_at(opens, user)}.")
    return Decision(True, "Report who did not attend.")


def can_add_notes(session, user) -> Decision:
    role = role_of(session, user)
    if not role:
        return deny("Only the two participants can write notes.")
    if session.status != "completed":
        return deny("Notes are written when the session is completed.")
    if getattr(session, f"{role}_notes"):
        return deny("You have already written your notes.")
    return ALLOWED


def can_rate(session, user) -> Decision:
    if not role_of(session, user):
        return deny("Only the two participants can rate the session.")
    if session.status != "completed":
        return deny("Only completed sessions can be rated.")
    if any(rating.rater_id == user.id for rating in session.ratings):
        return deny("You have already rated this session.")
    return ALLOWED


def auto_close_at(session) -> datetime:
    """When a worker completes (in progress) or marks unattended (never started) a session."""
    return session.ends_at + get_policy().auto_close_after_end


def can_add_to_calendar(session, user) -> Decision:
    """Offered only while the meeting is still going to happen (or is happening).

    A cancelled, finished or unpaid session in someone's calendar is a wrong
    appointment, not a help.
    """
    if not role_of(session, user):
        return deny("Only the two participants can add it to a calendar.")
    if not meeting_is_on(session):
        return deny(_state(session))
    return ALLOWED


def moments(session, request_deadline: datetime | None = None) -> list[datetime]:
    """Every instant at which an answer above changes for this session with nothing written.

    Each rule compares the clock with one of these (the start window opening and
    closing, each notice deadline, the late-cancellation line, the start, when a no-show
    can be reported, the hold running out, a pending request's answer deadline), and the
    reason it gives names the same instant. Between two of them every ``can_…`` answer
    stays as it is, apart from how far away the reason says its instant is. A rule that
    compares the clock with anything else must add its instant here (a test checks).
    """
    policy = get_policy()
    starts = session.starts_at
    points = [*start_window(session), starts, session.ends_at, auto_close_at(session),
              starts - policy.reschedule_notice_coach,
              starts - policy.reschedule_notice_student,
              starts - policy.reschedule_notice_student_late_floor,
              starts - policy.late_cancellation_window,
              starts + policy.mark_missed_after_start]
    return points + [moment for moment in (session.hold_expires_at, session.started_at,
                                           request_deadline) if moment is not None]
