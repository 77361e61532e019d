"""Issue 11, ``charge.refunded``: a refund made in Stripe, not through the app, is
reconciled — recorded with Stripe's id, posted to the ledger, the payment refunded or
partly refunded, the release cancelled or shrunk, both people told — and a refund we
made ourselves is never counted twice, whatever order or how often the events arrive.

The refunds are made at localstripe directly (its dashboard stand-in: the raw API,
not the app). localstripe never emits ``charge.*`` events (tests/STRIPE_NOTES.md), so
each event is built from the charge as localstripe returns it, with its refunds list,
signed with the webhook secret and posted to the app, as Stripe would.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import func, select

from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.models import Notification
from skileez.payments import ledger, operations
from skileez.payments.models import LedgerTransaction, Payment, Payout, Refund
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import WEBHOOK_SECRET, localstripe  # noqa: F401
from tests.test_payments import _paid_and_completed, post_webhook, sign

pytestmark = [pytest.mark.stripe, pytest.mark.usefixtures("ledger_checked_after_each_test")]

_event_ids = count(1)


@pytest.fixture
def paid(make_app, fake_connect, coaching, book_session, clock, localstripe):  # noqa: F811
    """A completed session paid through the real library; its release is 24 h away."""
    localstripe.reset()
    app = make_app(**fake_connect.app_config())
    payment_id = _paid_and_completed(app, coaching, book_session, clock, connect=fake_connect)
    with app.app_context():
        payment = db.session.get(Payment, payment_id)
        assert payment.status == "held" and payment.release_at is not None
        charge_id = payment.charge_id
    return {"app": app, "payment_id": payment_id, "charge_id": charge_id,
            "stripe": localstripe.client(), "connect": fake_connect,
            "student_id": coaching["student"].id, "coach_id": coaching["coach"].id}


def refund_in_stripe(paid, amount: int | None = None) -> str:
    """Refund at localstripe directly, as someone in Stripe's dashboard would."""
    params = {"charge": paid["charge_id"]}
    if amount is not None:
        params["amount"] = amount
    return paid["stripe"].v1.refunds.create(params).id


def charge_refunded(paid, **changes) -> bytes:
    """A ``charge.refunded`` event for the charge as Stripe holds it now."""
    charge = paid["stripe"].v1.charges.retrieve(paid["charge_id"]).to_dict()
    refunds = paid["stripe"].v1.refunds.list({"charge": paid["charge_id"]}).to_dict()
    charge["refunds"] = {"object": "list", "data": refunds["data"]}
    charge.update(changes)
    return json.dumps({"id": f"evt_refunded_{next(_event_ids)}", "object": "event",
                       "type": "charge.refunded", "data": {"object": charge}}).encode()


def deliver(paid, payload: bytes) -> str:
    response = post_webhook(paid["app"], payload, sign(payload, WEBHOOK_SECRET))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["outcome"]


def payment_state(paid):
    with paid["app"].app_context():
        payment = db.session.get(Payment, paid["payment_id"])
        return payment.status, payment.refunded_minor, payment.release_at is not None


def refunds(paid):
    with paid["app"].app_context():
        return [(r.status, r.amount_minor, r.gateway_refund_id) for r in db.session.scalars(
            select(Refund).order_by(Refund.id))]


def notified(paid):
    with paid["app"].app_context():
        return sorted((n.recipient_id, n.kind, n.payload.get("amount")) for n in
                      db.session.scalars(select(Notification).where(Notification.kind.in_(
                          ("refund_issued", "payment_refunded")))))


def release_time_passes(paid, clock):
    clock.advance(timedelta(hours=25))
    for _ in range(3):  # the release sweep, then the payout's
        with paid["app"].app_context():
            sweep()


