"""Issue 11's new routes, attacked as a hostile or careless person would.

Each test here was a defect found by trying: a redirect a browser follows off the
site, money exported as text a spreadsheet cannot add, a time read in the server's
zone instead of the student's.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from skileez.extensions import db
from skileez.payments import gateway
from skileez.payments.models import Payment, TransferReversal
from skileez.payments.pattern import weekly_starts
from skileez.sessions.models import Session
from tests.conftest import Client
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import localstripe  # noqa: F401
from tests.test_admin_money import admin_client, books  # noqa: F401
from tests.test_book_pattern import (  # noqa: F401
    FIRST_DAY,
    confirm,
    evening,
    save_test_card,
    signed_in,
)
from tests.test_chargebacks import paid, released  # noqa: F401

pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")

# Browsers read a backslash as a slash and drop tabs and newlines, so each of these
# is "//evil.example": another site.
OFF_SITE = ["/\\evil.example", "/\\/evil.example", "/\t/evil.example", "/\n/evil.example",
            "\\/evil.example"]


@pytest.mark.parametrize("next_url", OFF_SITE)
def test_the_card_pages_next_never_leads_off_the_site(app, evening, next_url):  # noqa: F811
    """A link to the card page with a crafted ``next`` must not send the student away."""
    client = signed_in(app, "sam@example.com")
    page = client.get("/payments/card", query_string={"next": next_url})
    assert page.status_code == 200
    assert "evil.example" not in page.get_data(as_text=True)
    response = client.post("/payments/card/test-save", {"card": "ok", "next": next_url},
                           token_page="/payments/card")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/payments/card")


def test_a_path_of_the_site_is_still_followed(app, evening):  # noqa: F811
    client = signed_in(app, "sam@example.com")
    target = f"/payments/pattern/{evening['contract'].id}?weekday=1"
    response = client.post("/payments/card/test-save", {"card": "ok", "next": target},
                           token_page="/payments/card")
    assert response.headers["Location"].endswith(target)


def test_negative_amounts_in_the_entries_csv_stay_numbers(app, admin_client, books):  # noqa: F811
    """Half of a ledger is negative; a quote before '-44.91' makes it text no sum adds."""
    response = admin_client.get("/admin/money/entries.csv?account=escrow&currency=EUR")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    amounts = [row[9] for row in rows[1:]]
    assert any(amount.startswith("-") for amount in amounts), amounts
    assert not any(amount.startswith("'") for amount in amounts), amounts
    money_rows = list(csv.reader(io.StringIO(
        admin_client.get("/admin/money.csv").get_data(as_text=True))))
    assert not any(row[3].startswith("'") for row in money_rows[1:])


def test_a_start_without_a_zone_is_refused_not_read_in_the_servers_zone(
        app, evening):  # noqa: F811
    """'2026-10-13T18:00' says no zone: the server's own (UTC here) is not the student's."""
    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    response = client.post(f"/payments/pattern/{evening['contract'].id}",
                           {"weekday": 1, "at": "18:00", "first_day": FIRST_DAY.isoformat(),
                            "count": 1, "starts": ["2026-10-13T18:00:00"]},
                           token_page=f"/payments/pattern/{evening['contract'].id}")
    assert response.status_code == 422
    assert "could not be read" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0


def test_confirming_with_nothing_ticked_says_so_beside_the_times(app, evening):  # noqa: F811
    """Un-ticking every week must answer 'choose at least one', under the fresh times."""
    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    response = confirm(client, evening["contract"].id, [], count=2)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose at least one time to book." in body
    assert 'data-testid="pattern-preview"' in body
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0


class StripeLikeIdempotency(gateway.TestGateway):
    """The test gateway, slowed down like a real network call, charging once per
    idempotency key as Stripe does (a repeated key gets the first answer back)."""

    def __init__(self):
        super().__init__()
        self.charged: set[str] = set()
        self.lock = threading.Lock()

    def charge_saved_card(self, **kwargs):
        time.sleep(0.3)
        with self.lock:
            self.charged.add(kwargs["idempotency_key"])
        return super().charge_saved_card(**kwargs)


@pytest.mark.real_commits
def test_two_clicks_on_pay_with_saved_card_at_once_charge_the_card_once(app, coaching,
                                                                         book_session, clock):
    """A double click (or two tabs) while the first charge is at Stripe must not take the
    money twice: the second payment would be 'left alone' here and kept by Stripe."""
    clock.freeze(datetime(2026, 3, 9, 9, 0, tzinfo=UTC))
    fake = app.extensions["skileez_gateway"] = StripeLikeIdempotency()
    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    session = book_session(coaching["student"], coaching["contract"],
                           datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    clients = []
    for _ in range(2):
        other = signed_in(app, "sam@example.com")
        clients.append((other, other.csrf_token(f"/payments/{payment_id}/pay")))
    barrier, statuses = threading.Barrier(2), []

    def click(index):
        each, token = clients[index]
        barrier.wait()
        statuses.append(each.http.post(f"/payments/{payment_id}/saved-card",
                                       data={"csrf_token": token}).status_code)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303, 303], statuses
    assert len(fake.charged) == 1, fake.charged
    with app.app_context():
        assert db.session.get(Payment, payment_id).status == "held"


def test_more_times_than_sessions_asked_for_books_none(app, evening):  # noqa: F811
    """The page offers one time a week for the count chosen; a form with more ticked
    times (edited, or replayed from a longer preview) must not charge for extra ones."""
    client = signed_in(app, "sam@example.com")
    save_test_card(client)
    starts = weekly_starts(1, 18 * 60, FIRST_DAY, 5, "Europe/Berlin")
    response = confirm(client, evening["contract"].id, starts, count=2)
    assert response.status_code == 422
    assert "Choose at most 2 times, one a week." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Session)) == 0


@pytest.mark.real_commits
@pytest.mark.stripe
def test_two_admins_reversing_one_payout_at_once_reverse_it_once(released):  # noqa: F811
    """Both see a paid payout; one reverses it, the other is told it is being reversed
    (409), never a 500 from the second reversal row."""
    state = released
    url = f"/admin/payments/{state['payment_id']}"
    admins = []
    for _ in range(2):
        admin = Client(state["app"])
        admin.login("root@example.com")
        admins.append((admin, admin.csrf_token(url)))
    barrier, statuses = threading.Barrier(2), []

    def reverse(index):
        admin, token = admins[index]
        barrier.wait()
        try:
            statuses.append(admin.http.post(f"{url}/reverse-payout", data={
                "csrf_token": token, "reason": "Fraud finding: no session."}).status_code)
        except Exception as error:
            statuses.append(repr(error)[:200])

    threads = [threading.Thread(target=reverse, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses, key=str) == [303, 409], statuses
    assert len(state["connect"].reversals) == 1
    with state["app"].app_context():
        assert db.session.scalar(select(func.count()).select_from(TransferReversal)) == 1
