"""Issue 11, chargebacks and payout reversals: a cardholder's bank disputes a charge.

Before release the release is frozen and an in-app dispute follows the bank's; lost, the
escrowed money goes to the bank and the coach is not paid. After release the admin gets a
case; when the bank takes the money the coach's transfer is reversed at Stripe (the fake
Connect in front of localstripe, through the real library), the books stay balanced and
the coach's earnings page says why their balance dipped; won, the money comes back and
the coach is owed again. Every event is delivered twice and in several orders. An admin
can also reverse a paid transfer with a reason, and send the bank evidence.

localstripe has no disputes, so the bank's side lives in the fake (``open_dispute``); each
event is built from the dispute as the fake holds it, signed and posted to the app.
"""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import select

from skileez.auth.models import User
from skileez.coaches.operations import profile_for
from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.jobs.sweep import sweep
from skileez.notifications.compose import render_email
from skileez.notifications.models import Notification
from skileez.payments import ledger
from skileez.payments.models import Dispute, Payment, Payout, TransferReversal
from tests.conftest import Client
from tests.fake_stripe_connect import fake_connect  # noqa: F401
from tests.stripe_support import WEBHOOK_SECRET, localstripe  # noqa: F401
from tests.test_payments import _paid_and_completed, post_webhook, sign

pytestmark = [pytest.mark.stripe, pytest.mark.usefixtures("ledger_checked_after_each_test")]

_event_ids = count(1)
PAID, FEE, NET = 4990, 499, 4491


@pytest.fixture
def paid(make_app, fake_connect, coaching, book_session, clock, localstripe, make_user):  # noqa: F811
    """A completed session paid through the real library; its release is 24 h away."""
    localstripe.reset()
    make_user("admin", name="Ada Admin", email="root@example.com")
    app = make_app(**fake_connect.app_config())
    payment_id = _paid_and_completed(app, coaching, book_session, clock, connect=fake_connect)
    with app.app_context():
        payment = db.session.get(Payment, payment_id)
        charge_id, intent_id = payment.charge_id, payment.payment_intent_id
    return {"app": app, "payment_id": payment_id, "charge_id": charge_id,
            "intent_id": intent_id, "connect": fake_connect, "clock": clock,
            "student_id": coaching["student"].id, "coach_id": coaching["coach"].id}


@pytest.fixture
def released(paid):
    """The same, 25 hours later: released to the coach and transferred to their account."""
    paid["clock"].advance(timedelta(hours=25))
    for _ in range(3):  # the release sweep, then the payout's
        with paid["app"].app_context():
            sweep()
    assert [t["amount"] for t in paid["connect"].transfers] == [NET]
    with paid["app"].app_context():
        assert db.session.get(Payment, paid["payment_id"]).payout.status == "paid"
    return paid


def bank_dispute(paid, **kwargs) -> str:
    """The cardholder's bank disputes the charge (at the fake Stripe)."""
    return paid["connect"].open_dispute(paid["charge_id"], amount=PAID,
                                        payment_intent=paid["intent_id"], **kwargs)["id"]


def event(paid, dispute_id: str, kind: str, **changes) -> bytes:
    """A ``charge.dispute.<kind>`` event for the dispute as Stripe holds it (after changes)."""
    dispute = paid["connect"].dispute(dispute_id, **changes)
    return json.dumps({"id": f"evt_dispute_{next(_event_ids)}", "object": "event",
                       "type": f"charge.dispute.{kind}", "data": {"object": dispute}}).encode()


def deliver(paid, payload: bytes) -> str:
    response = post_webhook(paid["app"], payload, sign(payload, WEBHOOK_SECRET))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["outcome"]


def deliver_twice(paid, payload: bytes) -> str:
    outcome = deliver(paid, payload)
    assert deliver(paid, payload) == "duplicate"
    return outcome


def books(paid) -> dict:
    with paid["app"].app_context():
        return {account: ledger.balance(account, currency="EUR",
                                        coach_id=paid["coach_id"] if account in
                                        ("coach_payable", "paid_out") else None)
                for account in ("escrow", "coach_payable", "paid_out", "platform_revenue",
                                "chargebacks", "reversed_payouts")}


def state(paid) -> dict:
    with paid["app"].app_context():
        payment = db.session.get(Payment, paid["payment_id"])
        dispute = db.session.scalar(select(Dispute).where(
            Dispute.payment_id == payment.id, Dispute.stripe_dispute_id.is_not(None)))
        payout = payment.payout
        return {"payment": payment.status,
                "payout": payout.status if payout else None,
                "dispute": (dispute.status, dispute.resolution, dispute.bank_status,
                            dispute.funds_out) if dispute else None,
                "reversals": [(r.kind, r.status, r.amount_minor) for r in db.session.scalars(
                    select(TransferReversal))]}