def test_full_refund_in_stripe_refunds_the_payment_and_the_coach_is_never_paid(paid, clock):
    stripe_id = refund_in_stripe(paid)
    payload = charge_refunded(paid)
    assert deliver(paid, payload) == "refunded in Stripe"
    assert payment_state(paid) == ("refunded", 4990, False)
    assert refunds(paid) == [("succeeded", 4990, stripe_id)]
    assert notified(paid) == sorted([(paid["student_id"], "refund_issued", "€49.90"),
                                     (paid["coach_id"], "payment_refunded", "€49.90")])
    # Delivered again, and the same refund reported by a later event: nothing new.
    assert deliver(paid, payload) == "duplicate"
    assert deliver(paid, charge_refunded(paid)) == "already recorded"
    assert len(refunds(paid)) == 1 and len(notified(paid)) == 2
    release_time_passes(paid, clock)
    assert paid["connect"].transfers == []
    with paid["app"].app_context():
        assert db.session.scalar(select(func.count()).select_from(Payout)) == 0
        assert ledger.balance("escrow", currency="EUR") == 0
        assert ledger.balance("refunds", currency="EUR") == 4990
        assert ledger.balance("coach_payable", currency="EUR",
                              coach_id=paid["coach_id"]) == 0


def test_the_coach_is_told_the_payment_was_refunded(paid):
    refund_in_stripe(paid)
    deliver(paid, charge_refunded(paid))
    from tests.conftest import Client

    coach = Client(paid["app"])
    coach.login("clara@example.com")
    page = coach.get("/notifications/").get_data(as_text=True)
    assert "€49.90 of the payment for the session with Sam Rivera" in page
    assert "Nothing of this payment will be paid out to you" in page


@pytest.mark.parametrize("listing", ["left out", "cut short"])
def test_refunds_the_event_does_not_list_are_asked_of_stripe(paid, listing):
    """Stripe's API versions since 2022-11-15 leave the refunds out of the charge in the
    event (and a list may be cut short): the app asks Stripe for them."""
    first = refund_in_stripe(paid, 1000)
    second = refund_in_stripe(paid, 500)
    payload = json.loads(charge_refunded(paid))
    charge = payload["data"]["object"]
    if listing == "left out":
        del charge["refunds"]
    else:
        charge["refunds"] = {"object": "list", "data": charge["refunds"]["data"][:1],
                             "has_more": True}
    assert deliver(paid, json.dumps(payload).encode()) == "refunded in Stripe"
    assert payment_state(paid) == ("partially_refunded", 1500, True)
    assert sorted(refunds(paid)) == sorted([("succeeded", 1000, first),
                                            ("succeeded", 500, second)])


def test_when_stripe_cannot_be_asked_the_event_waits_for_its_retry(paid, make_app):
    refund_id = refund_in_stripe(paid)
    payload = json.loads(charge_refunded(paid))
    del payload["data"]["object"]["refunds"]
    body = json.dumps(payload).encode()
    # The same database, with Stripe out of reach.
    cut_off = make_app(**{**paid["connect"].app_config(), "STRIPE_API_BASE": "http://127.0.0.1:9"})
    response = post_webhook(cut_off, body, sign(body, WEBHOOK_SECRET))
    assert response.status_code == 503
    assert payment_state(paid) == ("held", 0, True) and refunds(paid) == []
    # Stripe retries the same event; now it can be read in full.
    assert deliver(paid, body) == "refunded in Stripe"
    assert refunds(paid) == [("succeeded", 4990, refund_id)]


def test_partial_refund_in_stripe_releases_the_rest_to_the_coach(paid, clock):
    stripe_id = refund_in_stripe(paid, 1000)
    assert deliver(paid, charge_refunded(paid)) == "refunded in Stripe"
    assert payment_state(paid) == ("partially_refunded", 1000, True)
    assert refunds(paid) == [("succeeded", 1000, stripe_id)]
    with paid["app"].app_context():
        [coach_note] = db.session.scalars(select(Notification).where(
            Notification.kind == "payment_refunded")).all()
        assert coach_note.payload["remaining"] == "€39.90"
    release_time_passes(paid, clock)
    # The coach gets their share of what is left: 3990 less the 10 % fee.
    assert [t["amount"] for t in paid["connect"].transfers] == [3591]
    with paid["app"].app_context():
        assert db.session.get(Payment, paid["payment_id"]).status == "released"
        assert ledger.balance("platform_revenue", currency="EUR") == 399
        assert ledger.balance("refunds", currency="EUR") == 1000


