"""Demo data for `make run`: enough people to click through every page.

Loaded into an empty database, or into one that holds nothing but the demo
(``refresh_demo``: wiped and loaded again, so the demo's times are always
relative to now), through the same operations the app uses, so every demo row
has its audit trail and notifications. Every moment is derived from the policy,
so the demo loads under any valid ``SKILEEZ_POLICY_…`` override. Nothing here
commits: the caller commits once, so a failure leaves nothing behind.
"""

from __future__ import annotations

from datetime import timedelta

from skileez import clock
from skileez.auth.operations import create_user
from skileez.coaches import operations as coaching
from skileez.coaches.availability import coach_open_slots
from skileez.contracts import operations as contracting
from skileez.contracts.models import Contract
from skileez.core.transitions import record_creation
from skileez.extensions import db
from skileez.payments import operations as paying
from skileez.payments.gateway import get_gateway
from skileez.policy import get_policy
from skileez.sessions import operations as sessions
from skileez.sessions.models import Session

DEMO_PASSWORD = "skileez-demo-2026"

DEMO_ACCOUNTS = [
    {"role": "admin", "email": "admin@skileez.test", "name": "Alex Admin",
     "timezone": "Europe/London"},
    {"role": "coach", "email": "clara.coach@skileez.test", "name": "Clara Schmidt",
     "timezone": "Europe/Berlin"},
    {"role": "coach", "email": "marcus.coach@skileez.test", "name": "Marcus Reed",
     "timezone": "America/New_York"},
    {"role": "coach", "email": "aiko.coach@skileez.test", "name": "Aiko Tanaka",
     "timezone": "Asia/Tokyo"},
    {"role": "coach", "email": "noor.coach@skileez.test", "name": "Noor Haddad",
     "timezone": "Asia/Dubai"},
    {"role": "student", "email": "sam.student@skileez.test", "name": "Sam Rivera",
     "timezone": "Europe/Madrid"},
    {"role": "student", "email": "priya.student@skileez.test", "name": "Priya Nair",
     "timezone": "Asia/Kolkata"},
    {"role": "student", "email": "leo.student@skileez.test", "name": "Leo Martin",
     "timezone": "America/Los_Angeles"},
    {"role": "student", "email": "ben.student@skileez.test", "name": "Ben Okafor",
     "timezone": "Africa/Lagos"},
]
for _account in DEMO_ACCOUNTS:
    _account["password"] = DEMO_PASSWORD


COACHES = {
    "clara.coach@skileez.test": {
        "headline": "Conversational German and Spanish for busy professionals",
        "bio": "Native German speaker, fluent in Spanish, ten years of teaching adults.\n"
               "Lessons are conversation first: we talk about your work and your week, and "
               "fix grammar as it comes up.",
        "subjects": "german, spanish, conversation, exam preparation",
        "settings": (15, 12, 60),
        "offerings": [
            ("Conversation practice", "Relaxed conversation on topics you choose.", 45, 3900,
             "EUR"),
            ("Exam preparation (Goethe / DELE)", "Mock exams and targeted practice.", 60, 5500,
             "EUR"),
        ],
        # (weekdays, start, end) in the coach's own zone
        "hours": [((0, 1, 2, 3, 4), "09:00", "12:00"), ((1, 3), "17:00", "20:00")],
    },
    "marcus.coach@skileez.test": {
        "headline": "Python and data science mentoring from a working engineer",
        "bio": "Staff engineer in New York. I help you write cleaner Python, read other "
               "people's code, and get through technical interviews.",
        "subjects": "python, data science, code review, career",
        "settings": (10, 24, 90),
        "offerings": [
            ("Python mentoring", "One hour on whatever you are stuck on.", 60, 8000, "USD"),
            ("Code review session", "Send a pull request; we go through it together.", 30,
             4500, "USD"),
        ],
        "hours": [((0, 1, 2, 3), "10:00", "16:00"), ((5,), "09:00", "12:00")],
    },
    "aiko.coach@skileez.test": {
        "headline": "Japanese for beginners, from kana to your first conversations",
        "bio": "Tokyo-based teacher. Evenings and Saturday mornings Japan time.",
        "subjects": "japanese, calligraphy, travel",
        "settings": (15, 6, 45),
        "offerings": [
            ("Japanese for beginners", "Kana, pronunciation and everyday phrases.", 50, 5000,
             "JPY"),
        ],
        "hours": [((0, 2, 4), "18:00", "22:00"), ((5,), "10:00", "14:00")],
    },
    "noor.coach@skileez.test": {
        "headline": "Public speaking and presentations that people remember",
        "bio": "Former news presenter in Dubai. We rehearse your next talk until it feels "
               "like a conversation.",
        "subjects": "public speaking, presentations, interviews",
        "settings": (10, 12, 60),
        "offerings": [
            ("Presentation rehearsal", "Run through your talk; get notes you can use.", 40,
             6500, "GBP"),
        ],
        "hours": [((0, 1, 2, 3, 6), "08:00", "13:00")],
    },
}