def kinds_for(paid, who: str) -> list[str]:
    with paid["app"].app_context():
        return sorted(n.kind for n in db.session.scalars(select(Notification).where(
            Notification.recipient_id == paid[f"{who}_id"],
            Notification.kind.in_(("chargeback_opened", "chargeback_withdrawn",
                                   "chargeback_closed", "payout_reversed")))))


def signed_in(paid, email: str) -> Client:
    client = Client(paid["app"])
    client.login(email)
    return client


def invariants(paid) -> list[str]:
    with paid["app"].app_context():
        return ledger.check_invariants()


# --- the done-when: a chargeback after release ------------------------------------------------

def test_a_chargeback_after_release_ends_with_a_transfer_reversal_and_balanced_books(released):
    paid = released
    dispute_id = bank_dispute(paid)
    assert deliver_twice(paid, event(paid, dispute_id, "created")).startswith("opened")
    # Nothing taken yet: the coach keeps their transfer while the bank only asks.
    assert paid["connect"].reversals == []
    assert state(paid)["dispute"] == ("open", None, "needs_response", False)

    outcome = deliver_twice(paid, event(paid, dispute_id, "funds_withdrawn"))
    assert outcome.startswith("clawed back; transfer reversal")
    [reversal] = paid["connect"].reversals
    transfer = paid["connect"].transfers[0]
    assert (reversal["transfer"], reversal["amount"]) == (transfer["id"], NET)
    [request] = paid["connect"].requests_to("POST", f"/v1/transfers/{transfer['id']}/reversals")
    with paid["app"].app_context():
        row = db.session.scalar(select(TransferReversal))
        assert request.header("Idempotency-Key") == f"transfer-reversal-{row.id}"
        assert row.gateway_reversal_id == reversal["id"]
    assert state(paid)["payout"] == "reversed"
    # The bank holds the whole payment; the coach's share came back from their account and
    # the platform gave up its fee: balanced, and nothing owed to or by anyone.
    assert books(paid) == {"escrow": 0, "coach_payable": 0, "paid_out": 0,
                           "platform_revenue": 0, "chargebacks": PAID, "reversed_payouts": 0}
    assert invariants(paid) == []
    assert kinds_for(paid, "coach") == ["chargeback_opened", "chargeback_withdrawn",
                                        "payout_reversed"]
    assert kinds_for(paid, "student") == ["chargeback_opened"]

    coach = signed_in(paid, "clara@example.com")
    page = coach.get("/payments/").get_data(as_text=True)
    assert "Card disputes" in page
    assert "your share of €44.91 was taken back from your Stripe account" in page
    assert "Taken back: the student’s bank took the payment back" in page

    admin = signed_in(paid, "root@example.com")
    with paid["app"].app_context():
        case_id = db.session.scalar(select(Dispute.id).where(
            Dispute.stripe_dispute_id == dispute_id))
    listed = admin.get("/admin/disputes").get_data(as_text=True)
    assert f"Dispute #{case_id}" in listed and "the bank decides this one" in listed
    page = admin.get(f"/admin/disputes/{case_id}").get_data(as_text=True)
    assert "Card dispute at the bank" in page and "The bank holds it." in page
    assert "their transfer is reversed" in page

    # The bank decides for us: the money comes back and the coach is owed again.
    deliver_twice(paid, event(paid, dispute_id, "closed", status="won"))
    assert deliver_twice(paid, event(paid, dispute_id, "funds_reinstated")) == "recorded"
    # Owed again, and paid again at once (a second transfer, see the repayment tests).
    assert books(paid) == {"escrow": 0, "coach_payable": 0, "paid_out": NET,
                           "platform_revenue": FEE, "chargebacks": 0, "reversed_payouts": 0}
    assert state(paid)["dispute"] == ("resolved", "bank_won", "won", False)
    assert kinds_for(paid, "student") == ["chargeback_closed", "chargeback_opened"]
    assert "chargeback_closed" in kinds_for(paid, "coach")
    page = coach.get("/payments/").get_data(as_text=True)
    assert "Paid again after the bank decided for you: €44.91 was transferred" in page
    page = admin.get(f"/admin/disputes/{case_id}").get_data(as_text=True)
    assert "the bank decided for us (won)" in page
    assert invariants(paid) == []


