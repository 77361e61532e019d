"""Every page and htmx fragment has a query budget that does not grow with data (issue 10).

A page that loads one more row per contract, session or payment it lists is fast
on a demo and slow at real size; the statement count shows that long before a
stopwatch does. So the demo data (the small set) is loaded, every GET page and
fragment each role can open is visited and its statements counted on the engine;
then several times more of everything is added around the same people (more
coaches and students, contracts, sessions in every status, held, released,
refunded and disputed payments, ratings, reschedule requests, notifications,
outbox rows) and the same pages are visited again. A page fails when it runs
more than ``BUDGET`` statements, or more on the larger set than on the smaller.

The list of pages is checked against ``app.url_map``: a new GET route that is in
neither ``visits`` nor ``NOT_PAGES`` fails ``test_every_get_route_is_visited``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from skileez import clock, create_app
from skileez.core.unit_of_work import transaction
from skileez.extensions import db
from skileez.seed import DEMO_PASSWORD
from tests.conftest import TEST_PASSWORD, Client, _join_one_transaction, base_config

BUDGET = 10
# How many times the smaller set the larger one has, at least, of every counted table.
LARGER_FACTOR = 2.5

# Files, served without the database: not pages.
NOT_PAGES = {"static", "bootstrap.static", "vendor.static", "core.favicon"}

# Sessions of the larger set are copies of the demo's life cycle this far apart, so the
# copies never overlap each other (nor the demo) for any coach or student.
COPY_SPACING = timedelta(days=35)
SMALL_COPY_OFFSETS = (-1, 1)
LARGER_COPY_OFFSETS = (-2, 2, -3, 3, -4, 4)
EXTRA_DIRECTORY_COACHES = 10
FROZEN_AT = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@dataclass
class Visit:
    role: str
    label: str
    url: str
    htmx: bool = False

    @property
    def key(self) -> str:
        return f"{self.role} {self.label}"


@dataclass
class Measured:
    status: int
    statements: list[str] = field(default_factory=list)


# --- the data sets ----------------------------------------------------------------------

def _new_person(role: str, n: int):
    from skileez.auth.operations import create_user

    return create_user(name=f"Extra {role.title()} {n}", email=f"extra-{role}-{n}@example.com",
                       password=TEST_PASSWORD, role=role, timezone="UTC", welcome=True)


def _new_coach(n: int):
    """A coach open every day from 07:00 to 21:00 UTC, with one offering."""
    from skileez.coaches import operations as coaching

    coach = _new_person("coach", n)
    coaching.update_profile(coach, headline=f"Extra coach {n}", bio="Here to make numbers.",
                            subjects="german, python", buffer_minutes=0, min_notice_hours=1,
                            horizon_days=90)
    coaching.create_offering(coach, title=f"Lessons {n}", description="", duration_minutes=60,
                             price_minor=4000 + n, currency="EUR")
    for weekday in range(7):
        coaching.add_rule(coach, weekday=weekday, start_minute=7 * 60, end_minute=21 * 60)
    return coach


def _contract(student, coach, sessions: int = 10):
    from skileez.coaches.models import Offering
    from skileez.contracts import operations as contracting

    offering = db.session.scalars(select(Offering).where(Offering.coach_id == coach.id)
                                  .order_by(Offering.id)).first()
    return contracting.accept(contracting.propose(student, offering, sessions_count=sessions,
                                                  message="More of everything."), coach)


def _pending_proposal(student, coach):
    from skileez.coaches.models import Offering
    from skileez.contracts import operations as contracting

    offering = db.session.scalars(select(Offering).where(Offering.coach_id == coach.id)
                                  .order_by(Offering.id)).first()
    return contracting.propose(student, offering, sessions_count=3, message="Maybe later?")


def _demo_person(email: str):
    from skileez.auth.models import User

    return db.session.scalar(select(User).where(User.email == email))


def _copy_of_the_demo(number: int, offset: int) -> None:
    """The demo's life cycle again, ``offset`` spacings from now, with new partners.

    Even copies give Sam the demo student Sam's part and Clara the demo coach Marcus's;
    odd ones give Sam Priya's part and Clara her own. Between them both viewers have
    sessions and payments in every state: in progress, missed, disputed, refunded, ...
    """
    from skileez.seed import _book_demo_sessions, _demo_life_cycle

    sam = _demo_person("sam.student@skileez.test")
    clara = _demo_person("clara.coach@skileez.test")
    admin = _demo_person("admin@skileez.test")
    coaches = [_new_coach(3 * number + i) for i in range(3)]
    students = [_new_person("student", 3 * number + i) for i in range(3)]
    if number % 2 == 0:
        cast = {"sam": sam, "clara": coaches[0], "priya": students[0], "marcus": clara}
    else:
        cast = {"sam": students[0], "clara": clara, "priya": sam, "marcus": coaches[0]}
    pairs = [(cast["sam"], cast["clara"]), (cast["priya"], cast["marcus"]),
             (students[1], coaches[1]), (students[2], coaches[2])]
    contracts = [_contract(student, coach).id for student, coach in pairs]
    _pending_proposal(sam, coaches[1])
    _pending_proposal(students[1], clara)
    clock.freeze(FROZEN_AT + offset * COPY_SPACING)
    try:
        _demo_life_cycle(cast["sam"], cast["clara"], cast["priya"], cast["marcus"], admin,
                         leo=students[1], aiko=coaches[1], ben=students[2], noor=coaches[2])
    finally:
        clock.freeze(FROZEN_AT)
    _book_demo_sessions(cast["sam"], cast["clara"], cast["priya"], cast["marcus"])
    _refund_part(contracts, sam, admin)
    _refund_part(contracts, clara, admin)


def _refund_part(contract_ids: list[int], viewer, admin) -> None:
    """An admin gives back part of one of the viewer's held payments in these contracts."""
    from skileez.payments import operations as paying
    from skileez.payments.models import Payment
    from skileez.sessions.models import Session

    payment = db.session.scalars(
        select(Payment).join(Session, Payment.session_id == Session.id)
        .where(Session.contract_id.in_(contract_ids), Payment.status == "held",
               (Payment.student_id == viewer.id) | (Payment.coach_id == viewer.id))
        .order_by(Payment.id)).first()
    paying.refund(payment, payment.amount_minor // 2, reason="Half the session was lost.",
                  actor=admin)