def wipe_demo() -> None:
    """Delete every row, in the caller's transaction, before the demo is loaded again.

    Only called when every account is a demo account, so every row (the ledger
    included) belongs to the demo: re-seeding rebuilds each state through the real
    operations at times relative to now. Shifting the old rows' timestamps instead
    would leave the states the sweep already moved on (holds expired, sessions
    closed, escrow released) where the new times say they cannot be. Plain SQL,
    because the ledger refuses ORM deletes by design.
    """
    from sqlalchemy import text

    db.session.flush()
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(text(f'DELETE FROM "{table.name}"'))
    db.session.expunge_all()


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def seed() -> dict[str, object]:
    users = {}
    for account in DEMO_ACCOUNTS:
        users[account["email"]] = create_user(
            name=account["name"], email=account["email"], password=account["password"],
            role=account["role"], timezone=account["timezone"],
            welcome=account["role"] != "admin",
        )
    offerings = {}
    for email, data in COACHES.items():
        coach = users[email]
        buffer, notice, horizon = data["settings"]
        coaching.update_profile(coach, headline=data["headline"], bio=data["bio"],
                                subjects=data["subjects"], buffer_minutes=buffer,
                                min_notice_hours=notice, horizon_days=horizon)
        for title, description, duration, price, currency in data["offerings"]:
            offerings[title] = coaching.create_offering(
                coach, title=title, description=description, duration_minutes=duration,
                price_minor=price, currency=currency)
        for weekdays, start, end in data["hours"]:
            for weekday in weekdays:
                coaching.add_rule(coach, weekday=weekday, start_minute=_minutes(start),
                                  end_minute=_minutes(end))
    now = clock.now()
    coaching.add_time_off(users["aiko.coach@skileez.test"], starts_at=now + timedelta(days=9),
                          ends_at=now + timedelta(days=11), note="Family visit")

    sam = users["sam.student@skileez.test"]
    priya = users["priya.student@skileez.test"]
    leo = users["leo.student@skileez.test"]
    clara = users["clara.coach@skileez.test"]
    marcus = users["marcus.coach@skileez.test"]

    def propose(student, title, count, message):
        return contracting.propose(student, offerings[title], sessions_count=count,
                                   message=message)

    # Two active contracts.
    contracting.accept(
        propose(sam, "Conversation practice", 10, "I move to Hamburg in spring and want to "
                "be comfortable in meetings."),
        clara, response_message="Wunderbar! Book your first session whenever suits you.")
    contracting.accept(
        propose(priya, "Python mentoring", 5, "Preparing for data engineering interviews."),
        marcus)
    contracting.accept(
        propose(leo, "Japanese for beginners", 8, "Trip to Kyoto in the autumn!"),
        users["aiko.coach@skileez.test"], response_message="Yoroshiku! Let's start with kana.")
    contracting.accept(
        propose(users["ben.student@skileez.test"], "Presentation rehearsal", 4,
                "I pitch to investors next month."),
        users["noor.coach@skileez.test"])
    # Pending, declined and expired proposals.
    propose(leo, "Conversation practice", 4, "Spanish, please: I can only do evenings.")
    propose(priya, "Japanese for beginners", 3, "A few phrases before a conference in Osaka.")
    contracting.decline(
        propose(sam, "Code review session", 2, "Could you review my Django side project?"),
        marcus, response_message="Sorry, I only review Python data projects at the moment.")
    stale = propose(priya, "Exam preparation (Goethe / DELE)", 6, "B2 exam in June.")
    stale.created_at = now - timedelta(days=8)
    stale.expires_at = now - timedelta(days=1)
    contracting.expire(stale)
    _demo_life_cycle(sam, clara, priya, marcus, users["admin@skileez.test"],
                     leo=leo, aiko=users["aiko.coach@skileez.test"],
                     ben=users["ben.student@skileez.test"], noor=users["noor.coach@skileez.test"])
    # After the life cycle, whose sessions sit at fixed offsets from now: these are
    # placed in the slots still open, so the two never overlap whatever the date.
    _book_demo_sessions(sam, clara, priya, marcus)
    return users