def test_the_coach_sees_a_negative_balance_explained_while_the_reversal_is_refused(released):
    """Stripe refuses the reversal (say the coach's account is empty): the books show the
    coach owing their share, the earnings page says why, and the sweep retries it."""
    paid = released
    transfer = paid["connect"].transfers[0]
    transfer["reversed"], transfer["amount_reversed"] = True, transfer["amount"]
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "created"))
    deliver(paid, event(paid, dispute_id, "funds_withdrawn"))
    assert state(paid)["reversals"] == [("chargeback", "failed", NET)]
    assert books(paid)["coach_payable"] == -NET
    assert invariants(paid) == []
    page = signed_in(paid, "clara@example.com").get("/payments/").get_data(as_text=True)
    assert "Your balance is <strong>−€44.91</strong>" in page or \
        "Your balance is <strong>-€44.91</strong>" in page
    assert "is being taken back from your Stripe account" in page
    # Stripe takes it on the retry: the balance is back to zero.
    transfer["reversed"], transfer["amount_reversed"] = False, 0
    paid["clock"].advance(timedelta(minutes=10))
    with paid["app"].app_context():
        sweep()
    assert state(paid)["reversals"] == [("chargeback", "succeeded", NET)]
    assert books(paid)["coach_payable"] == 0


def test_a_reversal_not_sent_before_the_bank_gave_the_money_back_is_never_sent(released):
    paid = released
    transfer = paid["connect"].transfers[0]
    transfer["reversed"], transfer["amount_reversed"] = True, transfer["amount"]  # refused
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "funds_withdrawn"))
    assert state(paid)["reversals"] == [("chargeback", "failed", NET)]
    deliver(paid, event(paid, dispute_id, "funds_reinstated"))
    transfer["reversed"], transfer["amount_reversed"] = False, 0
    paid["clock"].advance(timedelta(hours=1))
    for _ in range(2):
        with paid["app"].app_context():
            sweep()
    assert paid["connect"].reversals == [] and state(paid)["payout"] == "paid"
    assert books(paid)["coach_payable"] == 0 and books(paid)["paid_out"] == NET
    page = signed_in(paid, "clara@example.com").get("/payments/").get_data(as_text=True)
    assert "€44.91 is owed to you again" not in page
    assert "The bank returned the money before anything was taken from you." in page


def test_a_negative_coach_balance_beyond_what_chargebacks_took_is_still_a_problem(released):
    """A chargeback may take a coach's balance below zero by what it clawed back, no more."""
    paid = released
    transfer = paid["connect"].transfers[0]
    transfer["reversed"], transfer["amount_reversed"] = True, transfer["amount"]
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "funds_withdrawn"))
    with paid["app"].app_context():
        assert ledger.check_invariants() == []
        payout = db.session.scalar(select(Payout))
        ledger._post("payout_reversal", [ledger.Line("coach_payable", -1, "EUR", payout.coach_id),
                                         ledger.Line("paid_out", 1, "EUR", payout.coach_id)],
                     payout=payout)
        problems = ledger.check_invariants()
        db.session.rollback()
    assert f"Coach {paid['coach_id']}'s payable balance is negative in EUR: -4492 " \
           "(chargebacks account for -4491)." in problems


ORDERS_AFTER_RELEASE = {
    "in order": ["created", "funds_withdrawn", "closed"],
    "closed first": ["closed", "funds_withdrawn", "created"],
    "withdrawn first": ["funds_withdrawn", "closed", "created"],
    "created last, closed in the middle": ["funds_withdrawn", "closed", "updated", "created"],
}


@pytest.mark.parametrize("order", ORDERS_AFTER_RELEASE, ids=list(ORDERS_AFTER_RELEASE))
def test_a_lost_chargeback_after_release_ends_the_same_in_any_order(released, order):
    paid = released
    dispute_id = bank_dispute(paid)
    payloads = {kind: event(paid, dispute_id, kind) for kind in ("created", "funds_withdrawn",
                                                                  "updated")}
    payloads["closed"] = event(paid, dispute_id, "closed", status="lost")
    paid["connect"].dispute(dispute_id, status="needs_response")
    for kind in ORDERS_AFTER_RELEASE[order]:
        deliver_twice(paid, payloads[kind])
    assert state(paid) == {"payment": "released", "payout": "reversed",
                           "dispute": ("resolved", "bank_lost", "lost", True),
                           "reversals": [("chargeback", "succeeded", NET)]}
    assert len(paid["connect"].reversals) == 1
    assert books(paid)["chargebacks"] == PAID and books(paid)["coach_payable"] == 0
    assert kinds_for(paid, "student") == ["chargeback_closed", "chargeback_opened"]


# --- before release ---------------------------------------------------------------------------

ORDERS_BEFORE_RELEASE = {
    "in order": ["created", "funds_withdrawn", "closed"],
    "closed before created": ["closed", "created", "funds_withdrawn"],
    "withdrawn before created": ["funds_withdrawn", "created", "closed"],
}


