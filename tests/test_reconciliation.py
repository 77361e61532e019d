"""Issue 11, reconciliation as a job: our payments, refunds and payouts compared with
Stripe's, nightly and when an admin asks, every difference an item on the money page.

Against localstripe and the fake Connect in front of it, through the real ``stripe``
library. What happens "at Stripe" (a refund in the dashboard, a reversed transfer, a
charge from elsewhere) is done at localstripe or the fake directly, never through the
app, so the app hears of it only by comparing.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from redis import Redis
from rq import Queue
from sqlalchemy import select, update

from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.jobs.reconciliation import reconcile_if_due
from skileez.jobs.sweep import sweep
from skileez.payments import reconciliation
from skileez.payments.models import (
    Payment,
    Payout,
    ReconciliationItem,
    ReconciliationRun,
)
from tests.conftest import Client
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import SECRET_KEY, localstripe  # noqa: F401
from tests.test_jobs import run_worker
from tests.test_payments import SLOT
from tests.test_refunds_from_stripe import (
    charge_refunded,
    deliver,
    paid,  # noqa: F401
    refund_in_stripe,
    release_time_passes,
)

pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")

PAGE = "/admin/payments"
WORKER_QUEUES = ("default", "mail", "payouts", "reconciliation")


def text(response) -> str:
    """What a person reads: the page without its tags, spaces collapsed."""
    words = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+", " ", html.unescape(words)).replace(" ,", ",").replace(" .", ".")


def admin_of(app, make_user, email="root@example.com") -> Client:
    make_user("admin", email=email, name="Root Admin", timezone="UTC")
    client = Client(app)
    client.login(email)
    return client


def compare_now(client, **kwargs):
    return client.post(f"{PAGE}/reconciliation", token_page=PAGE, **kwargs)


def runs(app) -> list[ReconciliationRun]:
    with app.app_context():
        rows = db.session.scalars(select(ReconciliationRun).order_by(ReconciliationRun.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def items(app) -> list[ReconciliationItem]:
    with app.app_context():
        rows = db.session.scalars(select(ReconciliationItem)
                                  .order_by(ReconciliationItem.id)).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def created_filter(request) -> int:
    return int(request.params["created"]["gt"])


# --- without Stripe -----------------------------------------------------------------------

def test_with_the_test_gateway_a_run_says_there_is_nothing_to_compare(app, make_user, clock):
    admin = admin_of(app, make_user)
    page = text(admin.get(PAGE))
    assert "have not been compared with Stripe's yet" in page
    assert "compared every night at 03:00 UTC" in page
    assert runs(app) == []  # looking ran nothing

    response = compare_now(admin)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{PAGE}#reconciliation")
    page = text(admin.get(PAGE))
    assert "Nothing to compare: payments go through the test gateway" in page
    assert "Last compared Tue 10 Mar 2026, 09:00 UTC (just now) · asked for by Root Admin" \
        in page
    [run] = runs(app)
    assert (run.source, run.finished_at is not None, run.error) == ("admin", True, None)
    assert run.since == clock.now() - timedelta(days=90)  # the first run's look back
    assert items(app) == []


def test_the_trigger_is_a_post_with_csrf_for_admins_only(app, make_user, clock):
    admin = admin_of(app, make_user)
    assert admin.post(f"{PAGE}/reconciliation", csrf=False).status_code == 400
    make_user(email="sam@example.com")
    student = Client(app)
    student.login("sam@example.com")
    assert student.post(f"{PAGE}/reconciliation", token_page="/dashboard").status_code == 403
    assert admin.get(f"{PAGE}/reconciliation").status_code == 405  # nothing runs on a GET
    assert runs(app) == []


@pytest.mark.redis
def test_with_redis_the_admin_queues_the_job_once_and_a_worker_runs_it(make_app, redis_url,
                                                                      make_user, clock):
    app = make_app(REDIS_URL=redis_url)
    admin = admin_of(app, make_user)
    queue = Queue("reconciliation", connection=Redis.from_url(redis_url))
    assert "A comparison with Stripe has been queued." in text(
        compare_now(admin, follow_redirects=True))
    page = text(admin.get(PAGE))
    assert "A comparison asked for at 09:00 UTC is waiting for a worker." in page
    assert "Compare now</button>" not in admin.get(PAGE).get_data(as_text=True)
    assert "already on its way" in text(compare_now(admin, follow_redirects=True))
    assert queue.count == 1 and len(runs(app)) == 1

    run_worker(app, redis_url, WORKER_QUEUES)
    page = text(admin.get(PAGE))
    assert "Nothing to compare" in page and "waiting for a worker" not in page
    [run] = runs(app)
    assert run.finished_at is not None and run.source == "admin"


@pytest.mark.redis
def test_with_redis_the_sweep_queues_it_nightly_and_not_twice(make_app, redis_url, clock):
    app = make_app(REDIS_URL=redis_url)
    queue = Queue("reconciliation", connection=Redis.from_url(redis_url))
    with app.app_context():  # 09:00: tonight's 03:00 has passed and nothing ran yet
        assert sweep()["reconciliation"] == 1
        assert sweep()["reconciliation"] == 0  # waiting for a worker: not asked twice
    assert queue.count == 1
    run_worker(app, redis_url, WORKER_QUEUES)
    with app.app_context():
        assert sweep()["reconciliation"] == 0  # done for tonight
    clock.advance(datetime(2026, 3, 11, 2, 59, tzinfo=UTC) - clock.now())
    with app.app_context():
        assert sweep()["reconciliation"] == 0
    clock.advance(timedelta(minutes=1))  # 03:00 the next night
    with app.app_context():
        assert sweep()["reconciliation"] == 1
        assert sweep()["reconciliation"] == 0
    assert queue.count == 1
    assert [r.source for r in runs(app)] == ["schedule", "schedule"]


def test_without_redis_the_sweeper_runs_it_once_a_night(app, clock):
    with app.app_context():
        assert sweep()["reconciliation"] == 0  # in-process: the sweep itself stays cheap
        assert reconcile_if_due() == 1
        assert reconcile_if_due() == 0
    [run] = runs(app)
    assert run.note == reconciliation.NOTHING_TO_COMPARE and run.source == "schedule"
    clock.advance(timedelta(days=1))
    with app.app_context():
        assert reconcile_if_due() == 1
    first, second = runs(app)
    # Each run reaches back to the previous one's start, less the overlap.
    assert second.since == first.started_at - timedelta(days=3)


# --- against Stripe -----------------------------------------------------------------------

@pytest.fixture
def stripe_app(make_app, fake_connect, localstripe):  # noqa: F811
    localstripe.reset()
    return make_app(**fake_connect.app_config(), STRIPE_LIST_PAGE_SIZE=2)


def test_looking_at_the_payments_page_never_calls_stripe(stripe_app, fake_connect,  # noqa: F811
                                                        make_user, clock):
    admin = admin_of(stripe_app, make_user)
    fake_connect.requests.clear()
    for url in (PAGE, f"{PAGE}?reconcile=1", f"{PAGE}?status=held"):
        assert admin.get(url).status_code == 200
    assert fake_connect.requests == []
    assert runs(stripe_app) == []


def test_a_refund_made_at_stripe_is_a_difference_until_it_is_recorded(paid, make_user,  # noqa: F811
                                                                     clock):
    app = paid["app"]
    admin = admin_of(app, make_user)
    compare_now(admin)
    page = text(admin.get(PAGE))
    assert "1 charge, 0 refunds, 0 transfers. 0 new differences" in page
    assert "No open differences: our records agree with Stripe's." in page

    stripe_id = refund_in_stripe(paid)  # in the dashboard: the app hears nothing
    clock.advance(timedelta(hours=1))
    compare_now(admin)
    page = text(admin.get(PAGE))
    assert "1 difference with Stripe to look at" in page
    assert "A refund at Stripe we did not record" in page
    assert (f"We say Payment #{paid['payment_id']} has no refund with this id; it shows "
            "€0.00 refunded.") in page
    assert f"Stripe says Refund {stripe_id} of €49.90 (succeeded) on charge " \
           f"{paid['charge_id']}" in page
    assert "Resend that event from Stripe's dashboard" in page
    assert f'href="/admin/payments/{paid["payment_id"]}"' in admin.get(PAGE).get_data(
        as_text=True)
    # The money overview lists the same difference beside the figures it contradicts.
    overview = text(admin.get("/admin/money"))
    assert "1 difference with Stripe to look at" in overview
    assert f"Stripe says Refund {stripe_id} of €49.90" in overview

    clock.advance(timedelta(hours=1))
    compare_now(admin)  # seen again: the same item, not a second one
    [item] = items(app)
    assert item.status == "open" and item.stripe_id == stripe_id
    assert item.last_seen_at == clock.now() and item.first_seen_at < item.last_seen_at

    assert deliver(paid, charge_refunded(paid)) == "refunded in Stripe"  # the late event
    clock.advance(timedelta(hours=1))
    compare_now(admin)
    [item] = items(app)
    assert item.status == "resolved" and item.resolved_by_id is None
    page = text(admin.get(PAGE))
    assert "0 new differences, 1 closed because it no longer differs." in page
    assert "No open differences" in page


def test_an_admin_resolves_a_difference_with_a_note_kept_in_the_audit_log(
        stripe_app, localstripe, make_user, clock):  # noqa: F811
    charge = localstripe.client().v1.payment_intents.create({
        "amount": 1200, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True})
    admin = admin_of(stripe_app, make_user)
    compare_now(admin)
    [item] = items(stripe_app)
    assert item.kind == "charge_unknown"
    page = text(admin.get(PAGE))
    assert "A charge at Stripe we have no payment for" in page and "€12.00 succeeded" in page
    url = f"{PAGE}/reconciliation/{item.id}/resolve"

    empty = admin.post(url, {"note": ""}, token_page=PAGE)
    assert empty.status_code == 422
    assert "Say what you did about this difference." in text(empty)
    assert items(stripe_app)[0].status == "open"

    done = admin.post(url, {"note": "A test charge made by hand at Stripe."}, token_page=PAGE,
                      follow_redirects=True)
    assert "The difference is resolved" in text(done)
    assert "No open differences" in text(done)
    again = admin.post(url, {"note": "Twice, from another tab."}, token_page=PAGE)
    assert again.status_code == 409
    assert "This difference is already resolved." in text(again)
    assert admin.post(f"{PAGE}/reconciliation/999999/resolve", {"note": "Nothing here."},
                      token_page=PAGE).status_code == 404
    with stripe_app.app_context():
        event = db.session.scalar(select(AuditEvent).where(
            AuditEvent.object_type == "reconciliation_items", AuditEvent.object_id == item.id,
            AuditEvent.to_state == "resolved"))
        assert event.actor_id is not None
        assert event.reason == "resolved by an admin: A test charge made by hand at Stripe."

    clock.advance(timedelta(hours=1))
    compare_now(admin)  # still differs, the same way: it stays resolved by the admin
    [item] = items(stripe_app)
    assert item.status == "resolved" and item.resolution.startswith("A test charge")
    assert charge.status == "succeeded"


def test_every_page_of_stripes_lists_is_read(stripe_app, fake_connect, localstripe,  # noqa: F811
                                            make_user, clock):
    client = localstripe.client()
    charges = [client.v1.payment_intents.create({
        "amount": 1000 + n, "currency": "eur", "payment_method": "pm_card_visa",
        "confirm": True}).latest_charge.id for n in range(5)]
    refunds = [client.v1.refunds.create({"charge": charge, "amount": 100}).id
               for charge in charges[:3]]
    connect = stripe.StripeClient(SECRET_KEY, base_addresses={"api": fake_connect.base_url},
                                  max_network_retries=0)
    transfers = [connect.v1.transfers.create({"amount": 500 + n, "currency": "eur",
                                              "destination": "acct_elsewhere"}).id
                 for n in range(3)]
    fake_connect.requests.clear()
    admin = admin_of(stripe_app, make_user)
    compare_now(admin)
    [run] = runs(stripe_app)
    assert (run.charges_compared, run.refunds_compared, run.transfers_compared) == (5, 3, 3)
    assert sorted(i.stripe_id for i in items(stripe_app)) == sorted(charges + refunds +
                                                                     transfers)
    for path, count in (("/v1/charges", 3), ("/v1/refunds", 2), ("/v1/transfers", 2)):
        pages = fake_connect.requests_to("GET", path)
        assert len(pages) == count, path  # two a page (STRIPE_LIST_PAGE_SIZE)
        assert all(p.params["limit"] == "2" for p in pages)
        assert "starting_after" not in pages[0].params
        assert all(p.status == 200 for p in pages)
    page = text(admin.get(PAGE))
    assert "11 differences with Stripe to look at" in page
    assert "A transfer at Stripe we have no payout for" in page


def test_each_run_asks_only_for_what_was_created_since_its_window(
        stripe_app, fake_connect, localstripe, make_user, clock):  # noqa: F811
    admin = admin_of(stripe_app, make_user)
    fake_connect.requests.clear()
    compare_now(admin)
    first = runs(stripe_app)[0]
    [asked] = fake_connect.requests_to("GET", "/v1/charges")
    assert created_filter(asked) == int((clock.now() - timedelta(days=90)).timestamp()) - 1
    assert created_filter(fake_connect.requests_to("GET", "/v1/refunds")[0]) == \
        created_filter(asked)

    clock.advance(timedelta(days=1))
    fake_connect.requests.clear()
    compare_now(admin)
    second = runs(stripe_app)[1]
    assert second.since == first.started_at - timedelta(days=3)
    [asked] = fake_connect.requests_to("GET", "/v1/transfers")
    assert created_filter(asked) == int(second.since.timestamp()) - 1


def test_objects_created_before_the_window_are_not_listed(make_app, fake_connect,  # noqa: F811
                                                         localstripe, make_user, clock):  # noqa: F811
    localstripe.reset()
    clock.freeze(datetime.now(UTC))  # Stripe's clock and ours agree for once
    app = make_app(**fake_connect.app_config())
    localstripe.client().v1.payment_intents.create({
        "amount": 900, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True})
    clock.advance(timedelta(days=91))  # the first run looks back 90 days
    admin = admin_of(app, make_user)
    compare_now(admin)
    [run] = runs(app)
    assert run.charges_compared == 0 and items(app) == []


def test_stripe_collecting_a_different_amount_is_a_difference(paid, make_user, clock):  # noqa: F811
    app = paid["app"]
    with app.app_context():
        db.session.execute(update(Payment).where(Payment.id == paid["payment_id"])
                           .values(amount_minor=5990, coach_net_minor=5491))
        db.session.commit()
    admin = admin_of(app, make_user)
    compare_now(admin)
    page = text(admin.get(PAGE))
    assert "Stripe collected a different amount" in page
    assert f"We say Payment #{paid['payment_id']} expects €59.90." in page
    assert f"Stripe says Stripe received €49.90 (charge {paid['charge_id']})." in page
    with app.app_context():  # put it back for the ledger check after the test
        db.session.execute(update(Payment).where(Payment.id == paid["payment_id"])
                           .values(amount_minor=4990, coach_net_minor=4491))
        db.session.commit()


def test_a_payment_we_hold_that_stripe_never_collected_is_a_difference(
        coaching, paid_session, make_user, stripe_app, clock):
    # (stripe_app last: the booking fixtures act in the app built last.)
    # Marked paid without a card ever being charged: the PaymentIntent still waits.
    session = paid_session(coaching["student"], coaching["contract"], SLOT)
    admin = admin_of(stripe_app, make_user)
    compare_now(admin)
    [item] = items(stripe_app)
    with stripe_app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.session_id == session.id))
        assert (item.kind, item.payment_id) == ("payment_not_collected", payment.id)
        assert item.theirs == f"PaymentIntent {payment.payment_intent_id} is " \
                              "requires_payment_method."
    assert "A payment we hold that Stripe did not collect" in text(admin.get(PAGE))


def test_a_transfer_reversed_at_stripe_and_a_payout_with_no_transfer(paid, make_user,  # noqa: F811
                                                                    clock):
    app, connect = paid["app"], paid["connect"]
    release_time_passes(paid, clock)
    [transfer] = connect.transfers
    admin = admin_of(app, make_user)
    compare_now(admin)
    assert items(app) == []  # paid as we say

    connect.reverse_in_dashboard(transfer["id"], 1000)
    clock.advance(timedelta(hours=1))
    compare_now(admin)
    [item] = items(app)
    assert item.kind == "payout_reversed" and item.stripe_id == transfer["id"]
    page = text(admin.get(PAGE))
    assert "A transfer reversed at Stripe" in page
    assert f"€10.00 of transfer {transfer['id']} was reversed at Stripe." in page
    assert f"Payment #{paid['payment_id']} and its payout" in page

    with app.app_context():
        db.session.execute(update(Payout).values(transfer_id="tr_lost"))
        db.session.commit()
    clock.advance(timedelta(hours=1))
    compare_now(admin)
    kinds = {i.kind: i.status for i in items(app)}
    # Our payout now names a transfer Stripe does not have, and Stripe's transfer is
    # nobody's; the reversal item is closed, as its payout no longer has that transfer.
    assert kinds == {"payout_reversed": "resolved", "transfer_unknown": "open",
                     "payout_no_transfer": "open"}
    assert "Stripe has no such transfer." in text(admin.get(PAGE))
    with app.app_context():
        db.session.execute(update(Payout).values(transfer_id=transfer["id"]))
        db.session.commit()


def test_a_run_that_cannot_reach_stripe_says_so_and_the_next_window_ignores_it(
        stripe_app, make_user, clock, monkeypatch):
    from skileez.payments.gateway import GatewayError
    from skileez.payments.stripe_gateway import StripeGateway

    def unreachable(self, created_since):
        raise GatewayError("Could not reach Stripe to list Stripe's charges.", retryable=True)

    admin = admin_of(stripe_app, make_user)
    monkeypatch.setattr(StripeGateway, "list_charges", unreachable)
    page = text(compare_now(admin, follow_redirects=True))
    assert "The comparison with Stripe could not finish; the error is shown below." in page
    assert ("The last comparison with Stripe could not finish. GatewayError: Could not reach "
            "Stripe to list Stripe's charges.") in page
    monkeypatch.undo()

    clock.advance(timedelta(days=1))
    page = text(compare_now(admin, follow_redirects=True))
    assert "Compared with Stripe just now" in page and "could not finish" not in page
    failed, second = runs(stripe_app)
    assert failed.error and second.error is None
    # The failed run compared nothing, so the next one looks back as far as a first run.
    assert second.since == clock.now() - timedelta(days=90)