def test_two_refunds_in_stripe_whose_events_arrive_in_reverse_order(paid):
    first = refund_in_stripe(paid, 1000)
    early = charge_refunded(paid)  # lists the first refund only
    second = refund_in_stripe(paid, 500)
    late = charge_refunded(paid)  # lists both
    assert deliver(paid, late) == "refunded in Stripe"
    assert deliver(paid, early) == "already recorded"
    assert deliver(paid, late) == "duplicate"
    assert payment_state(paid) == ("partially_refunded", 1500, True)
    assert sorted(refunds(paid)) == sorted([("succeeded", 1000, first),
                                            ("succeeded", 500, second)])


def test_our_own_refund_then_its_webhook_changes_nothing(paid):
    with paid["app"].app_context():
        operations.refund(db.session.get(Payment, paid["payment_id"]), 1000,
                          reason="Goodwill")
        db.session.commit()
    [(status, amount, stripe_id)] = refunds(paid)
    assert (status, amount) == ("succeeded", 1000) and stripe_id.startswith("re_")
    before = notified(paid)
    assert deliver(paid, charge_refunded(paid)) == "already recorded"
    assert refunds(paid) == [("succeeded", 1000, stripe_id)]
    assert payment_state(paid) == ("partially_refunded", 1000, True)
    assert notified(paid) == before
    with paid["app"].app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "refund")) == 1


def test_webhook_before_our_job_recorded_stripes_answer_is_still_one_refund(
        paid, clock, monkeypatch):
    """Stripe made our refund, but the job died before storing Stripe's id; the event
    comes first. It is known by the refund id in its metadata, and the job's retry
    finds it done and asks Stripe nothing."""
    real_record = operations.RefundAttempt.record
    crashes = {"left": 1}

    def crash_once(self, item, gateway_id, expected):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("worker died after Stripe refunded")
        return real_record(self, item, gateway_id, expected)

    monkeypatch.setattr(operations.RefundAttempt, "record", crash_once)
    with paid["app"].app_context():
        operations.refund(db.session.get(Payment, paid["payment_id"]), 1000,
                          reason="Goodwill")
        db.session.commit()  # the in-process job runs here, and "dies"
    assert crashes["left"] == 0
    [(status, _, stripe_id)] = refunds(paid)
    assert stripe_id is None and status != "succeeded"
    assert deliver(paid, charge_refunded(paid)) == "confirmed our refund"
    [at_stripe] = paid["stripe"].v1.refunds.list({"charge": paid["charge_id"]}).data
    assert refunds(paid) == [("succeeded", 1000, at_stripe.id)]
    clock.advance(timedelta(hours=1))
    with paid["app"].app_context():
        sweep()
    assert len(paid["stripe"].v1.refunds.list({"charge": paid["charge_id"]}).data) == 1
    assert refunds(paid) == [("succeeded", 1000, at_stripe.id)]
    assert payment_state(paid) == ("partially_refunded", 1000, True)


@pytest.mark.parametrize("case", ["unknown charge", "another currency", "more than held"])
def test_a_refund_we_cannot_apply_is_acknowledged_and_changes_nothing(paid, case):
    refund_in_stripe(paid, 1000)
    payload = json.loads(charge_refunded(paid))
    charge = payload["data"]["object"]
    if case == "unknown charge":
        charge.update(id="ch_not_ours", payment_intent="pi_not_ours")
    elif case == "another currency":
        charge["currency"] = "usd"
        charge["refunds"]["data"][0]["currency"] = "usd"
    else:
        charge["refunds"]["data"][0]["amount"] = 4991
    outcome = deliver(paid, json.dumps(payload).encode())
    assert outcome in ("unknown payment", "ignored: another currency",
                       "ignored: more than escrow holds")
    assert payment_state(paid) == ("held", 0, True)
    assert refunds(paid) == [] and notified(paid) == []