@pytest.mark.parametrize("order", ORDERS_BEFORE_RELEASE, ids=list(ORDERS_BEFORE_RELEASE))
def test_lost_before_release_the_money_went_to_the_bank_and_the_coach_is_not_paid(paid, order):
    dispute_id = bank_dispute(paid)
    payloads = {kind: event(paid, dispute_id, kind) for kind in ("created", "funds_withdrawn")}
    payloads["closed"] = event(paid, dispute_id, "closed", status="lost")
    for kind in ORDERS_BEFORE_RELEASE[order]:
        deliver_twice(paid, payloads[kind])
    paid["clock"].advance(timedelta(hours=25))
    for _ in range(2):
        with paid["app"].app_context():
            sweep()
    assert state(paid) == {"payment": "charged_back", "payout": None,
                           "dispute": ("resolved", "bank_lost", "lost", True), "reversals": []}
    assert paid["connect"].transfers == []
    assert books(paid) == {"escrow": 0, "coach_payable": 0, "paid_out": 0,
                           "platform_revenue": 0, "chargebacks": PAID, "reversed_payouts": 0}
    assert kinds_for(paid, "coach") == ["chargeback_closed", "chargeback_opened"]
    page = signed_in(paid, "clara@example.com").get("/payments/").get_data(as_text=True)
    assert "nothing of it is paid to you" in page
    page = signed_in(paid, "sam@example.com").get("/payments/").get_data(as_text=True)
    assert "Taken back by the bank" in page
    assert "The bank returned €49.90 to your card after a card dispute" in page


def test_a_bank_dispute_before_release_freezes_it_until_an_admin_decides(paid):
    dispute_id = bank_dispute(paid)
    deliver_twice(paid, event(paid, dispute_id, "created"))
    deliver_twice(paid, event(paid, dispute_id, "funds_withdrawn"))
    paid["clock"].advance(timedelta(hours=25))
    with paid["app"].app_context():
        sweep()
    assert state(paid)["payment"] == "disputed" and paid["connect"].transfers == []
    # Won at the bank: the in-app dispute is still the admin's to decide, as any other.
    deliver_twice(paid, event(paid, dispute_id, "closed", status="won"))
    assert state(paid)["dispute"] == ("open", None, "won", False)
    assert books(paid)["escrow"] == PAID
    admin = signed_in(paid, "root@example.com")
    with paid["app"].app_context():
        case_id = db.session.scalar(select(Dispute.id))
    url = f"/admin/disputes/{case_id}"
    response = admin.post(url, {"resolution": "release", "note": "The bank sided with us.",
                                "confirmed": "yes"}, token_page=url)
    assert response.status_code == 303
    assert state(paid)["payment"] == "released"


# --- evidence ---------------------------------------------------------------------------------

def test_the_admin_sends_the_bank_evidence_with_the_sessions_record(released):
    paid = released
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "created"))
    admin = signed_in(paid, "root@example.com")
    with paid["app"].app_context():
        case_id = db.session.scalar(select(Dispute.id))
    url = f"/admin/disputes/{case_id}"
    page = admin.get(url).get_data(as_text=True)
    assert "Send to the bank" in page and "Timeline:" in page
    assert admin.post(f"{url}/evidence", {"text": "  ", "include_summary": "y"},
                      token_page=url).status_code == 422
    assert paid["connect"].disputes[dispute_id]["evidence"] == {}
    response = admin.post(f"{url}/evidence", {"text": "The student attended the full hour.",
                                              "include_summary": "y"}, token_page=url)
    assert response.status_code == 303
    sent = paid["connect"].disputes[dispute_id]
    assert sent["status"] == "under_review"
    assert sent["evidence"]["uncategorized_text"] == "The student attended the full hour."
    record = sent["evidence"]["access_activity_log"]
    assert "Sam Rivera joined:" in record and "Completed:" in record and "UTC" in record
    [request] = paid["connect"].requests_to("POST", f"/v1/disputes/{dispute_id}")
    assert request.params["submit"] == "true"
    assert request.header("Idempotency-Key") == f"dispute-evidence-{case_id}"
    page = admin.get(url).get_data(as_text=True)
    assert "Evidence sent" in page and "under review" in page
    again = admin.post(f"{url}/evidence", {"text": "More."}, token_page=url)
    assert again.status_code == 409
    assert "already submitted" in again.get_data(as_text=True)


# --- payout reversal by an admin --------------------------------------------------------------

