"""The admin money overview: every figure is what the ledger says, and leads to its rows.

A scripted set of payments puts money in every place it can be (held, due to release,
released and paid out, refunded, disputed, owed to coaches for three different reasons,
a transfer that failed), then the page, its links and its CSV are read as an admin reads
them. Each figure is checked twice: against the amounts the script moved, and against
the ledger's own balance, so neither a wrong query nor a wrong script can hide.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from skileez.auth.models import User
from skileez.coaches.operations import profile_for
from skileez.extensions import db
from skileez.payments import gateway, ledger
from skileez.payments import operations as money
from skileez.payments.models import Dispute, LedgerEntry, Payment, Payout
from skileez.payments.overview import payable
from skileez.sessions.models import Session
from skileez.sessions.operations import complete
from tests.conftest import Client

pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")

SLOT = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
PRICE, FEE, NET = 4990, 499, 4491  # the coaching fixture's price; the 10 % fee; the rest
PAGE = "/admin/money"


@dataclass
class FailingTransfers(gateway.TestGateway):
    """The test gateway, except Stripe refuses transfers for the payments named here."""

    refuse_payments: frozenset[str] = frozenset()

    def create_transfer(self, **kwargs):
        if kwargs["metadata"]["payment_id"] in self.refuse_payments:
            raise gateway.GatewayError("Your destination account needs to have at least one of the "
                               "following capabilities enabled: transfers", retryable=True)
        return super().create_transfer(**kwargs)


def text(response) -> str:
    """What a person reads: the page without its tags, spaces collapsed."""
    words = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+", " ", html.unescape(words))


def figure(body: str, testid: str) -> str:
    """The text of the element marked ``data-testid=testid`` (tags inside removed)."""
    match = re.search(rf'data-testid="{re.escape(testid)}"[^>]*>(.*?)</(div|td|strong|a)>',
                      body, re.S)
    assert match, f"no {testid} on the page"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def link(body: str, testid: str) -> str:
    """Where the figure ``testid`` links to (its own link, or the link around it)."""
    match = re.search(rf'data-testid="{re.escape(testid)}"[^>]*>\s*<a [^>]*href="([^"]+)"',
                      body) \
        or re.search(rf'<a href="([^"]+)"[^>]*data-testid="{re.escape(testid)}"', body)
    assert match, f"{testid} links nowhere"
    return html.unescape(match.group(1))


@pytest.fixture
def books(app, make_user, make_offering, add_hours, make_contract, paid_session, clock):
    """Money in every place, for three coaches; returns the people and payments by role.

    Clara has no Stripe account; Olga started onboarding and did not finish; Marco is
    connected, but Stripe refused his second transfer.
    """
    app.extensions["skileez_gateway"] = FailingTransfers()
    admin = make_user("admin", email="root@example.com", name="Root Admin",
                      timezone="Europe/London")
    student = make_user(name="Sam Rivera", email="sam@example.com",
                        timezone="America/New_York")
    coaches, contracts, students = {}, {}, {"Clara": student}
    for name in ("Clara", "Olga", "Marco"):
        coach = make_user("coach", name=f"{name} Coach", email=f"{name.lower()}@example.com")
        add_hours(coach, [0, 1, 2, 3, 4], "08:00", "18:00")
        offering = make_offering(coach, price=PRICE, currency="EUR")
        learner = students.setdefault(name, make_user(email=f"student-of-{name.lower()}@x.org"))
        coaches[name], contracts[name] = coach, make_contract(learner, offering, sessions=6)
    clara = [paid_session(student, contracts["Clara"], SLOT + timedelta(hours=h))
             for h in (0, 2, 4, 6)]
    later = paid_session(student, contracts["Clara"], SLOT + timedelta(days=6))
    olga = paid_session(students["Olga"], contracts["Olga"], SLOT + timedelta(hours=1))
    marco = [paid_session(students["Marco"], contracts["Marco"], SLOT + timedelta(hours=h))
             for h in (3, 5)]
    clock.freeze(SLOT + timedelta(hours=8))  # every session but ``later`` is over
    with app.app_context():
        with_account = profile_for(db.session.get(User, coaches["Marco"].id))
        with_account.stripe_account_id, with_account.payouts_enabled = "acct_marco", True
        profile_for(db.session.get(User, coaches["Olga"].id)).stripe_account_id = "acct_olga"
        for booked in [*clara, olga, *marco]:
            complete(db.session.get(Session, booked.id))
        db.session.commit()
        payment = {key: db.session.get(Session, s.id).payment for key, s in (
            ("released", clara[0]), ("part refunded", clara[1]), ("disputed", clara[2]),
            ("held", clara[3]), ("not yet due", later), ("olga", olga),
            ("paid out", marco[0]), ("failed", marco[1]))}
        ids = {key: p.id for key, p in payment.items()}
        app.extensions["skileez_gateway"].refuse_payments = frozenset({str(ids["failed"])})
        boss = db.session.get(User, admin.id)
        for key in ("released", "olga", "paid out", "failed"):
            money.release(payment[key], actor=boss, reason="checked with both")
        money.refund(payment["part refunded"], 2000, actor=boss, reason="goodwill")
        money.open_dispute(payment["disputed"], db.session.get(User, student.id),
                           reason="The coach left after ten minutes.")
        db.session.commit()  # the payout jobs run in this process as this commits
        payouts = {p.payment_id: p for p in db.session.scalars(select(Payout))}
        assert [payouts[ids[key]].status for key in ("released", "olga", "paid out", "failed")] \
            == ["payable", "payable", "paid", "failed"]
        failed = payouts[ids["failed"]]
        failed_payout = (failed.id, failed.next_attempt_at, failed.last_error)
    clock.freeze(SLOT + timedelta(hours=9))
    return {"admin": admin, "student": student, "coaches": coaches, "ids": ids,
            "failed payout": failed_payout}


@pytest.fixture
def admin_client(app, books):
    client = Client(app)
    client.login("root@example.com")
    return client


def test_the_figures_are_what_the_ledger_holds(app, admin_client, books):
    ids = books["ids"]
    body = admin_client.get(PAGE).get_data(as_text=True)
    # In escrow: the part-refunded one (49.90 - 20.00), the disputed one, the two held.
    escrow = (PRICE - 2000) + PRICE + PRICE + PRICE
    with app.app_context():
        assert ledger.balance("escrow", currency="EUR") == escrow
        assert ledger.balance("platform_revenue", currency="EUR") == 4 * FEE
        assert ledger.balance("refunds", currency="EUR") == 2000
    assert figure(body, "escrow-EUR") == "€179.60"
    assert figure(body, "balance-escrow-EUR") == "€179.60"
    assert figure(body, "balance-platform_revenue-EUR") == "€19.96"
    assert figure(body, "balance-paid_out-EUR") == "€44.91"
    assert figure(body, "balance-coach_payable-EUR") == "€134.73"  # three coaches' 44.91
    assert figure(body, "balance-student_funding-EUR") == "-€399.20"  # eight paid
    # Released tomorrow at 08:00 UTC + 24 h: the held one and the part-refunded one, not
    # the disputed one, nor the one whose session has not happened.
    for window in ("24h", "7d"):
        assert figure(body, f"releasing-{window}-EUR") == "€79.80"
        assert figure(body, f"releasing-{window}-EUR-count") == "2 payments"
    assert figure(body, "revenue-2026-03-EUR") == "€19.96"
    assert figure(body, "refunds-month-EUR") == "€20.00"
    assert figure(body, "refunds-total-EUR") == "€20.00"
    assert figure(body, "disputes-student-EUR-count") == "1"
    assert figure(body, "disputes-student-EUR") == "€49.90"
    assert figure(body, "disputes-stripe-none") == "0"
    failed_id, _, error = books["failed payout"]
    assert f"#{failed_id}" in figure(body, f"failed-{failed_id}")
    assert f'href="/admin/payments/{ids["failed"]}"' in body
    assert error in text(admin_client.get(PAGE))
    # The chart is an image drawn on the server: no script in it, the months on its axis.
    [chart] = re.findall(r'src="data:image/svg\+xml;charset=utf-8;base64,([^"]+)"[^>]*'
                         r'data-testid="revenue-chart"', body)
    svg = base64.b64decode(chart).decode()
    assert "<script" not in svg and "Mar 2026" in svg and "Apr 2025" in svg


def test_each_coach_is_owed_their_share_and_the_page_says_why_it_waits(app, admin_client,
                                                                      books):
    coaches = books["coaches"]
    body = admin_client.get(PAGE).get_data(as_text=True)
    with app.app_context():
        for name in ("Clara", "Olga", "Marco"):
            assert ledger.balance("coach_payable", currency="EUR",
                                  coach_id=coaches[name].id) == NET
    reasons = {name: figure(body, f"payable-{coaches[name].id}-EUR-reason")
               for name in coaches}
    for name in coaches:
        assert figure(body, f"payable-{coaches[name].id}-EUR-amount") == "€44.91"
    assert reasons["Clara"].startswith("No connected Stripe account")
    assert reasons["Olga"].startswith("Stripe onboarding unfinished")
    _, next_attempt, error = books["failed payout"]
    assert reasons["Marco"].startswith(f"Transfer failed: {error}")
    # The retry time in the admin's zone (London, GMT in March), zone named.
    assert "next attempt Wed 11 Mar, 17:05 GMT" in reasons["Marco"]
    assert next_attempt == SLOT + timedelta(hours=8, minutes=5)


def test_each_figure_links_to_the_rows_that_make_it(app, admin_client, books):
    ids, coaches = books["ids"], books["coaches"]
    body = admin_client.get(PAGE).get_data(as_text=True)
    for testid, expected in (("escrow-EUR", "€179.60"), ("revenue-2026-03-EUR", "€19.96"),
                             ("refunds-month-EUR", "€20.00"),
                             ("refunds-total-EUR", "€20.00"),
                             (f"payable-{coaches['Marco'].id}-EUR-amount", "€44.91")):
        rows = admin_client.get(link(body, testid))
        assert rows.status_code == 200
        page = rows.get_data(as_text=True)
        assert figure(page, "entries-total-EUR") == expected, testid
    # The escrow rows are every escrow entry: one per hold, release and refund.
    escrow = admin_client.get(link(body, "escrow-EUR")).get_data(as_text=True)
    with app.app_context():
        entry_ids = db.session.scalars(select(LedgerEntry.id)
                                       .where(LedgerEntry.account == "escrow")).all()
    assert sorted(int(n) for n in re.findall(r'data-testid="entry-(\d+)"', escrow)) == \
        sorted(entry_ids)
    assert "Times are in your zone, Europe/London." in text(admin_client.get(
        link(body, "escrow-EUR")))
    # Marco's rows: his release and his payout's share, each linked to its payment.
    marco = admin_client.get(link(body, f"payable-{coaches['Marco'].id}-EUR-amount"))
    assert f'href="/admin/payments/{ids["paid out"]}"' in marco.get_data(as_text=True)
    # Releasing soon lists exactly the two payments that make the figure.
    listed = admin_client.get(link(body, "releasing-24h-EUR")).get_data(as_text=True)
    shown = set(re.findall(r'<td><a href="/admin/payments/(\d+)">', listed))
    assert shown == {str(ids["held"]), str(ids["part refunded"])}
    assert "releases within the next 24 hours" in text(admin_client.get(
        link(body, "releasing-24h-EUR")))
    assert link(body, "disputes-student-EUR-count") == "/admin/disputes"


def test_the_csv_says_what_the_page_says(app, admin_client, books):
    coaches = books["coaches"]
    response = admin_client.get("/admin/money.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.is_streamed
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["section", "item", "currency", "amount", "count", "detail"]
    by_key = {(r[0], r[1], r[2]): r for r in rows[1:]}
    assert by_key[("balance", "escrow", "EUR")][3] == "179.60"
    # A negative amount is a number a spreadsheet adds up, not text behind a quote.
    assert by_key[("balance", "student_funding", "EUR")][3] == "-399.20"
    assert by_key[("balance", "platform_revenue", "EUR")][3] == "19.96"
    assert by_key[("releasing", "within 24h", "EUR")][3:5] == ["79.80", "2"]
    assert by_key[("revenue", "2026-03", "EUR")][3] == "19.96"
    assert by_key[("refunds", "this month (2026-03)", "EUR")][3] == "20.00"
    assert by_key[("refunds", "total", "EUR")][3] == "20.00"
    assert by_key[("open disputes", "student", "EUR")][3:5] == ["49.90", "1"]
    payables = [r for r in rows if r[0] == "payable"]
    assert sorted(r[1] for r in payables) == sorted(
        f"{name} Coach (coach {coaches[name].id})" for name in coaches)
    assert {r[3] for r in payables} == {"44.91"}
    marco = next(r for r in payables if r[1].startswith("Marco"))
    assert marco[5].startswith("Transfer failed") and "GMT" in marco[5]
    [failed] = [r for r in rows if r[0] == "failed transfer"]
    assert failed[3] == "44.91" and "capabilities" in failed[5]


def test_the_entries_csv_is_the_entries_listed(app, admin_client, books):
    response = admin_client.get("/admin/money/entries.csv?account=refunds&currency=EUR")
    assert response.status_code == 200 and response.is_streamed
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:5] == ["entry", "transaction", "date", "time", "time zone"]
    [refund] = rows[1:]
    assert refund[6] == "refunds" and refund[9] == "20.00"
    assert refund[4] == "Europe/London" and refund[10] == str(books["ids"]["part refunded"])


def test_a_formula_in_a_coachs_name_reaches_the_csv_as_text(app, admin_client, books):
    """A coach can name themselves anything; a spreadsheet must not run it."""
    with app.app_context():
        marco = db.session.get(User, books["coaches"]["Marco"].id)
        marco.name = "=HYPERLINK(\"http://evil\")"
        db.session.commit()
    body = admin_client.get("/admin/money.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in body and "\n=HYPERLINK" not in body and ",=HYPERLINK" not in body


def test_revenue_falls_in_the_admins_own_calendar_month(app, make_user, coaching,
                                                        paid_session, clock):
    """Released at 23:30 UTC on 31 March: 1 April in Tokyo, so April's revenue there."""
    admin = make_user("admin", email="tokyo@example.com", timezone="Asia/Tokyo")
    session = paid_session(coaching["student"], coaching["contract"], SLOT)
    clock.freeze(datetime(2026, 3, 31, 23, 30, tzinfo=UTC))
    with app.app_context():
        complete(db.session.get(Session, session.id))
        money.release(db.session.get(Session, session.id).payment,
                      actor=db.session.get(User, admin.id), reason="checked")
        db.session.commit()
    client = Client(app)
    client.login("tokyo@example.com")
    body = client.get(PAGE).get_data(as_text=True)
    assert figure(body, "revenue-2026-04-EUR") == "€4.99"
    assert 'data-testid="revenue-2026-03-EUR"' not in body
    assert "Times and months are in your zone, Asia/Tokyo." in text(client.get(PAGE))
    april = client.get(link(body, "revenue-2026-04-EUR")).get_data(as_text=True)
    assert figure(april, "entries-total-EUR") == "€4.99"
    march = client.get("/admin/money/entries?account=platform_revenue&month=2026-03")
    assert "No ledger entries match." in text(march)