def test_a_refund_in_stripe_after_release_is_recorded_and_shown_to_admins(paid, clock,
                                                                       make_user):
    """After release the coach holds the money: the refund is recorded with Stripe's id
    but not booked, and the admin payment page says a decision is needed."""
    release_time_passes(paid, clock)
    assert len(paid["connect"].transfers) == 1
    stripe_id = refund_in_stripe(paid, 1000)
    payload = charge_refunded(paid)
    assert deliver(paid, payload) == "not in escrow (released): recorded for an admin"
    assert deliver(paid, charge_refunded(paid)) == "already recorded"
    assert payment_state(paid)[:2] == ("released", 0)
    assert refunds(paid) == [("succeeded", 1000, stripe_id)]
    with paid["app"].app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "refund")) == 0
    from tests.conftest import Client

    make_user("admin", email="root@example.com")
    admin = Client(paid["app"])
    admin.login("root@example.com")
    page = admin.get(f"/admin/payments/{paid['payment_id']}").get_data(as_text=True)
    assert "Refunded in Stripe, not in the books." in page and stripe_id in page
    # The student's receipt says what they really paid.
    student = Client(paid["app"])
    student.login("sam@example.com")
    receipt = student.get(f"/payments/{paid['payment_id']}/receipt").get_data(as_text=True)
    assert 'data-testid="total-paid">€39.90<' in receipt