def test_an_admin_reverses_a_paid_payout_with_a_reason(released):
    paid = released
    admin = signed_in(paid, "root@example.com")
    url = f"/admin/payments/{paid['payment_id']}"
    assert admin.post(f"{url}/reverse-payout", {"reason": "no"},
                      token_page=url).status_code == 422
    assert paid["connect"].reversals == []
    response = admin.post(f"{url}/reverse-payout",
                          {"reason": "Fraud finding: the session never took place."},
                          token_page=url)
    assert response.status_code == 303
    assert [r["amount"] for r in paid["connect"].reversals] == [NET]
    assert state(paid)["payout"] == "reversed"
    # Returned to the platform, owed to no one until an admin refunds or re-pays.
    assert books(paid) == {"escrow": 0, "coach_payable": 0, "paid_out": 0,
                           "platform_revenue": FEE, "chargebacks": 0, "reversed_payouts": NET}
    with paid["app"].app_context():
        reversal = db.session.scalar(select(TransferReversal))
        audit = db.session.scalar(select(AuditEvent).where(
            AuditEvent.object_type == "transfer_reversals", AuditEvent.object_id == reversal.id,
            AuditEvent.from_state.is_(None)))
        assert audit.actor.name == "Ada Admin"
        assert "Fraud finding: the session never took place." in audit.reason
    page = admin.get(url).get_data(as_text=True)
    assert "taken back from the coach" in page and "owed to no one" in page
    again = admin.post(f"{url}/reverse-payout", {"reason": "Once more, to be sure."},
                       token_page=url)
    assert again.status_code == 409
    assert "This payout is already reversed or being reversed." in again.get_data(as_text=True)
    assert len(paid["connect"].reversals) == 1
    assert kinds_for(paid, "coach") == ["payout_reversed"]
    with paid["app"].app_context():
        coach = db.session.get(User, paid["coach_id"])
        notice = db.session.scalar(select(Notification).where(
            Notification.recipient_id == coach.id, Notification.kind == "payout_reversed"))
        told = render_email("payout_reversed", coach, notice.payload)[1]
    # Said once: not "by an admin: reversed by Ada Admin: …".
    assert "from your Stripe account: reversed by Ada Admin: Fraud finding" in told
    assert "by an admin" not in told
    page = signed_in(paid, "clara@example.com").get("/payments/").get_data(as_text=True)
    assert "Taken back: reversed by Ada Admin: Fraud finding" in page
    # The money overview says the reversed money waits for a decision (a tester found it
    # stranded there with "every coach has been paid" and no word of it).
    overview = admin.get("/admin/money").get_data(as_text=True)
    assert 'data-testid="reversed-waiting-EUR"' in overview
    assert "taken back from coaches by payout reversals is held by the platform" in overview


def _release_without_a_payout_account(paid):
    with paid["app"].app_context():
        profile = profile_for(db.session.get(User, paid["coach_id"]))
        profile.payouts_enabled = False
        db.session.commit()
    paid["clock"].advance(timedelta(hours=25))
    for _ in range(2):
        with paid["app"].app_context():
            sweep()
    assert state(paid)["payout"] == "payable"


def _coach_connects(paid):
    with paid["app"].app_context():
        profile = profile_for(db.session.get(User, paid["coach_id"]))
        profile.payouts_enabled = True
        db.session.commit()
    for _ in range(2):
        with paid["app"].app_context():
            sweep()


def test_a_payout_not_yet_paid_cannot_be_reversed(paid):
    _release_without_a_payout_account(paid)
    admin = signed_in(paid, "root@example.com")
    url = f"/admin/payments/{paid['payment_id']}"
    assert "This payout is payable" in admin.get(url).get_data(as_text=True)
    response = admin.post(f"{url}/reverse-payout", {"reason": "Fraud finding here."},
                          token_page=url)
    assert response.status_code == 409
    assert state(paid)["reversals"] == [] and paid["connect"].reversals == []


def test_a_payout_not_yet_transferred_waits_while_the_bank_holds_the_money(paid):
    """Nothing to reverse: the payout is held back, and paid the normal way once the bank
    returns the money."""
    _release_without_a_payout_account(paid)
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "created"))
    assert deliver(paid, event(paid, dispute_id, "funds_withdrawn")).endswith(
        "payout held back")
    assert books(paid)["coach_payable"] == 0 and books(paid)["chargebacks"] == PAID
    _coach_connects(paid)
    assert paid["connect"].transfers == [] and state(paid)["payout"] == "payable"
    deliver(paid, event(paid, dispute_id, "funds_reinstated"))
    deliver(paid, event(paid, dispute_id, "closed", status="won"))
    _coach_connects(paid)
    assert [t["amount"] for t in paid["connect"].transfers] == [NET]
    assert state(paid)["payout"] == "paid" and paid["connect"].reversals == []
    assert books(paid) == {"escrow": 0, "coach_payable": 0, "paid_out": NET,
                           "platform_revenue": FEE, "chargebacks": 0, "reversed_payouts": 0}