def test_empty_books_say_so(app, make_user, client):
    make_user("admin", email="root@example.com")
    client.login("root@example.com")
    page = text(client.get(PAGE))
    assert "Every coach has been paid everything released to them." in page
    assert "No failed transfers." in page
    assert "No platform revenue in the last 12 months." in page


@pytest.mark.parametrize("role", ["student", "coach"])
@pytest.mark.parametrize("url", [PAGE, "/admin/money.csv", "/admin/money/entries",
                                 "/admin/money/entries.csv"])
def test_only_admins_see_the_money(app, make_user, client, role, url):
    make_user(role, email=f"{role}@example.com")
    client.login(f"{role}@example.com")
    assert client.get(url).status_code == 403


def test_the_admin_menu_leads_to_money_before_payments(app, make_user, client):
    make_user("admin", email="root@example.com")
    client.login("root@example.com")
    nav = client.get("/admin/").get_data(as_text=True)
    assert nav.index('href="/admin/money"') < nav.index('href="/admin/payments"')


def test_nonsense_filters_are_ignored_not_fatal(app, make_user, client):
    make_user("admin", email="root@example.com")
    client.login("root@example.com")
    for query in ("account=nope&month=2026-13&coach=-1&currency=%00%00",
                  "month=9999-01&coach=99999999999&page=abc", "currency=€€€"):
        assert client.get(f"/admin/money/entries?{query}").status_code == 200
        assert client.get(f"/admin/money/entries.csv?{query}").status_code == 200
    assert client.get("/admin/payments?releasing=forever").status_code == 200


