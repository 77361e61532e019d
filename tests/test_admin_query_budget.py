"""Every admin page costs a fixed number of SQL statements, whatever the data holds.

Each page is read on a small data set and again after more of everything has been
added (more people, payments, disputes, refunds, payouts, emails, audit events):
a page whose count grows with the data loads rows one at a time (a lazy load from a
template, a query per row) and would be slow at real size. Statements are counted on
the engine, so the count is exact; the failure prints them.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, update

from skileez.auth.models import User
from skileez.extensions import db
from skileez.notifications.models import OutboxEmail
from skileez.payments import ledger
from skileez.payments import operations as money
from skileez.payments.models import Dispute, Payment, Payout, Refund
from skileez.sessions.models import Session
from skileez.sessions.operations import complete

BUDGET = 10
SAVEPOINT_STATEMENTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
SLOT = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)


@contextmanager
def counted_statements(app):
    """Every statement the engine runs inside the block, as (SQL, parameters)."""
    statements: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        # The savepoints the test's shared transaction wraps each unit of work in are
        # not the page's: in production that is a BEGIN and a COMMIT the driver sends.
        if not statement.startswith(SAVEPOINT_STATEMENTS):
            statements.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    # The test's shared connection (rolled back at the end) or the app's engine.
    target = engine.engine if hasattr(engine, "engine") else engine
    event.listen(target, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(target, "before_cursor_execute", record)


def statements_for(app, client, url: str, *, htmx: bool = False) -> list:
    headers = {"HX-Request": "true"} if htmx else {}
    with counted_statements(app) as statements:
        response = client.get(url, headers=headers)
        response.get_data()  # a streamed export reads its rows while it is sent
    assert response.status_code == 200, (url, response.status_code)
    return statements


def described(statements: list) -> str:
    return "\n".join(f"{n:3d}. {sql} {params!r}" for n, (sql, params)
                     in enumerate(statements, start=1))


class World:
    """People, sessions and money in every state an admin page lists; ``grow`` adds more.

    Each round brings a new coach and a new student, so a page that loads the people of
    each row one by one costs more statements per round (the same two people would come
    from the identity map and hide it).
    """

    def __init__(self, app, make_user, make_offering, add_hours, make_contract, paid_session,
                 clock):
        self.app, self.clock = app, clock
        self.make_user, self.make_offering = make_user, make_offering
        self.add_hours, self.make_contract = add_hours, make_contract
        self.paid_session = paid_session
        self.rounds = 0
        self.admin = make_user("admin", email="root@example.com", name="Root Admin",
                               timezone="Europe/London")

    def grow(self, rounds: int) -> None:
        for _ in range(rounds):
            self._one_round()

    def _one_round(self) -> None:
        n = self.rounds = self.rounds + 1
        self.clock.freeze(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
        coach = self.make_user("coach", name=f"Coach {n}", email=f"coach{n}@example.com")
        student = self.make_user(name=f"Student {n}", email=f"student{n}@example.com",
                                 timezone="America/New_York")
        offering = self.make_offering(coach, price=5000)
        self.add_hours(coach, [0, 1, 2, 3, 4], "09:00", "17:00")
        contract = self.make_contract(student, offering, sessions=10)
        sessions = [self.paid_session(student, contract, SLOT + timedelta(hours=h))
                    for h in range(0, 8, 2)]
        self.clock.freeze(SLOT + timedelta(hours=9))
        with self.app.app_context():
            admin = db.session.get(User, self.admin.id)
            for booked in sessions:
                complete(db.session.get(Session, booked.id))
            db.session.commit()
            disputed, resolved, released, refunded = (
                db.session.get(Session, s.id).payment for s in sessions)
            money.open_dispute(disputed, db.session.get(User, student.id),
                               reason="The coach left after ten minutes.")
            dispute = money.open_dispute(resolved, db.session.get(User, student.id),
                                         reason="Half the session was lost to noise.")
            db.session.commit()
            money.resolve_dispute(dispute, admin, resolution="partial", refund_minor=1500,
                                  note="Half refunded.")
            money.release(released, actor=admin, reason="checked with both")
            money.refund(refunded, 2000, actor=admin, reason="goodwill")
            db.session.commit()
            # A transfer and a refund the provider refused, as the retry loop leaves them.
            for model, payment in ((Payout, released), (Refund, refunded)):
                db.session.execute(update(model).where(model.payment_id == payment.id)
                                   .values(status="failed", last_error="Refused", attempts=1))
            db.session.commit()

    def check_the_ledger(self) -> None:
        """An admin asked for a check; in-process jobs ran it when that was committed."""
        with self.app.app_context():
            ledger.request_check(actor=db.session.get(User, self.admin.id))
            db.session.commit()

    def ids(self) -> dict:
        with self.app.app_context():
            return {
                "payment": db.session.scalar(select(Payment.id).order_by(Payment.id.desc())),
                "email": db.session.scalar(select(OutboxEmail.id)
                                           .order_by(OutboxEmail.id.desc())),
                "dispute": db.session.scalar(select(Dispute.id)),
            }


PAGES = {
    "overview": lambda ids: "/admin/",
    "users": lambda ids: "/admin/users",
    "users fragment": lambda ids: "/admin/users?q=coach",
    "payments": lambda ids: "/admin/payments",
    "payments filtered": lambda ids: "/admin/payments?status=disputed&q=student",
    "payments releasing": lambda ids: "/admin/payments?releasing=7d",
    "money": lambda ids: "/admin/money",
    "money csv": lambda ids: "/admin/money.csv",
    "money entries": lambda ids: "/admin/money/entries?account=escrow&currency=EUR",
    "money entries of a month": lambda ids: "/admin/money/entries?account=platform_revenue"
                                            "&month=2026-03",
    "money entries csv": lambda ids: "/admin/money/entries.csv?account=coach_payable",
    "payment": lambda ids: f"/admin/payments/{ids['payment']}",
    "disputes": lambda ids: "/admin/disputes",
    "resolved disputes": lambda ids: "/admin/disputes?status=resolved",
    "mail": lambda ids: "/admin/mail",
    "mail detail": lambda ids: f"/admin/mail/{ids['email']}",
    "jobs": lambda ids: "/admin/jobs",
    "ledger check fragment": lambda ids: "/admin/payments/ledger-check",
}
FRAGMENTS = {"users fragment", "ledger check fragment"}


@pytest.fixture
def world(app, make_user, make_offering, add_hours, make_contract, paid_session, clock):
    return World(app, make_user, make_offering, add_hours, make_contract, paid_session,
                 clock)


def test_every_admin_page_stays_within_budget_as_the_data_grows(app, client, world):
    world.grow(1)
    world.check_the_ledger()
    client.login("root@example.com")
    small = {name: statements_for(app, client, url(world.ids()), htmx=name in FRAGMENTS)
             for name, url in PAGES.items()}
    world.grow(3)
    world.check_the_ledger()
    larger = {name: statements_for(app, client, url(world.ids()), htmx=name in FRAGMENTS)
              for name, url in PAGES.items()}
    # The larger set is really on the pages (a page that lists nothing costs nothing).
    assert client.get("/admin/disputes").get_data(as_text=True).count("Dispute #") == 4
    assert client.get("/admin/disputes?status=resolved").get_data(
        as_text=True).count("Dispute #") == 4
    assert client.get("/admin/payments").get_data(as_text=True).count(
        '<td><a href="/admin/payments/') == 16
    report = {name: (len(small[name]), len(larger[name])) for name in PAGES}
    print("\nstatements (small, larger):", report)
    for name in PAGES:
        assert len(small[name]) <= BUDGET, (
            f"{name}: {len(small[name])} statements on the small data set (budget "
            f"{BUDGET}):\n{described(small[name])}")
        assert len(larger[name]) <= len(small[name]), (
            f"{name}: {len(small[name])} statements on the small data set, "
            f"{len(larger[name])} on the larger one:\n{described(larger[name])}")