def build_small() -> None:
    """The demo, and two copies of its life cycle so that the student (Sam) and the coach
    (Clara) each have sessions and payments in every state."""
    from skileez.seed import seed
    from skileez.sessions import calendar

    users = seed()
    for email in ("sam.student@skileez.test", "clara.coach@skileez.test"):
        calendar.ensure_token(users[email])
    for number, offset in enumerate(SMALL_COPY_OFFSETS):
        _copy_of_the_demo(number, offset)


def build_larger() -> None:
    """Several times the small set around the same people, and more coaches to list."""
    start = len(SMALL_COPY_OFFSETS)
    for number, offset in enumerate(LARGER_COPY_OFFSETS, start=start):
        _copy_of_the_demo(number, offset)
    for extra in range(EXTRA_DIRECTORY_COACHES):
        _new_coach(100 + extra)


# --- what each role visits ---------------------------------------------------------------

def _first_id(statement) -> int | None:
    return db.session.scalar(statement.limit(1))


def _ids(viewer) -> dict:
    """Ids from the small set the viewer's pages need: one session and one payment per
    status (so every state of the session and payment pages is visited), and so on."""
    from skileez.coaches.availability import coach_open_slots
    from skileez.coaches.models import Offering
    from skileez.contracts.models import Contract, Proposal
    from skileez.payments.models import Payment
    from skileez.sessions.models import Session

    mine_session = (Session.student_id == viewer.id) | (Session.coach_id == viewer.id)
    sessions = {status: session_id for status, session_id in db.session.execute(
        select(Session.status, func.min(Session.id)).where(mine_session)
        .group_by(Session.status))}
    mine_payment = (Payment.student_id == viewer.id) | (Payment.coach_id == viewer.id)
    payments = {status: payment_id for status, payment_id in db.session.execute(
        select(Payment.status, func.min(Payment.id)).where(mine_payment)
        .group_by(Payment.status))}
    contract = db.session.get(Contract, _first_id(
        select(Contract.id).where((Contract.student_id == viewer.id)
                                  | (Contract.coach_id == viewer.id)).order_by(Contract.id)))
    proposals = {status: proposal_id for status, proposal_id in db.session.execute(
        select(Proposal.status, func.min(Proposal.id)).where(
            (Proposal.student_id == viewer.id) | (Proposal.coach_id == viewer.id))
        .group_by(Proposal.status))}
    ids = {"sessions": sessions, "payments": payments, "contract": contract.id,
           "proposals": proposals, "token": viewer.calendar_token, "viewer": viewer.id,
           "clara": _demo_person("clara.coach@skileez.test").id}
    ids["offering"] = _first_id(select(Offering.id).where(Offering.coach_id == ids["clara"])
                                .order_by(Offering.id))
    if viewer.is_student:
        slots = coach_open_slots(contract.coach, timedelta(minutes=contract.duration_minutes),
                                 clock.now() + timedelta(days=2),
                                 clock.now() + timedelta(days=30), student_id=viewer.id)
        ids["slot"] = slots[0].isoformat()
    return ids