def test_a_chargeback_is_counted_apart_from_student_disputes(app, admin_client, books):
    """A card dispute (opened by the bank through Stripe) is a chargeback."""
    with app.app_context():
        payment = db.session.get(Payment, books["ids"]["held"])
        db.session.add(Dispute(payment_id=payment.id, source="stripe", status="open",
                               reason="fraudulent"))
        db.session.commit()
    body = admin_client.get(PAGE).get_data(as_text=True)
    assert figure(body, "disputes-stripe-EUR-count") == "1"
    assert figure(body, "disputes-stripe-EUR") == "€49.90"
    assert figure(body, "disputes-student-EUR-count") == "1"
    # An open dispute holds the release: the figure no longer counts that payment.
    assert figure(body, "releasing-24h-EUR-count") == "1 payment"


@pytest.mark.parametrize(("profile", "payouts", "expected"), [
    ((None, False), {"failed": 1}, "No connected Stripe account"),
    (("acct_1", False), {"failed": 1}, "Stripe onboarding unfinished"),
    (("acct_1", True), {"failed": 1, "pending": 1}, "Transfer failed: Refused; retried"),
    (("acct_1", True), {"pending": 1}, "Transfer queued"),
    (("acct_1", True), {"reversed": 1}, "A transfer was reversed"),
    (("acct_1", True), {"payable": 1}, "Payable: the account is ready now"),
])
def test_the_reason_a_balance_waits_is_the_first_that_applies(profile, payouts, expected):
    """Nothing to transfer to outranks a failure; a failure outranks a queued transfer."""
    retry = SLOT + timedelta(minutes=5)
    row = SimpleNamespace(coach_id=1, name="Clara", currency="EUR", balance=NET,
                          stripe_account_id=profile[0], payouts_enabled=profile[1],
                          failed=0, pending=0, payable=0, reversed=0, next_attempt=retry,
                          last_error="Refused")
    for status, count in payouts.items():
        setattr(row, status, count)
    owed = payable(row)
    assert owed.reason.startswith(expected)
    assert owed.balance_minor == NET
    # A time is named only for a transfer that will be tried: failing or queued.
    assert owed.when == (retry if expected.startswith("Transfer") else None)
