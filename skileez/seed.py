"""Demo data for `make run`: enough people to click through every page.

Loaded only into an empty database, through the same operations the app
uses, so every demo row has its audit trail and notifications. Later issues
extend ``seed()`` with sessions and payments.
"""

from __future__ import annotations

from datetime import timedelta

from skileez import clock
from skileez.auth.operations import create_user
from skileez.coaches import operations as coaching
from skileez.contracts import operations as contracting

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
    {"role": "student", "email": "sam.student@skileez.test", "name": "Sam Rivera",
     "timezone": "Europe/Madrid"},
    {"role": "student", "email": "priya.student@skileez.test", "name": "Priya Nair",
     "timezone": "Asia/Kolkata"},
    {"role": "student", "email": "leo.student@skileez.test", "name": "Leo Martin",
     "timezone": "America/Los_Angeles"},
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
}


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
    # Pending, declined and expired proposals.
    propose(leo, "Japanese for beginners", 8, "Trip to Kyoto in the autumn!")
    propose(leo, "Conversation practice", 4, "Spanish, please: I can only do evenings.")
    contracting.decline(
        propose(sam, "Code review session", 2, "Could you review my Django side project?"),
        marcus, response_message="Sorry, I only review Python data projects at the moment.")
    stale = propose(priya, "Exam preparation (Goethe / DELE)", 6, "B2 exam in June.")
    stale.created_at = now - timedelta(days=8)
    stale.expires_at = now - timedelta(days=1)
    contracting.expire(stale)
    _book_demo_sessions(sam, clara, priya, marcus)
    _demo_life_cycle(sam, clara, priya, marcus, users["admin@skileez.test"])
    return users


def _book_demo_sessions(sam, clara, priya, marcus) -> None:
    """Booked and paid sessions through the real booking and payment code (test gateway)."""
    from skileez.coaches.availability import coach_open_slots
    from skileez.contracts.models import Contract
    from skileez.extensions import db
    from skileez.payments.operations import ensure_payment_intent, payment_succeeded
    from skileez.sessions.operations import book

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
            session = book(student, contract.id, start)
            if index < paid:
                payment = ensure_payment_intent(session.payment)
                payment_succeeded(payment.payment_intent_id, charge_id=f"ch_demo_{payment.id}")


def _demo_life_cycle(sam, clara, priya, marcus, admin) -> None:
    """Sessions in every state, at fixed offsets from now, driven through the real operations.

    Past moments are reached by freezing ``clock`` at them, so every audit event,
    ledger posting and notification is written as it would have been. Sessions are
    inserted directly (not through the slot engine) because demo times must exist
    whenever ``make run`` is started, whatever the coaches' hours.
    """
    from skileez.contracts.models import Contract
    from skileez.extensions import db
    from skileez.payments.operations import (
        create_payment,
        ensure_payment_intent,
        open_dispute,
        payment_succeeded,
        release,
    )
    from skileez.sessions import operations as sessions
    from skileez.sessions.models import Session

    now = clock.now()
    real_now = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)

    def at(moment):
        clock.freeze(moment)

    def contract_of(student, coach):
        return db.session.scalar(db.select(Contract).where(
            Contract.student_id == student.id, Contract.coach_id == coach.id))

    def paid(student, coach, start):
        contract = contract_of(student, coach)
        duration = timedelta(minutes=contract.duration_minutes)
        number = (db.session.scalar(db.select(db.func.max(Session.number)).where(
            Session.contract_id == contract.id)) or 0) + 1
        at(min(start - timedelta(days=2), real_now - timedelta(minutes=30)))
        session = Session(contract_id=contract.id, number=number, coach_id=coach.id,
                          student_id=student.id, starts_at=start, ends_at=start + duration,
                          coach_block_end=start + duration + timedelta(minutes=15),
                          status="pending_payment",
                          hold_expires_at=clock.now() + timedelta(minutes=15))
        db.session.add(session)
        db.session.flush()
        payment = create_payment(session, contract)
        ensure_payment_intent(payment)
        payment_succeeded(payment.payment_intent_id, charge_id=f"ch_demo_{payment.id}")
        return db.session.get(Session, session.id)

    def completed(session, notes_by, *, rate=True, notes="We worked through the plan."):
        at(session.starts_at)
        sessions.start(session, session.coach)
        sessions.join(session, session.student)
        at(session.ends_at - timedelta(minutes=2))
        sessions.complete(session, actor=notes_by, notes=notes)
        if rate:
            other = session.student if notes_by.id == session.coach_id else session.coach
            sessions.add_notes(session, other, "Thanks, see you next time!")
            sessions.rate(session, session.student, stars=5, feedback="Clear and patient.",
                          public=True, would_recommend=True, tags=["patient", "clear"])
            sessions.rate(session, session.coach, stars=4, feedback="Well prepared.",
                          public=False, would_recommend=True, tags=["prepared"])

    try:
        day = timedelta(days=1)
        # Sam with Clara: released, awaiting release, refunded, startable now (below),
        # upcoming, reschedule pending.
        first = paid(sam, clara, real_now - 9 * day)
        completed(first, clara)
        at(first.ends_at + day + timedelta(minutes=5))
        release(first.payment, reason="released automatically after completion")
        waiting = paid(sam, clara, real_now - timedelta(hours=4))
        completed(waiting, clara, rate=False)
        early = paid(sam, clara, real_now - 5 * day)
        at(early.starts_at - 3 * day)
        sessions.cancel(early, sam, reason="Travelling that week.")
        paid(sam, clara, real_now + timedelta(hours=3))
        moving = paid(sam, clara, real_now + 3 * day)
        at(real_now - timedelta(minutes=20))
        from skileez.coaches.availability import coach_open_slots

        new_start = coach_open_slots(clara, moving.duration, moving.starts_at + day,
                                     moving.starts_at + 8 * day, student_id=sam.id,
                                     exclude_session_id=moving.id)[0]
        sessions.request_reschedule(moving, sam, new_start=new_start,
                                    reason="A work trip came up; could we do another day?")
        # Priya with Marcus: missed, disputed, in progress, late cancellation.
        missed = paid(priya, marcus, real_now - 7 * day)
        at(missed.starts_at + timedelta(minutes=20))
        sessions.mark_missed(missed, missed_by="student", reason="No reply in the room.",
                             actor=marcus)
        disputed = paid(priya, marcus, real_now - 2 * day)
        completed(disputed, marcus, rate=False)
        at(disputed.ends_at + timedelta(hours=2))
        open_dispute(disputed.payment, priya,
                     reason="The session ended after 20 minutes because of a bad connection.")
        running = paid(priya, marcus, real_now - timedelta(minutes=10))
        at(running.starts_at + timedelta(minutes=2))
        sessions.start(running, marcus)
        at(real_now)
        paid(sam, clara, real_now + timedelta(minutes=3))  # startable right away
        late = paid(priya, marcus, real_now + timedelta(hours=20))
        at(real_now - timedelta(minutes=5))
        sessions.cancel(late, priya, reason="Something urgent came up.")
    finally:
        clock.unfreeze()