@pytest.mark.real_commits  # threads see only what is committed
def test_five_events_for_one_refund_in_stripe_at_once_make_one_refund(paid):
    """Stripe may send several events naming the same refund; delivered all at once, each
    gets 200 and the refund is recorded, posted and told once."""
    stripe_id = refund_in_stripe(paid, 1000)
    payloads = [charge_refunded(paid) for _ in range(5)]
    barrier, answers = threading.Barrier(5), []

    def send(payload):
        barrier.wait()
        response = post_webhook(paid["app"], payload, sign(payload, WEBHOOK_SECRET))
        answers.append((response.status_code, response.get_json().get("outcome")))

    threads = [threading.Thread(target=send, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == sorted([(200, "refunded in Stripe")]
                                     + [(200, "already recorded")] * 4)
    assert refunds(paid) == [("succeeded", 1000, stripe_id)]
    assert payment_state(paid) == ("partially_refunded", 1000, True)
    assert len(notified(paid)) == 2


def test_a_refund_in_stripe_on_a_disputed_payment_is_left_for_the_admin_deciding_it(paid):
    """The dispute keeps the money frozen for an admin; the refund is recorded for them
    and the payment stays disputed, so no release runs meanwhile."""
    from skileez.auth.models import User

    with paid["app"].app_context():
        operations.open_dispute(db.session.get(Payment, paid["payment_id"]),
                                db.session.get(User, paid["student_id"]), reason="No show")
        db.session.commit()
    stripe_id = refund_in_stripe(paid, 1000)
    assert deliver(paid, charge_refunded(paid)) == "not in escrow (disputed): recorded for " \
        "an admin"
    assert payment_state(paid) == ("disputed", 0, True)
    assert refunds(paid) == [("succeeded", 1000, stripe_id)]


def _disputed_and_refunded_in_stripe(paid, make_user, amount: int):
    """The student disputes; meanwhile someone refunds ``amount`` in Stripe's dashboard
    (recorded, not booked). Returns a signed-in admin and the dispute's page URL."""
    from skileez.auth.models import User
    from skileez.payments.models import Dispute
    from tests.conftest import Client

    with paid["app"].app_context():
        dispute = operations.open_dispute(db.session.get(Payment, paid["payment_id"]),
                                          db.session.get(User, paid["student_id"]),
                                          reason="No show")
        db.session.commit()
        dispute_id = dispute.id
    refund_in_stripe(paid, amount)
    assert deliver(paid, charge_refunded(paid)).startswith("not in escrow (disputed)")
    make_user("admin", email="root@example.com")
    admin = Client(paid["app"])
    admin.login("root@example.com")
    assert Dispute  # the page is the dispute's own
    return admin, f"/admin/disputes/{dispute_id}"


def at_stripe(paid) -> list[int]:
    return sorted(r.amount for r in paid["stripe"].v1.refunds.list(
        {"charge": paid["charge_id"]}).data)


@pytest.mark.parametrize(("decision", "stripe_after", "payment_after", "coach_net"), [
    ({"resolution": "refund"}, [1000, 3990], ("refunded", 4990, False), 0),
    ({"resolution": "partial", "refund_amount": "20.00"}, [1000, 1000],
     ("released", 2000, False), 2990 - 299),
    ({"resolution": "partial", "refund_amount": "10.00"}, [1000],
     ("released", 1000, False), 3990 - 399),
    ({"resolution": "release"}, [1000], ("released", 1000, False), 3990 - 399),
])
def test_a_dispute_decision_books_a_refund_already_made_in_stripe_and_never_refunds_twice(
        paid, make_user, clock, decision, stripe_after, payment_after, coach_net):
    """€10 was refunded in Stripe's dashboard while the payment was disputed. The dispute
    page shows it with the outcomes counting it as the student's; the decision books it
    (a ledger posting) and Stripe is asked only for the rest of the student's refund, so
    Stripe never refunds more than the charge minus what it already gave back."""
    admin, url = _disputed_and_refunded_in_stripe(paid, make_user, 1000)
    page = admin.get(url).get_data(as_text=True)
    assert "Already refunded in Stripe: €10.00." in page
    assert "(at least the €10.00 already refunded in Stripe)" in page
    assert "Student gets €49.90 back (€10.00 of it already refunded in Stripe); coach gets " \
        "€0.00." in page
    assert "Student gets €10.00 back (€10.00 of it already refunded in Stripe); coach gets " \
        "€35.91." in page
    data = {"note": "Decided with what Stripe already did.", **decision}
    review = admin.post(url, data, token_page=url).get_data(as_text=True)
    assert "Booked from Stripe&#39;s earlier refund: €10.00" in review or \
        "Booked from Stripe's earlier refund: €10.00" in review
    done = admin.post(url, {**data, "confirmed": "yes"}, token_page=url)
    assert done.status_code == 303, done.get_data(as_text=True)
    clock.advance(timedelta(minutes=5))
    for _ in range(2):
        with paid["app"].app_context():
            sweep()
    assert at_stripe(paid) == stripe_after
    assert sum(at_stripe(paid)) <= 4990
    status, refunded, _release = payment_state(paid)
    assert (status, refunded) == payment_after[:2]
    with paid["app"].app_context():
        assert ledger.balance("escrow", currency="EUR") == 0
        assert ledger.balance("refunds", currency="EUR") == refunded
        payout = db.session.scalar(select(Payout))
        assert (payout.amount_minor if payout else 0) == coach_net
        assert operations.unbooked_provider_refunds(db.session.get(
            Payment, paid["payment_id"])) == []
        assert ledger.check_invariants() == []
    # The admin payment page no longer asks for a decision about it.
    page = admin.get(f"/admin/payments/{paid['payment_id']}").get_data(as_text=True)
    assert "Refunded in Stripe, not in the books." not in page


def test_a_partial_refund_below_what_stripe_already_refunded_is_refused(paid, make_user):
    """Stripe gave back €10 already; a decision to refund €5 cannot take €5 back from the
    card: refused beside the amount, nothing changes."""
    admin, url = _disputed_and_refunded_in_stripe(paid, make_user, 1000)
    response = admin.post(url, {"resolution": "partial", "refund_amount": "5.00",
                                "note": "Half of the half.", "confirmed": "yes"},
                          token_page=url)
    assert response.status_code == 422
    assert "€10.00 was already refunded in Stripe: a partial refund must be at least that" \
        in response.get_data(as_text=True)
    assert payment_state(paid) == ("disputed", 0, True)
    assert at_stripe(paid) == [1000]


def test_an_admin_refund_never_asks_stripe_for_what_it_already_refunded(paid, make_user):
    """The guard under every refund: with €10 refunded in Stripe and not yet booked, a
    refund of all that escrow holds is refused rather than sent."""
    from skileez.core.errors import Conflict

    _disputed_and_refunded_in_stripe(paid, make_user, 1000)
    with paid["app"].app_context():
        payment = db.session.get(Payment, paid["payment_id"])
        with pytest.raises(Conflict, match="already refunded in Stripe"):
            operations.refund(payment, 4990, reason="test", resolving=True)
    assert at_stripe(paid) == [1000]