def _admin_ids() -> dict:
    from skileez.auth.models import User
    from skileez.notifications.models import OutboxEmail
    from skileez.payments.models import Dispute, Payment

    return {"email": _first_id(select(OutboxEmail.id).order_by(OutboxEmail.id)),
            "dispute": _first_id(select(Dispute.id).where(Dispute.status == "open")),
            "payment": _first_id(select(Payment.id).where(Payment.status == "disputed")),
            "user": _demo_person("leo.student@skileez.test").id,
            "users": db.session.scalar(select(func.count()).select_from(User))}


# The small set has the viewer's sessions and payments in every one of these states (a
# KeyError while visiting says the data set lost one), and these proposals.
SESSION_STATES = ("pending_payment", "scheduled", "reschedule_requested", "in_progress",
                  "completed", "cancelled", "expired", "missed")
PAYMENT_STATES = ("pending", "failed", "held", "partially_refunded", "disputed", "released",
                  "refunded")
# Only these have a receipt; only the student pays.
FUNDED_PAYMENT_STATES = ("held", "partially_refunded", "disputed", "released", "refunded")
PROPOSAL_STATES = {"student": ("accepted", "declined", "pending"),
                   "coach": ("accepted", "expired", "pending")}
SESSION_PAGES = ("detail", "calendar.ics", "live", "cancel", "complete", "missed", "rate",
                 "reschedule")


def _common(role: str, ids: dict) -> list[Visit]:
    """What every signed-in person can open."""
    visits = [Visit(role, "home", "/"), Visit(role, "dashboard", "/dashboard"),
              Visit(role, "notifications", "/notifications/"),
              Visit(role, "notifications page 2", "/notifications/?page=2"),
              Visit(role, "bell", "/notifications/bell", htmx=True),
              Visit(role, "profile", "/profile"), Visit(role, "password", "/profile/password"),
              Visit(role, "directory", "/coaches/"),
              Visit(role, "directory results", "/coaches/?q=german", htmx=True),
              Visit(role, "coach profile", f"/coaches/{ids['clara']}"),
              Visit(role, "healthz", "/healthz")]
    return visits


