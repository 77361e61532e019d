"""StripeGateway with the real ``stripe`` library: localstripe for payments, a fake for Connect.

Every gateway here talks to ``tests.fake_stripe_connect``, which answers Connect itself and
forwards everything else to localstripe, exactly as the app will be configured in tests
(``fake_connect.app_config()``). Nothing in the library is mocked: requests go over HTTP and
the assertions are on what the servers saw and answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

import pytest
import stripe

from skileez.payments.gateway import CardDeclined, GatewayError, InvalidWebhook
from skileez.payments.stripe_gateway import StripeGateway, map_stripe_error
from tests.conftest import free_port
from tests.fake_stripe_connect import (  # noqa: F401 - fixtures
    FakeStripeConnect,
    fake_connect,
)
from tests.stripe_support import (  # noqa: F401 - fixtures
    SECRET_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    WebhookReceiver,
    localstripe,
)

pytestmark = pytest.mark.stripe

VISA = "pm_card_visa"
DECLINED = "pm_card_chargeCustomerFail"
DECLINED_NUMBER = "4000000000000341"
REQUIRES_3DS = "4000002500003155"
METADATA = {"payment_id": "17", "contract_id": "4"}


@pytest.fixture
def gateway(fake_connect: FakeStripeConnect) -> StripeGateway:  # noqa: F811
    return StripeGateway.from_config(fake_connect.app_config())


@pytest.fixture
def direct(localstripe: LocalStripe) -> stripe.StripeClient:  # noqa: F811
    """A client straight to localstripe, to check what the gateway left there."""
    return localstripe.client()


def card(client: stripe.StripeClient, number: str) -> str:
    return client.v1.payment_methods.create({
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    }).id


def paid_intent(gateway: StripeGateway, amount: int = 4990, key: str = "payment-1"):
    intent = gateway.create_payment_intent(amount_minor=amount, currency="EUR",
                                           idempotency_key=key, metadata=METADATA)
    return gateway.confirm_payment_intent(intent_id=intent.intent_id, payment_method=VISA)


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme, computed here rather than by the library under test."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def event_payload(object_id: str = "pi_123") -> str:
    return json.dumps({
        "id": "evt_1", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": object_id, "object": "payment_intent",
                            "metadata": {"payment_id": "17"}}},
    })


# --- configuration ------------------------------------------------------------------------


def test_from_config_needs_a_secret_key():
    with pytest.raises(GatewayError) as error:
        StripeGateway.from_config({"STRIPE_SECRET_KEY": None})
    assert error.value.code == "not_configured"


def test_requests_go_through_the_configured_base(gateway, fake_connect):  # noqa: F811
    gateway.create_payment_intent(amount_minor=100, currency="eur", idempotency_key="k1",
                                  metadata={})
    (request,) = fake_connect.requests_to("POST", "/v1/payment_intents")
    assert request.proxied and request.status == 200
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"


# --- payment intents ----------------------------------------------------------------------


def test_create_payment_intent(gateway, fake_connect, direct):  # noqa: F811
    intent = gateway.create_payment_intent(amount_minor=4990, currency="EUR",
                                           idempotency_key="payment-17", metadata=METADATA)
    assert intent.intent_id.startswith("pi_")
    assert intent.client_secret.startswith(f"{intent.intent_id}_secret_")
    assert (intent.status, intent.charge_id) == ("requires_payment_method", None)

    (request,) = fake_connect.requests_to("POST", "/v1/payment_intents")
    assert request.header("Idempotency-Key") == "payment-17"
    assert request.params == {"amount": "4990", "currency": "eur", "metadata": METADATA,
                              "payment_method_types": ["card"]}
    stored = direct.v1.payment_intents.retrieve(intent.intent_id)
    assert (stored.amount, stored.currency) == (4990, "eur")
    assert stored.metadata.to_dict() == METADATA


def test_confirm_succeeds_with_a_charge(gateway, direct):
    result = paid_intent(gateway)
    assert result.status == "succeeded"
    assert result.charge_id.startswith("ch_")
    assert direct.v1.charges.retrieve(result.charge_id).paid
    again = gateway.retrieve_payment_intent(result.intent_id)
    assert (again.status, again.charge_id, again.error_message) == (
        "succeeded", result.charge_id, None)


@pytest.mark.parametrize("method", [DECLINED, DECLINED_NUMBER])
def test_declined_card(gateway, direct, method):
    payment_method = method if method.startswith("pm_") else card(direct, method)
    intent = gateway.create_payment_intent(amount_minor=4990, currency="eur",
                                           idempotency_key="p", metadata=METADATA)
    with pytest.raises(CardDeclined) as declined:
        gateway.confirm_payment_intent(intent_id=intent.intent_id,
                                       payment_method=payment_method)
    assert declined.value.message == "Your card was declined."
    assert (declined.value.code, declined.value.retryable) == ("card_declined", False)
    after = gateway.retrieve_payment_intent(intent.intent_id)
    assert after.status == "requires_payment_method"
    assert after.error_message == "Your card was declined."


def test_retry_with_another_card_after_a_decline(gateway, direct):
    intent = gateway.create_payment_intent(amount_minor=4990, currency="eur",
                                           idempotency_key="p", metadata=METADATA)
    with pytest.raises(CardDeclined):
        gateway.confirm_payment_intent(intent_id=intent.intent_id, payment_method=DECLINED)
    failed_charge = direct.v1.payment_intents.retrieve(intent.intent_id).latest_charge

    result = gateway.confirm_payment_intent(intent_id=intent.intent_id, payment_method=VISA)
    assert (result.intent_id, result.status) == (intent.intent_id, "succeeded")
    assert result.charge_id.startswith("ch_") and result.charge_id != failed_charge.id
    assert direct.v1.charges.retrieve(failed_charge.id).status == "failed"


def test_retry_after_decline_needs_the_proxy_shim(localstripe):  # noqa: F811
    """Pins the localstripe gap the fake's shim covers: without it the second confirm is
    refused. When this starts passing confirm, drop the shim."""
    localstripe.reset()
    with FakeStripeConnect(upstream=localstripe.api_base,
                           emulate_retry_after_decline=False) as plain:
        gateway = StripeGateway.from_config(plain.app_config())
        intent = gateway.create_payment_intent(amount_minor=4990, currency="eur",
                                               idempotency_key="p", metadata={})
        with pytest.raises(CardDeclined):
            gateway.confirm_payment_intent(intent_id=intent.intent_id, payment_method=DECLINED)
        with pytest.raises(GatewayError) as refused:
            gateway.confirm_payment_intent(intent_id=intent.intent_id, payment_method=VISA)
        assert not refused.value.retryable and not isinstance(refused.value, CardDeclined)


def test_three_d_secure_requires_action(gateway, direct, localstripe):  # noqa: F811
    intent = gateway.create_payment_intent(amount_minor=4990, currency="eur",
                                           idempotency_key="p", metadata=METADATA)
    result = gateway.confirm_payment_intent(intent_id=intent.intent_id,
                                            payment_method=card(direct, REQUIRES_3DS),
                                            return_url="http://skileez.test/pay/return")
    assert (result.status, result.charge_id) == ("requires_action", None)
    assert result.client_secret == intent.client_secret  # what confirmCardPayment needs
    localstripe.authenticate_3ds(intent.intent_id, result.client_secret, success=True)
    done = gateway.retrieve_payment_intent(intent.intent_id)
    assert done.status == "succeeded" and done.charge_id.startswith("ch_")


def test_confirming_a_paid_intent_again_reports_it(gateway, direct):
    """A double-submitted pay form must not turn a paid intent into an error."""
    first = paid_intent(gateway)
    again = gateway.confirm_payment_intent(intent_id=first.intent_id, payment_method=VISA)
    assert (again.status, again.charge_id) == ("succeeded", first.charge_id)
    assert len(direct.v1.charges.list({"limit": 100}).data) == 1  # the store is per test


def test_unknown_intent_is_not_retryable(gateway):
    with pytest.raises(GatewayError) as error:
        gateway.retrieve_payment_intent("pi_doesnotexist")
    assert not error.value.retryable


# --- refunds and setup intents ----------------------------------------------------------------


def test_partial_then_full_refund(gateway, fake_connect, direct):  # noqa: F811
    paid = paid_intent(gateway)
    partial = gateway.refund(intent_id=paid.intent_id, amount_minor=1000,
                             idempotency_key="refund-1", metadata={"refund_id": "1"})
    assert partial.startswith("re_")
    (request,) = fake_connect.requests_to("POST", "/v1/refunds")
    assert request.header("Idempotency-Key") == "refund-1"
    assert request.params == {"payment_intent": paid.intent_id, "amount": "1000",
                              "metadata": {"refund_id": "1"}}
    refund = direct.v1.refunds.retrieve(partial)
    assert (refund.amount, refund.status, refund.metadata["refund_id"]) == (
        1000, "succeeded", "1")
    charge = direct.v1.charges.retrieve(paid.charge_id)
    assert (charge.amount_refunded, charge.refunded) == (1000, False)

    rest = gateway.refund(intent_id=paid.intent_id, amount_minor=3990,
                          idempotency_key="refund-2", metadata={"refund_id": "2"})
    assert rest != partial
    charge = direct.v1.charges.retrieve(paid.charge_id)
    assert (charge.amount_refunded, charge.refunded) == (4990, True)


def test_full_refund(gateway, direct):
    paid = paid_intent(gateway, amount=2500)
    refund_id = gateway.refund(intent_id=paid.intent_id, amount_minor=2500,
                               idempotency_key="refund-1", metadata={})
    assert direct.v1.refunds.retrieve(refund_id).amount == 2500
    assert direct.v1.charges.retrieve(paid.charge_id).refunded


def test_refunding_a_failed_payment_is_refused(gateway):
    intent = gateway.create_payment_intent(amount_minor=4990, currency="eur",
                                           idempotency_key="p", metadata={})
    with pytest.raises(CardDeclined):
        gateway.confirm_payment_intent(intent_id=intent.intent_id, payment_method=DECLINED)
    with pytest.raises(GatewayError) as error:
        gateway.refund(intent_id=intent.intent_id, amount_minor=4990, idempotency_key="r",
                       metadata={})
    assert not error.value.retryable
    assert "Cannot refund a failed payment" in error.value.message


def test_setup_intent_client_secret(gateway, fake_connect, direct):  # noqa: F811
    secret = gateway.create_setup_intent(idempotency_key="setup-1", metadata={"user_id": "3"})
    setup_id = secret.split("_secret_")[0]
    assert setup_id.startswith("seti_")
    setup = direct.v1.setup_intents.retrieve(setup_id)
    assert (setup.client_secret, setup.usage, setup.metadata["user_id"]) == (
        secret, "on_session", "3")
    (request,) = fake_connect.requests_to("POST", "/v1/setup_intents")
    assert request.header("Idempotency-Key") == "setup-1"
    assert request.params["payment_method_types"] == ["card"]


# --- webhooks ------------------------------------------------------------------------------------


def test_construct_event_accepts_a_signed_payload(gateway):
    payload = event_payload()
    event = gateway.construct_event(payload.encode(), sign(payload))
    assert type(event) is dict and type(event["data"]["object"]) is dict
    assert (event["id"], event["type"]) == ("evt_1", "payment_intent.succeeded")
    assert event["data"]["object"]["metadata"] == {"payment_id": "17"}


def test_construct_event_within_tolerance(gateway):
    payload = event_payload()
    old = int(time.time()) - 290
    assert gateway.construct_event(payload.encode(), sign(payload, timestamp=old))["id"]


@pytest.mark.parametrize("case", [
    "forged", "wrong-secret", "missing-header", "empty-header", "malformed-header",
    "too-old", "tampered", "garbage-json", "not-an-event", "not-utf8",
])
def test_construct_event_rejects(gateway, case):
    payload = event_payload()
    body, header = payload.encode(), sign(payload)
    if case == "forged":
        header = header.split("v1=")[0] + "v1=" + "0" * 64
    elif case == "wrong-secret":
        header = sign(payload, secret="whsec_other")
    elif case == "missing-header":
        header = None
    elif case == "empty-header":
        header = ""
    elif case == "malformed-header":
        header = "garbage"
    elif case == "too-old":
        header = sign(payload, timestamp=int(time.time()) - 301)
    elif case == "tampered":
        body = payload.replace("pi_123", "pi_999").encode()
    elif case == "garbage-json":
        body, header = b"{not json", sign("{not json")
    elif case == "not-an-event":
        body, header = b'{"id": "evt_1"}', sign('{"id": "evt_1"}')
    elif case == "not-utf8":
        body = b"\xff\xfe" + body
    with pytest.raises(InvalidWebhook):
        gateway.construct_event(body, header)


def test_construct_event_without_a_configured_secret(fake_connect):  # noqa: F811
    gateway = StripeGateway.from_config({**fake_connect.app_config(),
                                         "STRIPE_WEBHOOK_SECRET": None})
    payload = event_payload()
    with pytest.raises(InvalidWebhook):
        gateway.construct_event(payload.encode(), sign(payload))


def test_event_delivered_by_localstripe_verifies(gateway, localstripe):  # noqa: F811
    events = ["payment_intent.succeeded", "payment_intent.payment_failed"]
    with WebhookReceiver() as receiver:
        localstripe.register_webhook(receiver.url, WEBHOOK_SECRET, events)
        try:
            paid = paid_intent(gateway)
            body, headers = receiver.wait_for("payment_intent.succeeded", paid.intent_id)
        finally:
            localstripe.unregister_webhook()
    event = gateway.construct_event(body, headers["Stripe-Signature"])
    assert event["type"] == "payment_intent.succeeded"
    assert event["data"]["object"]["id"] == paid.intent_id
    assert event["data"]["object"]["metadata"] == METADATA
    with pytest.raises(InvalidWebhook):
        gateway.construct_event(body.replace(b"succeeded", b"canceled"),
                                headers["Stripe-Signature"])


# --- Connect: transfers ------------------------------------------------------------------------


@pytest.fixture
def coach_account(gateway, fake_connect) -> str:  # noqa: F811
    account_id = gateway.create_express_account(email="coach@example.com",
                                                idempotency_key="coach-1", metadata={})
    fake_connect.set_account_status(account_id, details_submitted=True, payouts_enabled=True)
    return account_id


def transfer(gateway: StripeGateway, destination: str, *, key: str = "payout-1",
             amount: int = 4000, source: str | None = None, group: str = "contract-4") -> str:
    return gateway.create_transfer(amount_minor=amount, currency="EUR", destination=destination,
                                   transfer_group=group, source_transaction=source,
                                   idempotency_key=key, metadata={"payout_id": "9"})


def test_transfer_sends_exactly_the_expected_request(gateway, fake_connect,  # noqa: F811
                                                     coach_account):
    paid = paid_intent(gateway)
    transfer_id = transfer(gateway, coach_account, source=paid.charge_id)

    (request,) = fake_connect.requests_to("POST", "/v1/transfers")
    assert not request.proxied and request.status == 200
    assert request.params == {
        "amount": "4000", "currency": "eur", "destination": coach_account,
        "transfer_group": "contract-4", "source_transaction": paid.charge_id,
        "metadata": {"payout_id": "9"},
    }
    assert request.header("Idempotency-Key") == "payout-1"
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"
    assert request.header("Content-Type").startswith("application/x-www-form-urlencoded")
    (created,) = fake_connect.transfers
    assert created["id"] == transfer_id and transfer_id.startswith("tr_")
    assert (created["object"], created["amount"], created["currency"], created["reversed"]) == (
        "transfer", 4000, "eur", False)
    assert created["source_transaction"] == paid.charge_id


def test_transfer_without_source_transaction_omits_it(gateway, fake_connect,  # noqa: F811
                                                      coach_account):
    transfer(gateway, coach_account)
    (request,) = fake_connect.requests_to("POST", "/v1/transfers")
    assert "source_transaction" not in request.params
    assert fake_connect.transfers[0]["source_transaction"] is None


def test_same_idempotency_key_makes_one_transfer(gateway, fake_connect,  # noqa: F811
                                                 coach_account):
    first = transfer(gateway, coach_account)
    second = transfer(gateway, coach_account)
    assert first == second and len(fake_connect.transfers) == 1
    assert [r.replayed for r in fake_connect.requests_to("POST", "/v1/transfers")] == [
        False, True]

    with pytest.raises(GatewayError) as reused:
        transfer(gateway, coach_account, amount=1)  # same key, other parameters
    assert (reused.value.retryable, reused.value.code) == (False, "idempotency_error")
    assert len(fake_connect.transfers) == 1


def test_server_error_is_retryable_and_retry_pays_once(gateway, fake_connect,  # noqa: F811
                                                       coach_account):
    fake_connect.fail_next_transfers(1)
    with pytest.raises(GatewayError) as failed:
        transfer(gateway, coach_account)
    assert failed.value.retryable and not fake_connect.transfers
    transfer(gateway, coach_account)
    transfer(gateway, coach_account)
    assert len(fake_connect.transfers) == 1
    assert [r.status for r in fake_connect.requests_to("POST", "/v1/transfers")] == [
        500, 200, 200]


def test_library_retries_reuse_the_idempotency_key(fake_connect, coach_account):  # noqa: F811
    """With library retries on (the production setting), a 500 is retried by stripe-python
    itself with the same Idempotency-Key, and the coach is paid once."""
    gateway = StripeGateway.from_config({**fake_connect.app_config(),
                                         "STRIPE_MAX_NETWORK_RETRIES": 1})
    fake_connect.fail_next_transfers(1)
    transfer_id = transfer(gateway, coach_account, key="payout-retry")
    attempts = fake_connect.requests_to("POST", "/v1/transfers")
    assert [r.status for r in attempts] == [500, 200]
    assert {r.header("Idempotency-Key") for r in attempts} == {"payout-retry"}
    assert [t["id"] for t in fake_connect.transfers] == [transfer_id]


@pytest.mark.parametrize(("destination", "source", "code"), [
    ("not_an_account", None, "resource_missing"),
    ("acct_x", "pi_123", "resource_missing"),
    ("acct_x", "ch_doesnotexist", "resource_missing"),
])
def test_bad_transfer_is_not_retryable(gateway, fake_connect, destination,  # noqa: F811
                                       source, code):
    with pytest.raises(GatewayError) as error:
        transfer(gateway, destination, source=source)
    assert (error.value.retryable, error.value.code) == (False, code)
    assert not fake_connect.transfers
    assert fake_connect.requests_to("POST", "/v1/transfers")[0].status == 400


def test_transfer_to_an_account_still_onboarding_is_refused(
        gateway, fake_connect):  # noqa: F811
    account_id = gateway.create_express_account(email="coach@example.com",
                                                idempotency_key="coach-1", metadata={})
    with pytest.raises(GatewayError) as error:
        transfer(gateway, account_id)
    assert error.value.code == "insufficient_capabilities_for_transfer"
    assert not error.value.retryable and not fake_connect.transfers


def test_transfer_larger_than_its_source_charge_is_refused(gateway, fake_connect,  # noqa: F811
                                                           coach_account):
    paid = paid_intent(gateway, amount=1000)
    with pytest.raises(GatewayError) as error:
        transfer(gateway, coach_account, amount=1001, source=paid.charge_id)
    assert not error.value.retryable and not fake_connect.transfers


# --- Connect: accounts and onboarding ------------------------------------------------------


def test_express_account_and_onboarding(gateway, fake_connect):  # noqa: F811
    account_id = gateway.create_express_account(email="coach@example.com",
                                                idempotency_key="coach-7",
                                                metadata={"coach_id": "7"})
    assert account_id.startswith("acct_")
    (request,) = fake_connect.requests_to("POST", "/v1/accounts")
    assert request.params == {"type": "express", "email": "coach@example.com",
                              "capabilities": {"transfers": {"requested": "true"}},
                              "metadata": {"coach_id": "7"}}
    assert request.header("Idempotency-Key") == "coach-7"
    assert gateway.create_express_account(email="coach@example.com", idempotency_key="coach-7",
                                          metadata={"coach_id": "7"}) == account_id
    assert list(fake_connect.accounts) == [account_id]

    status = gateway.account_status(account_id)
    assert (status.account_id, status.details_submitted, status.payouts_enabled) == (
        account_id, False, False)

    url = gateway.account_link(account_id=account_id,
                               refresh_url="http://skileez.test/coach/stripe/refresh",
                               return_url="http://skileez.test/coach/stripe/done")
    (request,) = fake_connect.requests_to("POST", "/v1/account_links")
    assert request.params == {"account": account_id, "type": "account_onboarding",
                              "refresh_url": "http://skileez.test/coach/stripe/refresh",
                              "return_url": "http://skileez.test/coach/stripe/done"}
    assert url.startswith(fake_connect.base_url)
    assert follow(url) == "http://skileez.test/coach/stripe/done"
    status = gateway.account_status(account_id)
    assert (status.details_submitted, status.payouts_enabled) == (True, True)
    assert follow(url) == "http://skileez.test/coach/stripe/refresh"  # links are single-use


def follow(url: str) -> str:
    """Where the hosted onboarding page redirects the browser."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(url, timeout=5)
    assert redirect.value.code == 303
    return redirect.value.headers["Location"]