def test_a_transfer_that_lands_while_the_bank_holds_the_money_is_taken_back(paid):
    """The payout job had checked its row before the chargeback came and was already
    asking Stripe: its transfer is recorded, and reversed straight after."""
    from skileez.payments.operations import PayoutAttempt

    class AlreadyPastTheCheck(PayoutAttempt):
        def blocked(self, payout):
            return None

    _release_without_a_payout_account(paid)
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "funds_withdrawn"))
    with paid["app"].app_context():
        profile = profile_for(db.session.get(User, paid["coach_id"]))
        profile.payouts_enabled = True
        db.session.commit()
        assert AlreadyPastTheCheck().run(db.session.scalar(select(Payout.id))) == "paid"
    assert [t["amount"] for t in paid["connect"].transfers] == [NET]
    assert [r["amount"] for r in paid["connect"].reversals] == [NET]
    assert state(paid)["payout"] == "reversed"
    assert books(paid)["coach_payable"] == 0 and books(paid)["paid_out"] == 0


def test_lost_after_release_a_payout_not_yet_transferred_is_never_paid(paid):
    _release_without_a_payout_account(paid)
    dispute_id = bank_dispute(paid)
    deliver_twice(paid, event(paid, dispute_id, "closed", status="lost"))
    assert state(paid)["payout"] == "reversed" and state(paid)["reversals"] == []
    _coach_connects(paid)
    assert paid["connect"].transfers == []
    assert books(paid) == {"escrow": 0, "coach_payable": 0, "paid_out": 0,
                           "platform_revenue": 0, "chargebacks": PAID, "reversed_payouts": 0}
    page = signed_in(paid, "clara@example.com").get("/payments/").get_data(as_text=True)
    assert "your share of €44.91 is not paid to you" in page
    assert 'data-testid="payable-EUR">€0.00' in page


def test_won_before_we_heard_of_it_freezes_nothing(paid):
    dispute_id = bank_dispute(paid)
    deliver_twice(paid, event(paid, dispute_id, "closed", status="won"))
    deliver_twice(paid, event(paid, dispute_id, "created", status="needs_response"))
    assert state(paid)["payment"] == "held"
    assert state(paid)["dispute"] == ("resolved", "bank_won", "won", False)
    paid["clock"].advance(timedelta(hours=25))
    for _ in range(3):
        with paid["app"].app_context():
            sweep()
    assert [t["amount"] for t in paid["connect"].transfers] == [NET]


# --- events we cannot read --------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"id": None}, {"id": 12}, {"status": 3}, {"reason": ["x"]},
    {"evidence_details": {"due_by": "tomorrow"}}, {"amount": -5}, {"charge": {"id": 1}},
])
def test_a_dispute_event_we_cannot_read_is_refused_and_changes_nothing(released, change):
    paid = released
    dispute_id = bank_dispute(paid)
    dispute = {**paid["connect"].dispute(dispute_id), **change}
    payload = json.dumps({"id": f"evt_bad_{next(_event_ids)}", "type": "charge.dispute.created",
                          "data": {"object": dispute}}).encode()
    response = post_webhook(paid["app"], payload, sign(payload, WEBHOOK_SECRET))
    assert response.status_code == 400
    assert state(paid)["dispute"] is None


def test_a_dispute_on_a_charge_that_is_not_ours_is_acknowledged(released):
    paid = released
    dispute = paid["connect"].open_dispute("ch_someone_else", amount=100)
    payload = json.dumps({"id": "evt_foreign", "type": "charge.dispute.funds_withdrawn",
                          "data": {"object": dispute}}).encode()
    assert deliver(paid, payload) == "unknown payment"
    assert paid["connect"].reversals == []


# --- follow-ups: the earnings page's query budget ----------------------------------------------

@pytest.mark.parametrize("when", ["before release", "after release"])
def test_the_earnings_page_with_card_disputes_stays_within_the_query_budget(paid, when):
    """A coach with card disputes opens their earnings page at the same ≤ 10 statements as
    any page, and the count does not grow with more disputes (each row's payout and
    reversal come with the list, not one by one)."""
    from tests.test_admin_query_budget import BUDGET, described, statements_for

    if when == "after release":
        paid["clock"].advance(timedelta(hours=25))
        for _ in range(3):
            with paid["app"].app_context():
                sweep()
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "created"))
    deliver(paid, event(paid, dispute_id, "funds_withdrawn"))
    coach = signed_in(paid, "clara@example.com")
    coach.get("/payments/")  # the first visit warms the session and the caches
    statements = statements_for(paid["app"], coach, "/payments/")
    page = coach.get("/payments/").get_data(as_text=True)
    assert "Card disputes" in page
    assert len(statements) <= BUDGET, described(statements)
    # A second bank dispute on the same payment: still the same count.
    second = bank_dispute(paid)
    deliver(paid, event(paid, second, "created"))
    again = statements_for(paid["app"], coach, "/payments/")
    assert len(again) <= len(statements), described(again)


