"""The session page's live fragment and every action on a session.

Each action is a form page that states its rule (and, for cancelling, the
refund) before anything happens, and a POST that calls one operation. An
illegal move is answered 409 with the reason, and nothing changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import (
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from skileez import clock
from skileez.auth.session import signed_in_token
from skileez.coaches.availability import coach_open_slots
from skileez.core.access import answered_before_sign_in
from skileez.core.forms import Form
from skileez.core.money import format_money, share
from skileez.core.permissions import Decision
from skileez.core.unit_of_work import form_message, see_other, submit
from skileez.extensions import db
from skileez.policy import get_policy
from skileez.sessions import lifecycle, operations
from skileez.sessions.blueprint import bp, participant_session
from skileez.sessions.forms import (
    AnswerRescheduleForm,
    CancelForm,
    CompleteForm,
    MissedForm,
    NotesForm,
    RatingForm,
    RescheduleForm,
)
from skileez.sessions.live import live_state, validator
from skileez.sessions.models import RescheduleRequest, Session
from skileez.sessions.routes import session_history

RESCHEDULE_DAYS = 21


@bp.app_context_processor
def _lifecycle_rules() -> dict:
    """Templates ask the same rules the operations enforce."""
    return {"lifecycle": lifecycle, "reschedule_alternatives": _open_times}


def _back(session: Session, message: str):
    return see_other(url_for("sessions.detail", session_id=session.id), message)


def _refused(session: Session, form) -> str:
    """For a button with no page of its own: what stopped it, on a page of its own."""
    return render_template("sessions/action_refused.html", session=session,
                           message=form_message(form))


def _unchanged(session_id: int):
    """A poll whose copy is still what the fragment says: 304 from one query, before the
    signed-in person is loaded. Anything else (another state, no copy, no sign-in this
    query can check, not a participant) goes on to ``live``, which answers as always."""
    token = signed_in_token()
    state = live_state(session_id, token) if token else None
    if state is None:
        return None
    g.live_state = state
    return _not_modified(state, clock.now())


@bp.get("/<int:session_id>/live")
@answered_before_sign_in(_unchanged)
def live(session_id: int):
    """The status fragment: polls itself every 10 s until the session is final.

    Most polls find it as it was and are answered 304, by ``_unchanged`` before
    anything else. When the status moved since the page was drawn, the notes,
    payment and timeline are stale too: they ride along as out-of-band swaps, so
    the other person's page catches up without a reload; that answer is a one-off
    and carries no validator.
    """
    state = g.get("live_state") or live_state(session_id, current_user.session_token)
    if state is None:
        abort(404)
    # Taken before drawing: words drawn a moment later can only be newer than the
    # validator says, which costs one more full answer, never a stale page.
    now = clock.now()
    unchanged = _not_modified(state, now)
    if unchanged is not None:
        return unchanged
    changed = _status_moved(state)
    session = _live_session(session_id)
    response = make_response(render_template(
        "sessions/_live.html", session=session, oob=changed,
        history=session_history(session) if changed else None))
    # After drawing: the form token the fragment carries may have been made just now.
    tag = _validator_for(state, now)
    return _with_validator(response, tag) if tag else response


def _not_modified(state, now):
    tag = _validator_for(state, now)
    if tag is None or not request.if_none_match.contains_weak(tag):
        return None
    return _with_validator(current_app.response_class(status=304), tag)


def _status_moved(state) -> bool:
    seen = request.args.get("seen")
    return bool(seen) and seen != state.status


def _validator_for(state, now) -> str | None:
    return None if _status_moved(state) else validator(state, now)


def _with_validator(response, tag: str):
    response.set_etag(tag, weak=True)
    # Kept by the browser, and asked about again before each use.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _live_session(session_id: int) -> Session:
    """The session with the people and requests the fragment names, in one query."""
    return db.session.scalars(
        select(Session).where(Session.id == session_id)
        .options(joinedload(Session.coach), joinedload(Session.student),
                 joinedload(Session.cancelled_by),
                 joinedload(Session.reschedule_requests)
                 .joinedload(RescheduleRequest.requested_by))).unique().one()


def _simple_action(session_id: int, action, success: str):
    session = participant_session(session_id)
    form = Form()
    return submit(form, lambda: action(session), page=lambda: _refused(session, form),
                  done=lambda result: result or _back(session, success))


@bp.post("/<int:session_id>/confirm-attendance")
def confirm_attendance(session_id: int):
    return _simple_action(session_id, lambda s: operations.confirm(s, current_user),
                          "Confirmed: the student can see you will be there.")


@bp.post("/<int:session_id>/start")
def start(session_id: int):
    return _simple_action(session_id, lambda s: operations.start(s, current_user),
                          "The session has started and the meeting room is open. "
                          "The other person has been told.")


@bp.post("/<int:session_id>/join")
def join(session_id: int):
    """Joining records attendance, then sends the person on to the meeting room."""
    return _simple_action(session_id,
                          lambda s: redirect(operations.join(s, current_user), code=303), "")


def _open_times(session: Session) -> list[datetime]:
    now = clock.now()
    earliest = now + get_policy().reschedule_new_time_min_lead
    return [slot for slot in coach_open_slots(
        session.coach, session.ends_at - session.starts_at, earliest,
        now + timedelta(days=RESCHEDULE_DAYS), student_id=session.student_id,
        exclude_session_id=session.id, ignore_notice=True) if slot != session.starts_at]


def _parse(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat((value or "").replace(" ", "+"))
    except ValueError:
        return None
    if parsed.tzinfo is None or not 2000 <= parsed.year <= 2100:
        return None
    return parsed


@bp.route("/<int:session_id>/reschedule", methods=["GET", "POST"])
def reschedule(session_id: int):
    session = participant_session(session_id)
    decision = lifecycle.can_request_reschedule(session, current_user)
    form = RescheduleForm()
    times = _open_times(session) if decision else []
    form.new_start.choices = [(t.isoformat(), t.isoformat()) for t in times]
    return submit(
        form,
        lambda: operations.request_reschedule(session, current_user,
                                              new_start=_parse(form.new_start.data),
                                              reason=form.reason.data),
        page=lambda: render_template("sessions/reschedule.html", session=session, form=form,
                                     decision=decision, times=times),
        done=lambda _: _back(session, "Your request was sent. The session stays where it "
                                      "is until it is answered."),
        allowed=decision,
        problems=lambda: operations.reschedule_problems(
            session, new_start=_parse(form.new_start.data), reason=form.reason.data or ""))


def _request(request_id: int) -> RescheduleRequest:
    item = db.session.get(RescheduleRequest, request_id)
    if item is None or not item.session.is_participant(current_user):
        abort(404)
    return item


@bp.post("/reschedule/<int:request_id>/<any(approve, decline, withdraw):action>")
def answer_reschedule(request_id: int, action: str):
    item = _request(request_id)
    session = item.session
    form = AnswerRescheduleForm()
    form.new_start.choices = []

    def answer():
        if action == "approve":
            chosen = _parse(form.new_start.data) if form.new_start.data else None
            operations.approve_reschedule(item, current_user, chosen_start=chosen,
                                          note=form.note.data or "")
        elif action == "decline":
            operations.decline_reschedule(item, current_user, note=form.note.data or "")
        else:
            operations.withdraw_reschedule(item, current_user)

    return submit(form, answer, page=lambda: _refused(session, form),
                  done=lambda _: _back(session, {
                      "approve": "The session has been moved.",
                      "decline": "Declined: the session stays at its time.",
                      "withdraw": "Your request was withdrawn."}[action]))


def _form_action(session: Session, decision, form, run, success, template: str,
                 **context):
    """GET shows the rule; POST runs the operation: 409 when not allowed now, 422 for bad input."""
    return submit(form, run,
                  page=lambda: render_template(template, session=session, form=form,
                                               decision=decision, **context),
                  done=lambda _: _back(session, success() if callable(success) else success),
                  allowed=decision)


@bp.route("/<int:session_id>/cancel", methods=["GET", "POST"])
def cancel(session_id: int):
    session = participant_session(session_id)
    terms = lifecycle.cancel_terms(session, current_user)
    form = CancelForm()
    refund_amount = None
    payment = session.payment
    if terms.allowed and payment is not None and payment.status in ("held",
                                                                    "partially_refunded"):
        refund_amount = share(payment.remaining_minor, terms.refund_share)
    refunded_before = payment.refunded_minor if payment is not None else 0
    return _form_action(
        session, Decision(terms.allowed, terms.reason), form,
        lambda: operations.cancel(session, current_user, reason=form.reason.data or ""),
        lambda: _cancelled_words(session, refunded_before), "sessions/cancel.html",
        terms=terms, refund_amount=refund_amount)


def _cancelled_words(session: Session, refunded_before: int) -> str:
    """What the cancellation did with the money, said once it is done."""
    payment = session.payment
    if payment is None or payment.paid_at is None:
        return "Cancelled. Nothing had been paid, so there is nothing to refund."
    refunded = payment.refunded_minor - refunded_before
    whose = "your card" if current_user.id == session.student_id \
        else f"{session.student.name}'s card"
    if refunded:
        words = f"Cancelled. {format_money(refunded, payment.currency)} will be refunded " \
                f"to {whose}."
        if payment.remaining_minor:
            words += (f" The other {format_money(payment.remaining_minor, payment.currency)}"
                      f" goes to {session.coach.name}, as the cancellation terms say.")
        return words
    return (f"Cancelled. No refund: as the cancellation terms say, the payment goes to "
            f"{session.coach.name}.")


@bp.route("/<int:session_id>/complete", methods=["GET", "POST"])
def complete(session_id: int):
    session = participant_session(session_id)
    form = CompleteForm()
    return _form_action(
        session, lifecycle.can_complete(session, current_user), form,
        lambda: operations.complete(session, actor=current_user, notes=form.notes.data or ""),
        "Marked as completed. Both of you can now rate it.", "sessions/complete.html")


@bp.post("/<int:session_id>/notes")
def notes(session_id: int):
    session = participant_session(session_id)
    form = NotesForm()
    return submit(form, lambda: operations.add_notes(session, current_user, form.notes.data),
                  page=lambda: _refused(session, form),
                  done=lambda _: _back(session, "Your notes are saved."))


@bp.route("/<int:session_id>/missed", methods=["GET", "POST"])
def missed(session_id: int):
    session = participant_session(session_id)
    form = MissedForm()
    return _form_action(
        session, lifecycle.can_mark_missed(session, current_user), form,
        lambda: operations.mark_missed(session, missed_by=form.missed_by.data,
                                       reason=form.reason.data, actor=current_user),
        "Recorded as missed.", "sessions/missed.html", policy=get_policy())


@bp.route("/<int:session_id>/rate", methods=["GET", "POST"])
def rate(session_id: int):
    session = participant_session(session_id)
    form = RatingForm()
    return _form_action(
        session, lifecycle.can_rate(session, current_user), form,
        lambda: operations.rate(session, current_user, stars=form.stars_value(),
                                feedback=form.feedback.data or "",
                                public=bool(form.public.data),
                                would_recommend=bool(form.would_recommend.data),
                                tags=operations.normalise_tags(form.tags.data or "")),
        "Thank you for your rating.", "sessions/rate.html")