@pytest.mark.parametrize(("details", "payouts"), [(True, False), (True, True), (False, False)])
def test_account_status_reflects_the_fake(gateway, fake_connect, details,  # noqa: F811
                                          payouts):
    account_id = gateway.create_express_account(email="coach@example.com",
                                                idempotency_key="coach-1", metadata={})
    fake_connect.set_account_status(account_id, details_submitted=details,
                                    payouts_enabled=payouts)
    status = gateway.account_status(account_id)
    assert (status.details_submitted, status.payouts_enabled) == (details, payouts)


def test_account_link_for_an_unknown_account(gateway):
    with pytest.raises(GatewayError) as error:
        gateway.account_link(account_id="acct_unknown", refresh_url="http://skileez.test/r",
                             return_url="http://skileez.test/d")
    assert not error.value.retryable


# --- errors ------------------------------------------------------------------------------


def test_messages_never_carry_the_key(fake_connect):  # noqa: F811
    key = "sk_test_rolledKey0000"
    fake_connect.revoked_keys.add(key)
    gateway = StripeGateway.from_config({**fake_connect.app_config(), "STRIPE_SECRET_KEY": key})
    with pytest.raises(GatewayError) as refused:
        gateway.account_status("acct_1")
    assert not refused.value.retryable
    assert "sk_" not in str(refused.value) and "0000" not in str(refused.value)

    good = StripeGateway.from_config(fake_connect.app_config())
    with pytest.raises(GatewayError) as denied:  # Stripe's 403 names the masked key
        good.account_status("acct_unknown")
    assert not denied.value.retryable and "sk_" not in denied.value.message