def _hold(student, contract, start):
    """A session awaiting payment, with the rows ``book`` would write, at any time.

    ``book`` only takes times the slot engine offers now (weekly hours, notice,
    horizon), but the demo's life cycle needs sessions in the past and outside the
    coaches' hours. And a request creates its PaymentIntent between two commits
    (``payments.attempts.provider_call``), while the seed must stay one transaction,
    so the gateway is asked directly.
    """
    duration = timedelta(minutes=contract.duration_minutes)
    buffer = timedelta(minutes=coaching.profile_for(contract.coach).buffer_minutes)
    number = (db.session.scalar(db.select(db.func.max(Session.number)).where(
        Session.contract_id == contract.id)) or 0) + 1
    now = clock.now()
    session = Session(contract_id=contract.id, number=number, coach_id=contract.coach_id,
                      student_id=student.id, starts_at=start, ends_at=start + duration,
                      coach_block_end=start + duration + buffer, status="pending_payment",
                      hold_expires_at=now + get_policy().payment_hold, created_at=now)
    db.session.add(session)
    db.session.flush()
    record_creation(session, actor=student, reason="booked, awaiting payment")
    payment = paying.create_payment(session, contract)
    result = get_gateway().create_payment_intent(
        amount_minor=payment.amount_minor, currency=payment.currency,
        idempotency_key=f"payment-{payment.id}",
        metadata={"payment_id": str(payment.id), "session_id": str(session.id),
                  "student_id": str(payment.student_id), "coach_id": str(payment.coach_id)})
    payment.payment_intent_id = result.intent_id
    payment.client_secret = result.client_secret
    db.session.flush()
    return session


def _pay(session):
    paying.payment_succeeded(session.payment.payment_intent_id,
                             charge_id=f"ch_demo_{session.payment.id}")