def _participant(role: str, ids: dict) -> list[Visit]:
    """What a student or a coach opens about their own contracts, sessions and payments."""
    visits = [Visit(role, "contracts", "/contracts/"),
              Visit(role, "contracts active", "/contracts/?status=active"),
              Visit(role, "contract", f"/contracts/{ids['contract']}"),
              Visit(role, "end contract", f"/contracts/{ids['contract']}/end"),
              Visit(role, "proposals", "/contracts/proposals"),
              Visit(role, "history", "/sessions/"),
              Visit(role, "history fragment", "/sessions/?status=completed", htmx=True),
              Visit(role, "history page 2", "/sessions/?page=2"),
              Visit(role, "history csv", "/sessions/export.csv"),
              Visit(role, "statistics", "/sessions/statistics"),
              Visit(role, "calendar", "/sessions/calendar"),
              Visit(role, "ics feed", f"/sessions/calendar/{ids['token']}.ics"),
              Visit(role, "payments", "/payments/")]
    if role == "student":  # the coach's held list has one page in the small set
        visits.append(Visit(role, "payments page 2", "/payments/?page=2"))
    for status in PROPOSAL_STATES[role]:
        visits.append(Visit(role, f"proposal {status}",
                            f"/contracts/proposals/{ids['proposals'][status]}"))
    for status in SESSION_STATES:
        for page in SESSION_PAGES:
            suffix = "" if page == "detail" else f"/{page}"
            visits.append(Visit(role, f"session {status} {page}",
                                f"/sessions/{ids['sessions'][status]}{suffix}",
                                htmx=page == "live"))
    for status in PAYMENT_STATES:
        payment_id = ids["payments"][status]
        pages = ["status", "dispute"] + (["pay"] if role == "student" else []) \
            + (["receipt"] if status in FUNDED_PAYMENT_STATES else [])
        for page in pages:
            visits.append(Visit(role, f"payment {status} {page}",
                                f"/payments/{payment_id}/{page}"))
        visits.append(Visit(role, f"payment {status} status fragment",
                            f"/payments/{payment_id}/status", htmx=True))
    return visits


def visits_for(role: str, ids: dict) -> list[Visit]:
    if role == "anonymous":
        return [Visit(role, "home", "/"), Visit(role, "login", "/login"),
                Visit(role, "register", "/register"), Visit(role, "healthz", "/healthz"),
                Visit(role, "ics feed", f"/sessions/calendar/{ids['token']}.ics")]
    visits = _common(role, ids)
    if role == "student":
        contract = ids["contract"]
        visits += [
            *_participant(role, ids),
            Visit(role, "propose", f"/contracts/propose/{ids['offering']}"),
            Visit(role, "book", f"/sessions/book/{contract}"),
            Visit(role, "book week", f"/sessions/book/{contract}?week={ids['slot'][:10]}",
                  htmx=True),
            Visit(role, "confirm booking",
                  f"/sessions/book/{contract}/confirm?start={ids['slot'].replace('+', '%2B')}"),
            Visit(role, "payment method", "/payments/card"),
            Visit(role, "book the rest", f"/payments/pattern/{contract}"),
            Visit(role, "book the rest preview",
                  f"/payments/pattern/{contract}?weekday=1&at=18:00"
                  f"&first_day={ids['slot'][:10]}&count=1")]
    if role == "coach":
        visits += [
            *_participant(role, ids),
            Visit(role, "availability", "/coaches/me/availability"),
            Visit(role, "availability preview", "/coaches/me/availability/preview",
                  htmx=True),
            Visit(role, "offerings", "/coaches/me/offerings"),
            Visit(role, "new offering", "/coaches/me/offerings/new"),
            Visit(role, "edit offering", f"/coaches/me/offerings/{ids['offering']}/edit"),
            Visit(role, "edit profile", "/coaches/me/profile"),
            Visit(role, "connect return", "/payments/connect/return"),
            Visit(role, "answer dispute",
                  f"/payments/{ids['payments']['disputed']}/dispute/answer")]
    if role == "admin":
        visits += [Visit(role, "admin", "/admin/"), Visit(role, "admin users", "/admin/users"),
                   Visit(role, "admin users search", "/admin/users?q=student"),
                   Visit(role, "admin payments", "/admin/payments"),
                   Visit(role, "admin payments releasing", "/admin/payments?releasing=24h"),
                   Visit(role, "admin money", "/admin/money"),
                   Visit(role, "admin money csv", "/admin/money.csv"),
                   Visit(role, "admin money entries",
                         "/admin/money/entries?account=escrow&currency=EUR"),
                   Visit(role, "admin money entries csv",
                         "/admin/money/entries.csv?account=refunds"),
                   Visit(role, "admin ledger check", "/admin/payments/ledger-check",
                         htmx=True),
                   Visit(role, "admin payment", f"/admin/payments/{ids['payment']}"),
                   Visit(role, "admin disputes", "/admin/disputes"),
                   Visit(role, "admin dispute", f"/admin/disputes/{ids['dispute']}"),
                   Visit(role, "admin mail", "/admin/mail"),
                   Visit(role, "admin mail detail", f"/admin/mail/{ids['email']}"),
                   Visit(role, "admin mail html", f"/admin/mail/{ids['email']}/html"),
                   Visit(role, "admin jobs", "/admin/jobs"),
                   Visit(role, "admin deactivate",
                         f"/admin/users/{ids['user']}/deactivate")]
    return visits


