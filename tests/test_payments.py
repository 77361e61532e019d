"""Money end to end: webhooks, escrow release, payouts, refunds and disputes.

Stripe is never mocked: the webhook tests sign payloads with the configured
secret and go through the real library's verification; the flows run the real
``stripe`` library against localstripe, with Connect (which localstripe lacks)
served by the checking fake in ``tests/fake_stripe_connect.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.coaches.operations import profile_for
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.payments import ledger
from skileez.payments.models import LedgerTransaction, Payment, Payout, Refund
from skileez.sessions.models import Session
from skileez.sessions.operations import complete
from tests.conftest import Client
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import localstripe  # noqa: F401

SLOT = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
SECRET = "whsec_unit_test"



pytestmark = pytest.mark.usefixtures("ledger_checked_after_each_test")


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload,
                         hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def event(event_id: str, event_type: str, intent_id: str, **extra) -> bytes:
    obj = {"id": intent_id, "object": "payment_intent", "amount": 4990,
           "amount_received": 4990, "currency": "eur", "latest_charge": "ch_1", **extra}
    return json.dumps({"id": event_id, "object": "event", "type": event_type,
                       "data": {"object": obj}}).encode()


def healthy(app):
    with app.app_context():
        problems = ledger.check_invariants()
    assert problems == []


@pytest.fixture
def stripe_app(make_app):
    """Stripe configured (no calls are made in these tests: events arrive signed)."""
    return make_app(STRIPE_SECRET_KEY="sk_test_unit", STRIPE_PUBLISHABLE_KEY="pk_test_unit",
                    STRIPE_WEBHOOK_SECRET=SECRET, STRIPE_API_BASE="http://127.0.0.1:9")


@pytest.fixture
def pending(stripe_app, coaching, clock, book_session):
    session = book_session(coaching["student"], coaching["contract"], SLOT)
    with stripe_app.app_context():
        payment = db.session.get(Session, session.id).payment
        payment.payment_intent_id = "pi_unit_1"
        db.session.commit()
        return {"session_id": session.id, "payment_id": payment.id}


def states(app, ids):
    with app.app_context():
        payment = db.session.get(Payment, ids["payment_id"])
        return payment.status, payment.session.status


def post_webhook(app, payload: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return app.test_client().post("/payments/webhook", data=payload, headers=headers)


# --- webhook security and idempotency -----------------------------------------------------

@pytest.mark.parametrize("case", ["forged", "wrong secret", "missing", "too old", "garbage"])
def test_untrusted_webhooks_get_400_and_change_nothing(stripe_app, pending, case):
    payload = event("evt_1", "payment_intent.succeeded", "pi_unit_1")
    signature = {
        "forged": f"t={int(time.time())},v1={'0' * 64}",
        "wrong secret": sign(payload, "whsec_other"),
        "missing": None,
        "too old": sign(payload, timestamp=int(time.time()) - 301),
        "garbage": sign(b"not json"),
    }[case]
    body = b"not json" if case == "garbage" else payload
    response = post_webhook(stripe_app, body, signature)
    assert response.status_code == 400
    assert states(stripe_app, pending) == ("pending", "pending_payment")
    with stripe_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


def test_a_webhook_299_seconds_old_is_accepted(stripe_app, pending):
    payload = event("evt_1", "payment_intent.succeeded", "pi_unit_1")
    response = post_webhook(stripe_app, payload, sign(payload, timestamp=int(time.time()) - 299))
    assert response.status_code == 200
    assert states(stripe_app, pending) == ("held", "scheduled")


@pytest.mark.real_commits  # threads see only what is committed
def test_the_same_event_five_times_changes_things_once(stripe_app, pending):
    payload = event("evt_dup", "payment_intent.succeeded", "pi_unit_1")
    signature = sign(payload)
    assert post_webhook(stripe_app, payload, signature).status_code == 200
    results = []

    def again():
        results.append(post_webhook(stripe_app, payload, signature).status_code)

    threads = [threading.Thread(target=again) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.append(post_webhook(stripe_app, payload, signature).status_code)
    assert results == [200, 200, 200, 200]
    assert states(stripe_app, pending) == ("held", "scheduled")
    with stripe_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
        assert ledger.balance("escrow", currency="EUR") == 4990
    healthy(stripe_app)


@pytest.mark.real_commits  # threads or a second connection see only what is committed
def test_five_concurrent_deliveries_change_things_once(stripe_app, pending):
    payload = event("evt_race", "payment_intent.succeeded", "pi_unit_1")
    signature = sign(payload)
    barrier, results = threading.Barrier(5), []

    def deliver():
        barrier.wait()
        results.append(post_webhook(stripe_app, payload, signature).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 5
    with stripe_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
    assert states(stripe_app, pending) == ("held", "scheduled")
    healthy(stripe_app)


@pytest.mark.parametrize("order", [("failed", "succeeded"), ("succeeded", "failed")])
def test_failed_and_succeeded_in_either_order_end_paid(stripe_app, pending, order):
    for n, kind in enumerate(order):
        event_type = f"payment_intent.{'payment_failed' if kind == 'failed' else 'succeeded'}"
        extra = {"last_payment_error": {"message": "Your card was declined."}} \
            if kind == "failed" else {}
        payload = event(f"evt_{n}", event_type, "pi_unit_1", **extra)
        assert post_webhook(stripe_app, payload, sign(payload)).status_code == 200
    assert states(stripe_app, pending) == ("held", "scheduled")
    healthy(stripe_app)


# --- real Stripe library against localstripe ----------------------------------------------

@pytest.fixture
def live(make_app, fake_connect):  # noqa: F811
    from werkzeug.serving import make_server

    app = make_app(**fake_connect.app_config())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}", fake_connect
    server.shutdown()


def wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.stripe
def test_stripe_payment_webhook_from_localstripe_schedules_the_session_and_refund_works(
        live, coaching, book_session, localstripe):  # noqa: F811
    app, base, _fake = live
    localstripe.register_webhook(f"{base}/payments/webhook",
                                 events=["payment_intent.succeeded",
                                         "payment_intent.payment_failed"])
    # A real clock here: localstripe signs with the current time.
    from skileez.coaches.availability import coach_next_open_slot

    with app.app_context():
        start = coach_next_open_slot(db.session.get(User, coaching["coach"].id),
                                     timedelta(minutes=60))
    session = book_session(coaching["student"], coaching["contract"], start)
    client = Client(app)
    client.login("sam@example.com")
    with app.app_context():
        payment_id = db.session.get(Session, session.id).payment.id
    pay_page = client.get(f"/payments/{payment_id}/pay").get_data(as_text=True)
    assert 'id="card-element"' in pay_page and localstripe.js_url in pay_page
    token = client.csrf_token(f"/payments/{payment_id}/pay")
    declined = client.http.post(f"/payments/{payment_id}/card",
                                json={"payment_method": "pm_card_chargeCustomerFail"},
                                headers={"X-CSRFToken": token})
    assert declined.status_code == 402
    assert "declined" in declined.get_json()["error"].lower()
    response = client.http.post(f"/payments/{payment_id}/card",
                                json={"payment_method": "pm_card_visa"},
                                headers={"X-CSRFToken": token})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "succeeded"

    def scheduled():
        with app.app_context():
            return db.session.get(Session, session.id).status == "scheduled"

    assert wait_until(scheduled), "localstripe's signed webhook did not arrive"
    with app.app_context():
        payment = db.session.get(Payment, payment_id)
        assert payment.status == "held" and payment.charge_id.startswith("ch_")
        from skileez.payments.operations import refund

        refund(payment, 1000, reason="Partial goodwill refund")
        db.session.commit()
        item = db.session.scalar(select(Refund))
        assert item.status == "succeeded" and item.gateway_refund_id.startswith("re_")
        charge = localstripe.client().v1.charges.retrieve(payment.charge_id)
        assert charge.amount_refunded == 1000
    healthy(app)


# --- escrow release and payouts -----------------------------------------------------------

def _paid_and_completed(app, coaching, book_session, clock, *, connect=None, account=True):
    """A session paid through the real library (so the charge exists), then completed."""
    from skileez.payments.gateway import get_gateway
    from skileez.payments.operations import ensure_payment_intent, payment_succeeded

    session = book_session(coaching["student"], coaching["contract"], SLOT)
    with app.app_context():
        payment = db.session.get(Session, session.id).payment
        ensure_payment_intent(payment)
        result = get_gateway().confirm_payment_intent(
            intent_id=payment.payment_intent_id, payment_method="pm_card_visa")
        payment_succeeded(payment.payment_intent_id, charge_id=result.charge_id)
        coach = db.session.get(User, coaching["coach"].id)
        if account:
            profile = profile_for(coach)
            profile.stripe_account_id = "acct_clara"
            profile.payouts_enabled = True
            if connect is not None:
                connect.set_account_status("acct_clara", True, True)
        clock.advance(SLOT + timedelta(hours=1, minutes=5) - clock.now())
        complete(db.session.get(Session, session.id), actor=coach)
        db.session.commit()
        return db.session.get(Session, session.id).payment.id


@pytest.mark.stripe
def test_exactly_one_payout_at_release_time(make_app, fake_connect, coaching, book_session,  # noqa: F811
                                            clock):
    app = make_app(**fake_connect.app_config())
    payment_id = _paid_and_completed(app, coaching, book_session, clock, connect=fake_connect)
    clock.advance(timedelta(hours=24) - timedelta(seconds=1))
    with app.app_context():
        sweep()
        assert db.session.get(Payment, payment_id).status == "held"
    assert fake_connect.transfers == []
    clock.advance(timedelta(seconds=1))
    for _ in range(4):  # the release sweep, then three more
        with app.app_context():
            sweep()
    assert len(fake_connect.transfers) == 1
    transfer = fake_connect.transfers[0]
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (
        4491, "eur", "acct_clara")
    with app.app_context():
        payment = db.session.get(Payment, payment_id)
        assert transfer["source_transaction"] == payment.charge_id
        assert transfer["transfer_group"] == f"session-{payment.session_id}"
        assert payment.status == "released" and payment.payout.status == "paid"
        assert ledger.balance("platform_revenue", currency="EUR") == 499
        assert ledger.balance("paid_out", currency="EUR", coach_id=payment.coach_id) == 4491
        assert ledger.balance("escrow", currency="EUR") == 0
    [request] = fake_connect.requests_to("POST", "/v1/transfers")[:1]
    with app.app_context():
        payout_id = db.session.scalar(select(Payout.id))
    assert request.header("Idempotency-Key") == f"payout-{payout_id}"
    healthy(app)


@pytest.mark.stripe
def test_crash_between_transfer_and_commit_still_pays_once(make_app, fake_connect, coaching,  # noqa: F811
                                                           book_session, clock, monkeypatch):
    app = make_app(**fake_connect.app_config())
    payment_id = _paid_and_completed(app, coaching, book_session, clock, connect=fake_connect)
    clock.advance(timedelta(hours=24))
    real_post = ledger.post_payout
    crashes = {"left": 1}

    def crash_once(payout):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("worker died after Stripe accepted the transfer")
        return real_post(payout)

    monkeypatch.setattr(ledger, "post_payout", crash_once)
    with app.app_context():
        # Release queues the payout; its job transfers, then "crashes" before committing.
        # The sweep's payout handler finds the payout still pending and retries it.
        sweep()
        sweep()
        payout = db.session.scalar(select(Payout))
        assert crashes["left"] == 0
        assert payout.status == "paid" and payout.attempts == 2
        assert payout.transfer_id == fake_connect.transfers[0]["id"]
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.kind == "payout")) == 1
    assert len(fake_connect.transfers) == 1
    replays = [r for r in fake_connect.requests_to("POST", "/v1/transfers") if r.replayed]
    assert len(replays) == 1
    healthy(app)
    assert payment_id


@pytest.mark.stripe
def test_failed_transfer_is_retried_with_backoff_and_shown_to_admins(
        make_app, fake_connect, coaching, book_session, clock, make_user):  # noqa: F811
    app = make_app(**fake_connect.app_config())
    _paid_and_completed(app, coaching, book_session, clock, connect=fake_connect)
    clock.advance(timedelta(hours=24))
    fake_connect.fail_next_transfers(1)
    with app.app_context():
        sweep()
        payout = db.session.scalar(select(Payout))
        assert payout.status == "failed" and payout.last_error
        assert payout.next_attempt_at == clock.now() + timedelta(minutes=5)
    make_user("admin", email="root@example.com")
    admin = Client(app)
    admin.login("root@example.com")
    page = admin.get("/admin/payments").get_data(as_text=True)
    assert "Failed transfers and refunds" in page and f"Payout #{payout.id}" in page
    with app.app_context():
        sweep()  # not due yet
        assert db.session.scalar(select(Payout)).status == "failed"
    clock.advance(timedelta(minutes=5))
    with app.app_context():
        sweep()
        assert db.session.scalar(select(Payout)).status == "paid"
    assert len(fake_connect.transfers) == 1
    healthy(app)


@pytest.mark.stripe
def test_without_a_payout_account_the_money_waits_as_a_payable_balance(
        make_app, fake_connect, coaching, book_session, clock):  # noqa: F811
    app = make_app(**fake_connect.app_config())
    _paid_and_completed(app, coaching, book_session, clock, account=False)
    clock.advance(timedelta(hours=24))
    with app.app_context():
        sweep()
        assert db.session.scalar(select(Payout)).status == "payable"
        assert ledger.balance("coach_payable", currency="EUR",
                              coach_id=coaching["coach"].id) == 4491
    coach = Client(app)
    coach.login("clara@example.com")
    earnings = coach.get("/payments/").get_data(as_text=True)
    assert 'data-testid="payable-EUR">€44.91<' in earnings
    assert fake_connect.transfers == []
    # The coach connects an account: the next sweep pays the balance.
    fake_connect.set_account_status("acct_later", True, True)
    with app.app_context():
        profile = profile_for(db.session.get(User, coaching["coach"].id))
        profile.stripe_account_id, profile.payouts_enabled = "acct_later", True
        db.session.commit()
        sweep()
        assert db.session.scalar(select(Payout)).status == "paid"
    assert [t["destination"] for t in fake_connect.transfers] == ["acct_later"]
    healthy(app)


# --- disputes and manual admin actions (test gateway) --------------------------------------

@pytest.fixture
def completed(app, coaching, book_session, clock):
    from skileez.payments.operations import ensure_payment_intent, payment_succeeded

    session = book_session(coaching["student"], coaching["contract"], SLOT)
    with app.app_context():
        payment = db.session.get(Session, session.id).payment
        ensure_payment_intent(payment)
        payment_succeeded(payment.payment_intent_id, charge_id="ch_test")
        clock.advance(SLOT + timedelta(hours=1, minutes=5) - clock.now())
        complete(db.session.get(Session, session.id))
        db.session.commit()
        return db.session.get(Session, session.id).payment.id


def test_a_dispute_freezes_release_until_an_admin_decides(app, coaching, completed, clock,
                                                          make_user):
    student = Client(app)
    student.login("sam@example.com")
    url = f"/payments/{completed}/dispute"
    short = student.post(url, {"reason": "Too short"}, token_page=url)
    assert short.status_code == 422 and "between 10 and 1000" in short.get_data(as_text=True)
    response = student.post(url, {"reason": "The coach left after ten minutes."},
                            token_page=url)
    assert response.status_code == 303
    clock.advance(timedelta(days=3))
    with app.app_context():
        sweep()
        assert db.session.get(Payment, completed).status == "disputed"
    make_user("admin", email="root@example.com")
    admin = Client(app)
    admin.login("root@example.com")
    page = admin.get("/admin/disputes").get_data(as_text=True)
    assert "The coach left after ten minutes." in page
    from skileez.payments.models import Dispute

    with app.app_context():
        dispute_id = db.session.scalar(select(Dispute.id))
    bad = admin.post(f"/admin/disputes/{dispute_id}/resolve",
                     {"resolution": "partial", "refund_amount": "60", "note": ""},
                     token_page="/admin/disputes")
    assert bad.status_code == 422
    assert "less than the full amount" in bad.get_data(as_text=True)
    decision = {"resolution": "partial", "refund_amount": "20.00",
                "note": "Half the session happened."}
    # The admin is shown what each person gets, then confirms it.
    review = admin.post(f"/admin/disputes/{dispute_id}/resolve", decision,
                        token_page="/admin/disputes")
    assert review.status_code == 200
    assert "Student gets €20.00 back; coach gets €26.91." in review.get_data(as_text=True)
    response = admin.post(f"/admin/disputes/{dispute_id}", {**decision, "confirmed": "yes"},
                          token_page="/admin/disputes")
    assert response.status_code == 303
    with app.app_context():
        payment = db.session.get(Payment, completed)
        assert payment.status == "released" and payment.refunded_minor == 2000
        # The rest (29.90) is released: fee 2.99, coach 26.91.
        assert payment.payout.amount_minor == 2691
        assert ledger.balance("refunds", currency="EUR") == 2000
        assert ledger.balance("platform_revenue", currency="EUR") == 299
    healthy(app)


def test_dispute_is_refused_after_release_and_for_the_coach(app, coaching, completed, clock):
    coach = Client(app)
    coach.login("clara@example.com")
    page = coach.get(f"/payments/{completed}/dispute").get_data(as_text=True)
    assert "Only the student who paid can open a dispute." in page
    clock.advance(timedelta(hours=24))
    student = Client(app)
    student.login("sam@example.com")
    response = student.post(f"/payments/{completed}/dispute",
                            {"reason": "The coach left after ten minutes."},
                            token_page="/dashboard")
    assert response.status_code == 409
    assert "already been released" in response.get_data(as_text=True)


def test_admin_manual_refund_and_release_need_a_reason(app, coaching, completed, make_user,
                                                       client):
    make_user("admin", email="root@example.com")
    client.login("root@example.com")
    url = f"/admin/payments/{completed}"
    checked = client.post("/admin/payments/ledger-check", token_page="/admin/payments",
                          follow_redirects=True).get_data(as_text=True)
    assert "Ledger check passed" in checked
    no_reason = client.post(f"{url}/refund", {"amount": "10", "reason": ""}, token_page=url)
    assert no_reason.status_code == 422 and "Give a reason." in no_reason.get_data(
        as_text=True)
    too_much = client.post(f"{url}/refund", {"amount": "50", "reason": "goodwill"},
                           token_page=url)
    assert too_much.status_code == 422 and "Refund between" in too_much.get_data(as_text=True)
    ok = client.post(f"{url}/refund", {"amount": "9.90", "reason": "Late start"},
                     token_page=url)
    assert ok.status_code == 303
    ok = client.post(f"{url}/release", {"reason": "Student confirmed all good"},
                     token_page=url)
    assert ok.status_code == 303
    again = client.post(f"{url}/release", {"reason": "Twice?"}, token_page=url)
    assert again.status_code == 409
    with app.app_context():
        payment = db.session.get(Payment, completed)
        assert payment.status == "released" and payment.refunded_minor == 990
        assert payment.payout.amount_minor == 4000 - 400
    healthy(app)


def test_strangers_cannot_see_payments(app, coaching, completed, make_user, client):
    make_user(email="eve@example.com")
    client.login("eve@example.com")
    for url in (f"/payments/{completed}/receipt", f"/payments/{completed}/pay",
                f"/payments/{completed}/dispute", f"/payments/{completed}/status"):
        assert client.get(url).status_code == 404, url
    assert client.get(f"/admin/payments/{completed}").status_code == 403


@pytest.mark.stripe
def test_coach_connects_a_payout_account_through_stripe_onboarding(make_app, fake_connect,  # noqa: F811
                                                                  coaching):
    app = make_app(**fake_connect.app_config())
    coach = Client(app)
    coach.login("clara@example.com")
    assert "Set up payouts with Stripe" in coach.get("/payments/").get_data(as_text=True)
    response = coach.post("/payments/connect", token_page="/payments/")
    assert response.status_code == 303
    onboarding = response.headers["Location"]
    assert onboarding.startswith(fake_connect.base_url)
    [account] = fake_connect.accounts.values()
    with app.app_context():
        assert profile_for(db.session.get(User, coaching["coach"].id)).stripe_account_id == \
            account["id"]
    # Stripe's hosted onboarding sends the coach back to us when done.
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(onboarding)
    except urllib.error.HTTPError as redirect:
        back = redirect.headers["Location"]
    assert back.endswith("/payments/connect/return")
    page = coach.get("/payments/connect/return", follow_redirects=True).get_data(as_text=True)
    assert "Your payout account is ready." in page and "Connected" in page
    with app.app_context():
        assert profile_for(db.session.get(User, coaching["coach"].id)).payouts_enabled


def test_card_dispute_from_the_bank_freezes_the_payment(stripe_app, pending):
    paid = event("evt_paid", "payment_intent.succeeded", "pi_unit_1")
    assert post_webhook(stripe_app, paid, sign(paid)).status_code == 200
    dispute = json.dumps({"id": "evt_dispute", "type": "charge.dispute.created",
                          "data": {"object": {"id": "dp_1", "object": "dispute",
                                              "charge": "ch_1", "payment_intent": "pi_unit_1",
                                              "reason": "fraudulent", "amount": 4990}}}).encode()
    assert post_webhook(stripe_app, dispute, sign(dispute)).status_code == 200
    assert states(stripe_app, pending)[0] == "disputed"
    from skileez.payments.models import Dispute

    with stripe_app.app_context():
        item = db.session.scalar(select(Dispute))
        assert item.source == "stripe" and "fraudulent" in item.reason


def test_payment_history_and_receipt(app, coaching, completed, client):
    client.login("sam@example.com")
    history = client.get("/payments/").get_data(as_text=True)
    assert "Conversation practice #1" in history and "€49.90" in history
    receipt = client.get(f"/payments/{completed}/receipt").get_data(as_text=True)
    assert f"Receipt #{completed}" in receipt and "Total paid" in receipt
    assert "€49.90" in receipt and "Sam Rivera" in receipt and "Clara Schmidt" in receipt