# --- follow-ups: what the payment's headline says after a chargeback after release ---------

def headlines(paid) -> dict[str, str]:
    """The payment's money headline as the student, the coach and an admin read it."""
    from skileez.payments.words import describe_money

    with paid["app"].app_context():
        payment = db.session.get(Payment, paid["payment_id"])
        admin = db.session.scalar(select(User).where(User.email == "root@example.com"))
        return {who: describe_money(payment, viewer).headline for who, viewer in (
            ("student", payment.student), ("coach", payment.coach), ("admin", admin))}


@pytest.mark.parametrize("verdict", ["lost", "won"])
def test_the_payment_headline_says_what_the_bank_did_after_release(released, verdict):
    """'Paid — released to the coach' hid a chargeback: each step now reads as what
    happened, for the student, the coach and an admin alike, on their pages too."""
    paid = released
    assert headlines(paid)["student"] == "Paid — released to the coach"
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "created"))
    assert headlines(paid) == {"student": "Disputed at the bank — released to the coach",
                               "coach": "Disputed at the bank — released to you",
                               "admin": "Disputed at the bank — released to the coach"}
    deliver(paid, event(paid, dispute_id, "funds_withdrawn"))
    assert set(headlines(paid).values()) == {"Disputed at the bank — money taken back"}
    page = signed_in(paid, "sam@example.com").get("/payments/").get_data(as_text=True)
    assert "Disputed at the bank — money taken back" in page
    if verdict == "lost":
        deliver(paid, event(paid, dispute_id, "closed", status="lost"))
        assert set(headlines(paid).values()) == {"Taken back by the bank"}
        expected = "Taken back by the bank"
    else:
        deliver(paid, event(paid, dispute_id, "funds_reinstated"))
        deliver(paid, event(paid, dispute_id, "closed", status="won"))
        assert set(headlines(paid).values()) == {"Bank decided for the coach"}
        expected = "Bank decided for the coach"
    with paid["app"].app_context():
        page_url = f"/admin/payments/{paid['payment_id']}"
    assert expected in signed_in(paid, "root@example.com").get(page_url).get_data(as_text=True)
    assert expected in signed_in(paid, "sam@example.com").get("/payments/").get_data(
        as_text=True)


# --- follow-ups: a won chargeback after release, whatever order its events arrive in --------

#: Stripe sends ``funds_withdrawn`` when it takes the money and ``funds_reinstated`` after
#: the dispute closed won; deliveries may come in any order (see chargebacks.py).
ORDERS_WON = {
    "in order": ["created", "funds_withdrawn", "closed", "funds_reinstated"],
    "won before withdrawn": ["created", "closed", "funds_withdrawn", "funds_reinstated"],
    "won first, reinstated before withdrawn": ["closed", "funds_reinstated",
                                               "funds_withdrawn", "created"],
    "reinstated before won": ["funds_withdrawn", "funds_reinstated", "closed", "created"],
}


@pytest.mark.parametrize("order", ORDERS_WON, ids=list(ORDERS_WON))
def test_a_won_chargeback_after_release_loses_and_double_counts_nothing_in_any_order(
        released, order):
    """However the events of a won dispute arrive, the bank ends holding nothing, the
    platform keeps its fee and the coach's share is theirs exactly once: either they kept
    their transfer (nothing was taken), or it was taken back and transferred again."""
    paid = released
    dispute_id = bank_dispute(paid)
    payloads = {kind: event(paid, dispute_id, kind) for kind in ("created", "funds_withdrawn",
                                                                  "funds_reinstated")}
    payloads["closed"] = event(paid, dispute_id, "closed", status="won")
    for kind in ORDERS_WON[order]:
        deliver_twice(paid, payloads[kind])
    totals = books(paid)
    assert totals["chargebacks"] == 0 and totals["platform_revenue"] == FEE
    assert totals["coach_payable"] + totals["paid_out"] == NET
    assert state(paid)["dispute"] == ("resolved", "bank_won", "won", False)
    assert (totals["paid_out"], totals["coach_payable"]) == (NET, 0)
    if paid["connect"].reversals:  # taken back while the bank held it: paid again, once
        assert [r[:2] for r in repayments(paid)] == [("paid", NET)]
        assert len(paid["connect"].transfers) == 2
    else:  # nothing was taken: the coach keeps their transfer, nothing is owed
        assert state(paid)["payout"] == "paid" and repayments(paid) == []
        assert len(paid["connect"].transfers) == 1
    assert invariants(paid) == []