# --- measuring -----------------------------------------------------------------------------

TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


def _measure(app, clients: dict, visits: list[Visit]) -> dict[str, Measured]:
    """Statements per visit, as the engine runs them. The test's own savepoints (each
    request joins the test's transaction through one) are not the page's statements."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        text = " ".join(statement.split())
        if not text.upper().startswith(TRANSACTION_CONTROL):
            statements.append(text)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    measured = {}
    try:
        for visit in visits:
            statements.clear()
            headers = {"HX-Request": "true"} if visit.htmx else {}
            response = clients[visit.role].get(visit.url, headers=headers)
            response.get_data()  # a streamed export reads its rows while it is sent
            assert response.status_code < 500, (visit.key, response.get_data(as_text=True))
            measured[visit.key] = Measured(response.status_code, list(statements))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return measured


@pytest.fixture(scope="module")
def budget(migrated):
    """Both data sets measured once for the module, in one transaction rolled back after."""
    app = create_app(base_config(migrated))
    with app.app_context():
        engine = db.engine
    connection = engine.connect()
    outer = connection.begin()
    _join_one_transaction(app, connection)
    clock.freeze(FROZEN_AT)
    try:
        yield _measure_both(app)
    finally:
        clock.unfreeze()
        with app.app_context():
            db.session.remove()
        outer.rollback()
        connection.close()
        engine.dispose()


def _write(app, build) -> None:
    with app.app_context():
        with transaction():
            build()
        db.session.remove()


def _signed_in(app) -> dict:
    clients = {"anonymous": Client(app)}
    for role, email in (("student", "sam.student@skileez.test"),
                        ("coach", "clara.coach@skileez.test"),
                        ("admin", "admin@skileez.test")):
        clients[role] = Client(app)
        clients[role].login(email, DEMO_PASSWORD)
    return clients


def _measure_both(app) -> dict:
    _write(app, build_small)
    with app.app_context():
        sam = _demo_person("sam.student@skileez.test")
        ids = {"student": _ids(sam), "coach": _ids(_demo_person("clara.coach@skileez.test")),
               "admin": _admin_ids()}
        ids["anonymous"] = ids["student"]
        ids["admin"].update(clara=ids["student"]["clara"])
        db.session.remove()
    clients = _signed_in(app)
    visits = [v for role in ("anonymous", "student", "coach", "admin")
              for v in visits_for(role, ids[role])]
    small = _measure(app, clients, visits)
    # Pages that write on their first visit (the calendar link) count that visit; the
    # second is what the page costs from then on.
    small_again = _measure(app, clients, visits)
    rows_small = _row_counts(app)
    _write(app, build_larger)
    larger = _measure(app, clients, visits)
    return {"visits": visits, "small": small, "small_again": small_again, "larger": larger,
            "app": app, "rows_small": rows_small, "rows_larger": _row_counts(app)}


COUNTED_TABLES = ("contracts", "sessions", "payments", "refunds", "disputes", "ratings",
                  "reschedule_requests", "notifications", "outbox_emails", "proposals")


def _row_counts(app) -> dict[str, int]:
    from skileez.auth.models import User

    with app.app_context():
        counts = {table: db.session.scalar(select(func.count()).select_from(
            db.metadata.tables[table])) for table in COUNTED_TABLES}
        for role in ("coach", "student"):
            counts[role] = db.session.scalar(select(func.count()).select_from(User)
                                             .where(User.role == role))
        db.session.remove()
    return counts


# --- the tests -------------------------------------------------------------------------------

ROLES = ("anonymous", "student", "coach", "admin")


def _labels(role: str) -> list[str]:
    """The visit table's labels for ``role``, read without data (ids are placeholders), so
    that each page is a test of its own and a failure names it."""
    class AnyId(dict):
        def __missing__(self, key):
            return 0

    placeholder = AnyId(sessions=AnyId(), payments=AnyId(), proposals=AnyId(), slot="")
    return [visit.label for visit in visits_for(role, placeholder)]


def _params() -> list:
    params = []
    for role in ROLES:
        for label in _labels(role):
            key = f"{role} {label}"
            params.append(pytest.param(key, id=key.replace(" ", "-")))
    return params


def _differ(small: list[str], larger: list[str]) -> str:
    extra = Counter(larger) - Counter(small)
    fewer = Counter(small) - Counter(larger)
    lines = [f"  +{n} {s}" for s, n in extra.most_common()]
    lines += [f"  -{n} {s}" for s, n in fewer.most_common()]
    return "\n".join(lines)


def _listing(statements: list[str]) -> str:
    return "\n".join(f"  {n:2}. {s}" for n, s in enumerate(statements, start=1))


@pytest.mark.parametrize("key", _params())
def test_page_within_budget(budget, key):
    """At most BUDGET statements at both sizes, and never more on the larger set."""
    first, small, larger = budget["small"][key], budget["small_again"][key], \
        budget["larger"][key]
    for name, measured in (("first visit", first), ("small set", small),
                           ("larger set", larger)):
        assert len(measured.statements) <= BUDGET, (
            f"{key} ({name}, HTTP {measured.status}): {len(measured.statements)} statements, "
            f"the budget is {BUDGET}:\n" + _listing(measured.statements))
    assert larger.status == small.status, (key, small.status, larger.status)
    assert len(larger.statements) <= len(small.statements), (
        f"{key}: {len(small.statements)} statements on the small set, "
        f"{len(larger.statements)} on the larger; the statements that differ:\n"
        + _differ(small.statements, larger.statements))


def test_every_get_route_is_visited(budget):
    """A GET route nobody visits here has no budget: add it to ``visits_for`` (with the
    URL arguments it needs) or, if it serves no page, to ``NOT_PAGES``."""
    app = budget["app"]
    adapter = app.url_map.bind("skileez.test")
    visited = {adapter.match(visit.url.split("?")[0], method="GET")[0]
               for visit in budget["visits"]}
    routes = {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    assert routes - visited - NOT_PAGES == set()


def test_the_larger_set_is_several_times_the_smaller(budget):
    """A page could otherwise pass by growing only a little between the two sets."""
    small, larger = budget["rows_small"], budget["rows_larger"]
    for table in small:
        assert larger[table] >= LARGER_FACTOR * small[table], (table, small, larger)


def test_the_measured_pages_answered_as_a_person_would_see_them(budget):
    """A page that fails (403, 404) is cheap for the wrong reason: the visits must open
    what the role can open. Refusals on purpose (an action a state does not allow) are 409."""
    wrong = {key: measured.status for key, measured in budget["larger"].items()
             if measured.status in (401, 403, 404, 405)}
    assert wrong == {}


def test_a_list_says_what_each_payment_page_says(budget, clock):
    """The payments lists read the ledger for a page at once (``words.prefetch``); each
    payment's words must be those its own page shows, which reads the ledger alone, and
    the list must not go back to the ledger per payment."""
    from skileez.payments import words
    from skileez.payments.models import Payment

    ledger_reads = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "ledger_entries" in statement:
            ledger_reads.append(statement)

    with budget["app"].test_request_context():
        viewers = [_demo_person("sam.student@skileez.test"),
                   _demo_person("clara.coach@skileez.test")]
        payments = db.session.scalars(select(Payment).order_by(Payment.id)).all()
        alone = {(p.id, v.id): words.describe_money(p, v) for p in payments for v in viewers}
        words.prefetch(payments)
        engine = db.engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            listed = {(p.id, v.id): words.describe_money(p, v)
                      for p in payments for v in viewers}
        finally:
            event.remove(engine, "before_cursor_execute", record)
        db.session.remove()
    headlines = {said.headline for said in alone.values()}
    assert {"Refunded", "Partly refunded", "Disputed — on hold"} <= headlines, headlines
    assert listed == alone
    assert ledger_reads == []
