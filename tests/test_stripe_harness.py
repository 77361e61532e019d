"""The localstripe harness, and what localstripe really does with the real stripe library.

The payments feature (PaymentIntents, webhooks, refunds, Connect transfers) will be tested
against localstripe, so these tests pin both what works and the gaps tests must not lean
on (see tests/STRIPE_NOTES.md). A test asserting a gap fails the day localstripe fills it,
which is the cue to update the notes.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
import stripe

from tests.stripe_support import (  # noqa: F401 - fixtures
    WEBHOOK_SECRET,
    WebhookReceiver,
    localstripe,
    stripe_client,
)

pytestmark = pytest.mark.stripe

VISA = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"  # attaches fine, the charge is declined
DECLINED_ON_ATTACH = "4000000000000002"  # Stripe's "generic decline" card
REQUIRES_3DS = "4000002500003155"


def card(client: stripe.StripeClient, number: str) -> str:
    pm = client.v1.payment_methods.create({
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    })
    return pm.id


def payment_intent(client: stripe.StripeClient, payment_method: str | None = None,
                   **params) -> stripe.PaymentIntent:
    params = {"amount": 4990, "currency": "eur", "metadata": {"payment_id": "1"}, **params}
    if payment_method:
        params["payment_method"] = payment_method
    return client.v1.payment_intents.create(params)


def test_harness_serves_api_and_stripe_js(localstripe):  # noqa: F811
    assert localstripe.api_base.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(localstripe.js_url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/javascript")
        js = response.read().decode()
    assert "confirmCardPayment" in js and "confirmCardSetup" in js


def test_create_payment_intent_for_customer(stripe_client):  # noqa: F811
    customer = stripe_client.v1.customers.create({"email": "student@example.com"})
    intent = stripe_client.v1.payment_intents.create(
        {"amount": 4990, "currency": "eur", "customer": customer.id,
         "metadata": {"payment_id": "1"}},
        {"idempotency_key": "payment-1"},
    )
    again = stripe_client.v1.payment_intents.retrieve(intent.id)
    assert (again.amount, again.currency, again.customer) == (4990, "eur", customer.id)
    assert again.metadata["payment_id"] == "1"
    assert again.status == "requires_payment_method"
    assert again.client_secret.startswith(f"{intent.id}_secret_")


def test_idempotency_keys_are_ignored(stripe_client):  # noqa: F811
    """Real Stripe would return the first PaymentIntent; localstripe makes a second one.
    Our own duplicate-payment protection must therefore be proved in our code."""
    params = {"amount": 4990, "currency": "eur", "metadata": {"payment_id": "1"}}
    first = stripe_client.v1.payment_intents.create(params, {"idempotency_key": "payment-1"})
    second = stripe_client.v1.payment_intents.create(params, {"idempotency_key": "payment-1"})
    assert first.id != second.id


@pytest.mark.parametrize("method", ["pm_card_visa", VISA, DECLINED_ON_ATTACH])
def test_confirm_succeeds(stripe_client, method):  # noqa: F811
    """Note the last case: 4000000000000002 only fails when attached to a customer."""
    pm = method if method.startswith("pm_") else card(stripe_client, method)
    intent = payment_intent(stripe_client, pm)
    assert intent.status == "requires_confirmation"
    intent = stripe_client.v1.payment_intents.confirm(intent.id)
    assert intent.status == "succeeded"
    charge = intent.latest_charge  # localstripe embeds the Charge; Stripe sends its id
    assert charge.paid and charge.amount == 4990 and charge.payment_intent == intent.id
    assert stripe_client.v1.charges.retrieve(charge.id).status == "succeeded"


def test_create_with_confirm_true(stripe_client):  # noqa: F811
    intent = payment_intent(stripe_client, "pm_card_visa", confirm=True)
    assert intent.status == "succeeded"


@pytest.mark.parametrize("method", [DECLINED_ON_CHARGE, "pm_card_chargeCustomerFail"])
def test_declined_charge(stripe_client, method):  # noqa: F811
    pm = method if method.startswith("pm_") else card(stripe_client, method)
    intent = payment_intent(stripe_client, pm)
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.payment_intents.confirm(intent.id)
    assert declined.value.code == "card_declined"
    intent = stripe_client.v1.payment_intents.retrieve(intent.id)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error["code"] == "card_declined"


def test_generic_decline_card_is_declined_on_attach(stripe_client):  # noqa: F811
    customer = stripe_client.v1.customers.create({})
    pm = card(stripe_client, DECLINED_ON_ATTACH)
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.payment_methods.attach(pm, {"customer": customer.id})
    assert declined.value.code == "card_declined"


@pytest.mark.parametrize("success", [True, False])
def test_3d_secure(stripe_client, localstripe, success):  # noqa: F811
    intent = payment_intent(stripe_client, card(stripe_client, REQUIRES_3DS), confirm=True)
    assert intent.status == "requires_action"
    assert intent.next_action["type"] == "use_stripe_sdk"
    localstripe.authenticate_3ds(intent.id, intent.client_secret, success=success)
    intent = stripe_client.v1.payment_intents.retrieve(intent.id)
    if success:
        assert intent.status == "succeeded"
    else:
        assert intent.status == "requires_payment_method"
        assert intent.last_payment_error["code"] == "payment_intent_authentication_failure"


def test_manual_capture_of_part(stripe_client):  # noqa: F811
    intent = payment_intent(stripe_client, "pm_card_visa", confirm=True,
                            capture_method="manual")
    assert intent.status == "requires_capture"
    intent = stripe_client.v1.payment_intents.capture(intent.id, {"amount_to_capture": 3000})
    assert intent.status == "succeeded"
    assert intent.latest_charge.amount_refunded == 1990  # the uncaptured rest


@pytest.mark.parametrize(("params", "message"), [
    ({"transfer_group": "contract-1"}, "Unexpected transfer_group"),
    ({"automatic_payment_methods": {"enabled": True}}, "Unexpected automatic_payment_methods"),
    ({"description": "Session"}, "Unexpected description"),
])
def test_unsupported_payment_intent_parameters(stripe_client, params, message):  # noqa: F811
    with pytest.raises(stripe.InvalidRequestError, match=message):
        payment_intent(stripe_client, **params)


def test_confirm_cannot_take_a_payment_method(stripe_client):  # noqa: F811
    """Set the payment method at creation, or update the PaymentIntent, then confirm."""
    intent = payment_intent(stripe_client)
    with pytest.raises(stripe.APIError) as error:
        stripe_client.v1.payment_intents.confirm(intent.id, {"payment_method": "pm_card_visa"})
    assert error.value.http_status == 500 and "Not implemented" in str(error.value)
    stripe_client.v1.payment_intents.update(intent.id, {"payment_method": "pm_card_visa"})
    assert stripe_client.v1.payment_intents.confirm(intent.id).status == "succeeded"


def test_refunds_partial_then_rest_and_full(stripe_client):  # noqa: F811
    intent = payment_intent(stripe_client, "pm_card_visa", confirm=True)
    partial = stripe_client.v1.refunds.create({"payment_intent": intent.id, "amount": 1000})
    assert (partial.status, partial.amount, partial.currency) == ("succeeded", 1000, "eur")
    assert partial.charge == intent.latest_charge.id and partial.payment_intent == intent.id
    charge = stripe_client.v1.charges.retrieve(intent.latest_charge.id)
    assert (charge.amount_refunded, charge.refunded) == (1000, False)

    rest = stripe_client.v1.refunds.create({"charge": charge.id, "amount": 3990})
    assert rest.payment_intent is None  # only set when refunding by payment_intent
    charge = stripe_client.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (4990, True)
    assert stripe_client.v1.refunds.retrieve(partial.id).amount == 1000
    listed = stripe_client.v1.refunds.list({"payment_intent": intent.id})
    assert sorted(r.amount for r in listed.data) == [1000, 3990]

    other = payment_intent(stripe_client, "pm_card_visa", confirm=True)
    full = stripe_client.v1.refunds.create({"payment_intent": other.id})
    assert full.amount == 4990
    assert stripe_client.v1.charges.retrieve(other.latest_charge.id).refunded


def test_refund_amounts_are_not_validated(stripe_client):  # noqa: F811
    """Stripe refuses to refund more than was paid; localstripe does not, and a refund
    without an amount is always the whole charge, even after a partial refund."""
    intent = payment_intent(stripe_client, "pm_card_visa", confirm=True)
    stripe_client.v1.refunds.create({"payment_intent": intent.id, "amount": 1000})
    whole = stripe_client.v1.refunds.create({"payment_intent": intent.id})
    assert whole.amount == 4990
    too_much = stripe_client.v1.refunds.create({"payment_intent": intent.id, "amount": 99999})
    assert too_much.amount == 99999


def test_refunding_a_failed_payment_is_refused(stripe_client):  # noqa: F811
    intent = payment_intent(stripe_client, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        stripe_client.v1.payment_intents.confirm(intent.id)
    with pytest.raises(stripe.InvalidRequestError, match="Cannot refund a failed payment"):
        stripe_client.v1.refunds.create({"payment_intent": intent.id})


@pytest.mark.parametrize("call", [
    lambda c: c.v1.accounts.create({"type": "express", "country": "DE"}),
    lambda c: c.v1.account_links.create({
        "account": "acct_1", "type": "account_onboarding",
        "refresh_url": "http://skileez.test/r", "return_url": "http://skileez.test/d"}),
    lambda c: c.v1.transfers.create({
        "amount": 4000, "currency": "eur", "destination": "acct_1",
        "transfer_group": "contract-1", "source_transaction": "ch_1"}),
    lambda c: c.v1.disputes.list(),
], ids=["express-account", "account-link", "transfer", "disputes"])
def test_connect_and_disputes_are_not_implemented(stripe_client, call):  # noqa: F811
    """No route exists, so aiohttp answers a plain-text 404 that stripe-python reports as
    APIError (not InvalidRequestError). Connect code needs another test double."""
    with pytest.raises(stripe.APIError) as error:
        call(stripe_client)
    assert error.value.http_status == 404
    assert not isinstance(error.value, stripe.InvalidRequestError)


def test_event_types_emitted(stripe_client):  # noqa: F811
    """PaymentIntent outcomes produce events; charges and refunds produce none."""
    stripe_client.v1.customers.create({})
    paid = payment_intent(stripe_client, "pm_card_visa", confirm=True)
    with pytest.raises(stripe.CardError):
        payment_intent(stripe_client, "pm_card_chargeCustomerFail", confirm=True)
    stripe_client.v1.refunds.create({"payment_intent": paid.id, "amount": 100})
    events = stripe_client.v1.events.list({"limit": 100}).data
    assert {e.type for e in events} == {
        "customer.created", "payment_intent.succeeded", "payment_intent.payment_failed"}


def test_webhooks_are_signed_for_the_real_library(stripe_client, localstripe):  # noqa: F811
    events = ["payment_intent.succeeded", "payment_intent.payment_failed"]
    with WebhookReceiver() as receiver:
        localstripe.register_webhook(receiver.url, WEBHOOK_SECRET, events)
        try:
            stripe_client.v1.customers.create({})  # filtered out: not in ``events``
            paid = payment_intent(stripe_client, "pm_card_visa", confirm=True)
            failed = payment_intent(stripe_client, "pm_card_chargeCustomerFail")
            with pytest.raises(stripe.CardError):
                stripe_client.v1.payment_intents.confirm(failed.id)

            body, headers = receiver.wait_for("payment_intent.succeeded", paid.id)
            event = stripe.Webhook.construct_event(
                body, headers["Stripe-Signature"], WEBHOOK_SECRET)
            assert event.type == "payment_intent.succeeded"
            assert event.data.object.id == paid.id
            assert event.data.object.metadata["payment_id"] == "1"
            assert headers["Stripe-Signature"].startswith("t=")
            assert stripe_client.construct_event(
                body, headers["Stripe-Signature"], WEBHOOK_SECRET).id == event.id

            body, headers = receiver.wait_for("payment_intent.payment_failed", failed.id)
            event = stripe.Webhook.construct_event(
                body, headers["Stripe-Signature"], WEBHOOK_SECRET)
            assert event.data.object.id == failed.id
            assert event.data.object.last_payment_error["code"] == "card_declined"

            with pytest.raises(stripe.SignatureVerificationError):
                stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_x")
            tampered = json.dumps({**json.loads(body), "type": "charge.refunded"})
            with pytest.raises(stripe.SignatureVerificationError):
                stripe.Webhook.construct_event(
                    tampered, headers["Stripe-Signature"], WEBHOOK_SECRET)
            assert "customer.created" not in receiver.received_types()
        finally:
            localstripe.unregister_webhook()