def _book_demo_sessions(sam, clara, priya, marcus) -> None:
    """Booked sessions in the coaches' open slots: paid ones, and one awaiting payment each."""
    def contract_of(student, coach):
        return db.session.scalar(db.select(Contract).where(
            Contract.student_id == student.id, Contract.coach_id == coach.id))

    now = clock.now()
    for student, coach, paid in ((sam, clara, 2), (priya, marcus, 1)):
        contract = contract_of(student, coach)
        slots = coach_open_slots(coach, timedelta(minutes=contract.duration_minutes),
                                 now + timedelta(days=5), now + timedelta(days=21),
                                 student_id=student.id)
        for index, start in enumerate(slots[:: max(1, len(slots) // 4)][:paid + 1]):
            session = _hold(student, contract, start)
            if index < paid:
                _pay(session)


def _demo_life_cycle(sam, clara, priya, marcus, admin, *, leo, aiko, ben, noor) -> None:
    """Sessions in every state, around now, driven through the real operations.

    Past moments are reached by freezing ``clock`` at them, so every audit event,
    ledger posting and notification is written as it would have been. Sessions are
    inserted directly (not through the slot engine) because demo times must exist
    whenever ``make run`` is started, whatever the coaches' hours. Every offset that
    meets a rule (start window, release delay, late cancellation, reschedule notice)
    is taken from the policy, so the states come out the same under any policy.
    """
    policy = get_policy()
    frozen_at = clock.now() if clock.is_frozen() else None
    real_now = clock.now().replace(second=0, microsecond=0)
    day = timedelta(days=1)
    minute = timedelta(minutes=1)

    def at(moment):
        clock.freeze(moment)

    def contract_of(student, coach):
        return db.session.scalar(db.select(Contract).where(
            Contract.student_id == student.id, Contract.coach_id == coach.id))

    def paid(student, coach, start, *, booked_at=None):
        at(booked_at or min(start - 2 * day, real_now - 30 * minute))
        session = _hold(student, contract_of(student, coach), start)
        _pay(session)
        return db.session.get(Session, session.id)

    def completed(session, notes_by, *, rate=True, notes="We worked through the plan."):
        at(session.starts_at + min(2 * minute, policy.start_window_after))
        sessions.start(session, session.coach)
        sessions.join(session, session.student)
        at(max(session.ends_at - 2 * minute, clock.now()))
        sessions.complete(session, actor=notes_by, notes=notes)
        if rate:
            other = session.student if notes_by.id == session.coach_id else session.coach
            sessions.add_notes(session, other, "Thanks, see you next time!")
            sessions.rate(session, session.student, stars=5, feedback="Clear and patient.",
                          public=True, would_recommend=True, tags=["patient", "clear"])
            sessions.rate(session, session.coach, stars=4, feedback="Well prepared.",
                          public=False, would_recommend=True, tags=["prepared"])

    try:
        delay = policy.escrow_release_delay
        clara_length = timedelta(minutes=contract_of(sam, clara).duration_minutes)
        # Sam with Clara: released, awaiting release, refunded, startable now (below),
        # upcoming, reschedule pending.
        first = paid(sam, clara, real_now - 9 * day)
        completed(first, clara)
        at(first.payment.release_at + 5 * minute)
        paying.release(first.payment, reason="released automatically after completion")
        # Ended half a release delay ago (1 to 4 hours, clear of the session starting
        # now): still in escrow unless the delay is shorter than that.
        waiting = paid(sam, clara, real_now - clara_length
                       - max(60 * minute, min(4 * 60 * minute, delay / 2)))
        completed(waiting, clara, rate=False)
        # Cancelled a day before the late window opened: refunded in full.
        early_start = real_now - 5 * day
        early = paid(sam, clara, early_start,
                     booked_at=early_start - policy.late_cancellation_window - 3 * day)
        at(early_start - policy.late_cancellation_window - 2 * day)
        sessions.cancel(early, sam, reason="Travelling that week.")
        paid(sam, clara, real_now + 3 * 60 * minute)
        # Far enough ahead that a student may still ask without it counting as late.
        moving = paid(sam, clara, real_now + max(3 * day, policy.reschedule_notice_student
                                                 + 2 * day))
        at(real_now - 20 * minute)
        new_start = coach_open_slots(clara, moving.duration, moving.starts_at + day,
                                     moving.starts_at + 8 * day, student_id=sam.id,
                                     exclude_session_id=moving.id)[0]
        sessions.request_reschedule(moving, sam, new_start=new_start,
                                    reason="A work trip came up; could we do another day?")
        # Priya with Marcus: missed, disputed, in progress, late cancellation.
        missed = paid(priya, marcus, real_now - 7 * day)
        at(missed.starts_at + policy.mark_missed_after_start + 5 * minute)
        sessions.mark_missed(missed, missed_by="student", reason="No reply in the room.",
                             actor=marcus)
        disputed = paid(priya, marcus, real_now - 2 * day)
        completed(disputed, marcus, rate=False)
        # Disputed before the release, however short the release delay is.
        at(disputed.completed_at + min(2 * 60 * minute, delay / 2))
        paying.open_dispute(
            disputed.payment, priya,
            reason="The session ended after 20 minutes because of a bad connection.")
        running = paid(priya, marcus, real_now - 10 * minute)
        at(running.starts_at + min(2 * minute, policy.start_window_after))
        sessions.start(running, marcus)
        # Startable right away: the start window is open from now for as long as it lasts.
        at(real_now)
        # Three start windows back to back, each pair's own, so that for the first hour
        # after `make run` (20 minutes a window by default) some session can be started.
        first_start = real_now + policy.start_window_before
        window = policy.start_window_before + policy.start_window_after
        paid(sam, clara, first_start)
        paid(leo, aiko, first_start + window)
        paid(ben, noor, first_start + 2 * window)
        # Inside the late-cancellation window (20 hours of the default 24), and clear of
        # the session running now.
        late_lead = max(policy.late_cancellation_window * 5 / 6, 2 * 60 * minute)
        late = paid(priya, marcus, real_now + late_lead)
        at(real_now - 5 * minute)
        sessions.cancel(late, priya, reason="Something urgent came up.")
    finally:
        # A caller that froze time (a test, a clock override) gets its clock back.
        if frozen_at is None:
            clock.unfreeze()
        else:
            clock.freeze(frozen_at)