# --- follow-ups: the coach is paid again after a won chargeback ----------------------------

def repayments(paid) -> list[tuple[str, int, str | None]]:
    from skileez.payments.models import Repayment

    with paid["app"].app_context():
        return [(r.status, r.amount_minor, r.transfer_id) for r in db.session.scalars(
            select(Repayment).order_by(Repayment.id))]


def _withdrawn_and_won(paid) -> None:
    dispute_id = bank_dispute(paid)
    deliver_twice(paid, event(paid, dispute_id, "created"))
    deliver_twice(paid, event(paid, dispute_id, "funds_withdrawn"))
    assert state(paid)["reversals"] == [("chargeback", "succeeded", NET)]
    deliver_twice(paid, event(paid, dispute_id, "closed", status="won"))
    deliver_twice(paid, event(paid, dispute_id, "funds_reinstated"))


def test_after_a_won_chargeback_the_coach_is_transferred_their_share_again(released):
    """The transfer was reversed while the bank held the money; won, the coach is owed
    again and gets a new transfer, once, with its own idempotency key and posting; the
    earnings page and the admin payment page show it."""
    paid = released
    _withdrawn_and_won(paid)
    assert len(paid["connect"].transfers) == 2
    again = paid["connect"].transfers[1]
    assert again["amount"] == NET
    [(status, amount, transfer_id)] = repayments(paid)
    assert (status, amount, transfer_id) == ("paid", NET, again["id"])
    [request] = [r for r in paid["connect"].requests_to("POST", "/v1/transfers")
                 if (r.header("Idempotency-Key") or "").startswith("repayment-")]
    assert request.header("Idempotency-Key") == "repayment-1"
    assert books(paid) == {"escrow": 0, "coach_payable": 0, "paid_out": NET,
                           "platform_revenue": FEE, "chargebacks": 0, "reversed_payouts": 0}
    assert invariants(paid) == []
    # A later sweep sends nothing more.
    paid["clock"].advance(timedelta(hours=2))
    with paid["app"].app_context():
        sweep()
    assert len(paid["connect"].transfers) == 2
    page = signed_in(paid, "clara@example.com").get("/payments/").get_data(as_text=True)
    assert "Paid again after the bank decided for you: €44.91" in page
    admin_page = signed_in(paid, "root@example.com").get(
        f"/admin/payments/{paid['payment_id']}").get_data(as_text=True)
    assert "Repayment #1" in admin_page and "paid" in admin_page


def test_a_coach_without_a_connected_account_is_owed_the_repayment_until_they_connect(
        released):
    """As a payout: without an account the repayment waits as payable (the coach's
    balance shows it owed), and is transferred by the sweep once they connect one."""
    paid = released
    with paid["app"].app_context():
        profile = profile_for(db.session.get(User, paid["coach_id"]))
        account = profile.stripe_account_id
        profile.payouts_enabled = False
        db.session.commit()
    _withdrawn_and_won(paid)
    assert [r[:2] for r in repayments(paid)] == [("payable", NET)]
    assert books(paid)["coach_payable"] == NET and len(paid["connect"].transfers) == 1
    assert invariants(paid) == []
    with paid["app"].app_context():
        profile = profile_for(db.session.get(User, paid["coach_id"]))
        profile.payouts_enabled, profile.stripe_account_id = True, account
        db.session.commit()
    with paid["app"].app_context():
        sweep()
    assert [r[:2] for r in repayments(paid)] == [("paid", NET)]
    assert books(paid)["coach_payable"] == 0 and len(paid["connect"].transfers) == 2


def test_a_repayment_stripe_fails_is_retried_by_the_sweep_and_sent_once(released):
    """Stripe answers the repayment's transfer with a 500: it is failed with a retry time,
    the coach is still owed, and the sweep sends it again with the same key, once."""
    paid = released
    dispute_id = bank_dispute(paid)
    deliver(paid, event(paid, dispute_id, "funds_withdrawn"))
    paid["connect"].fail_next_transfers(1)
    deliver(paid, event(paid, dispute_id, "closed", status="won"))
    assert [r[:2] for r in repayments(paid)] == [("failed", NET)]
    assert books(paid)["coach_payable"] == NET and invariants(paid) == []
    paid["clock"].advance(timedelta(hours=1))
    for _ in range(2):
        with paid["app"].app_context():
            sweep()
    assert [r[:2] for r in repayments(paid)] == [("paid", NET)]
    assert len(paid["connect"].transfers) == 2 and books(paid)["coach_payable"] == 0
    keys = [r.header("Idempotency-Key") for r in paid["connect"].requests_to("POST",
                                                                              "/v1/transfers")]
    assert keys.count("repayment-1") == 2