def test_unreachable_stripe_is_retryable():
    gateway = StripeGateway.from_config({
        "STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_MAX_NETWORK_RETRIES": 0,
        "STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(GatewayError) as error:
        gateway.create_payment_intent(amount_minor=100, currency="eur", idempotency_key="k",
                                      metadata={})
    assert (error.value.retryable, error.value.code) == (True, "api_connection_error")


@pytest.mark.parametrize(("exc", "retryable"), [
    (stripe.APIConnectionError("down"), True),
    (stripe.RateLimitError("slow down", http_status=429), True),
    (stripe.APIError("boom", http_status=500), True),
    (stripe.APIError("busy", http_status=409), True),
    (stripe.APIError("Not Found", http_status=404), False),
    (stripe.InvalidRequestError("bad", "amount", http_status=400), False),
    (stripe.AuthenticationError("Invalid API Key provided: sk_test_****abcd",
                                http_status=401), False),
    (stripe.PermissionError("nope", http_status=403), False),
    (stripe.IdempotencyError("reused", http_status=400), False),
])
def test_error_mapping(exc, retryable):
    mapped = map_stripe_error(exc, "do a thing")
    assert type(mapped) is GatewayError and mapped.retryable is retryable
    assert "sk_test" not in mapped.message


def test_card_error_maps_to_card_declined_with_decline_code():
    exc = stripe.CardError("Your card has insufficient funds.", None, "card_declined",
                           http_status=402, json_body={"error": {
                               "type": "card_error", "code": "card_declined",
                               "decline_code": "insufficient_funds",
                               "message": "Your card has insufficient funds."}})
    mapped = map_stripe_error(exc, "confirm the payment")
    assert isinstance(mapped, CardDeclined)
    assert (mapped.message, mapped.code, mapped.retryable) == (
        "Your card has insufficient funds.", "insufficient_funds", False)
