"""The payment gateway port and its test adapter.

Everything that talks to a payment provider goes through ``Gateway``. Two
adapters exist: ``StripeGateway`` (``stripe_gateway.py``, the official
library) when STRIPE_SECRET_KEY is set, and ``TestGateway`` otherwise, so
``make run`` works offline. The test adapter never pretends a payment
happened: its card page produces the same events a Stripe webhook would, and
they go through the same handler.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from flask import current_app

#: GatewayError.code when the same idempotency key is still in flight: retry later.
IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"


class GatewayError(Exception):
    """The provider refused or failed. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code


class CardDeclined(GatewayError):
    """The card was declined; the message is safe to show to the student."""


class InvalidWebhook(Exception):
    """Signature, timestamp or payload did not check out: answer 400, trust nothing."""


@dataclass(frozen=True)
class IntentResult:
    intent_id: str
    client_secret: str | None
    # Stripe's PaymentIntent statuses: requires_payment_method, requires_confirmation,
    # requires_action, processing, succeeded, canceled.
    status: str
    charge_id: str | None = None
    error_message: str | None = None
    amount_received: int | None = None


@dataclass(frozen=True)
class CardDetails:
    """A card saved at the provider, as the student recognises it."""

    payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


#: CardDeclined.code when the bank wants the cardholder present (SCA) for the charge.
AUTHENTICATION_REQUIRED = "authentication_required"


@dataclass(frozen=True)
class AccountStatus:
    account_id: str
    details_submitted: bool
    payouts_enabled: bool


# What Stripe's list endpoints report, reduced to what reconciliation compares.
@dataclass(frozen=True)
class ListedCharge:
    id: str
    payment_intent_id: str | None
    amount: int
    currency: str
    # succeeded, pending or failed
    status: str
    created: datetime


@dataclass(frozen=True)
class ListedRefund:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    currency: str
    # pending, requires_action, succeeded, failed or canceled
    status: str
    created: datetime


@dataclass(frozen=True)
class ListedTransfer:
    id: str
    amount: int
    currency: str
    destination: str | None
    amount_reversed: int
    created: datetime


class Gateway(Protocol):
    name: str

    def create_payment_intent(self, *, amount_minor: int, currency: str, idempotency_key: str,
                              metadata: dict[str, str]) -> IntentResult: ...

    def create_setup_intent(self, *, idempotency_key: str, metadata: dict[str, str],
                            customer: str | None = None, keep: bool = False) -> str:
        """Client secret of a SetupIntent that Stripe.js uses to collect a card; with
        ``keep`` the card is set up to be saved (for ``customer``, if they have one yet)
        and charged later off-session."""

    def create_customer(self, *, email: str, idempotency_key: str,
                        metadata: dict[str, str]) -> str:
        """Customer id: the provider's holder of a student's saved card."""

    def saved_card_from_setup(self, *, setup_intent_id: str, customer: str,
                              student_id: int) -> CardDetails:
        """The card a confirmed SetupIntent of this student collected, attached to
        ``customer``. Raises GatewayError if the SetupIntent is not theirs (made for
        another customer, or without one for another student) or not confirmed."""

    def detach_payment_method(self, payment_method_id: str) -> None:
        """Forget a saved card at the provider."""

    def charge_saved_card(self, *, amount_minor: int, currency: str, customer: str,
                          payment_method: str, off_session: bool, idempotency_key: str,
                          metadata: dict[str, str]) -> IntentResult:
        """Create and confirm a PaymentIntent with a saved card. ``requires_action`` when
        the bank asks for the student (on-session: finished by Stripe.js); a refusal is
        ``CardDeclined`` (code ``authentication_required`` when off-session needs SCA)."""

    def confirm_payment_intent(self, *, intent_id: str, payment_method: str,
                               return_url: str | None = None) -> IntentResult:
        """Attach the card and confirm. Raises CardDeclined when the card is refused."""

    def retrieve_payment_intent(self, intent_id: str) -> IntentResult: ...

    def refund(self, *, intent_id: str, amount_minor: int, idempotency_key: str,
               metadata: dict[str, str]) -> str:
        """Refund id."""

    def list_refunds(self, charge_id: str) -> list[dict[str, Any]]:
        """Every refund of a charge, as Stripe shows them (id, amount, currency, status,
        metadata): newer API versions leave them out of ``charge.refunded`` events."""

    def create_transfer(self, *, amount_minor: int, currency: str, destination: str,
                        transfer_group: str, source_transaction: str | None,
                        idempotency_key: str, metadata: dict[str, str]) -> str:
        """Transfer id."""

    # Reconciliation: everything created at the provider since a moment, every page of it.
    def list_charges(self, created_since: datetime) -> list[ListedCharge]: ...

    def list_refunds_since(self, created_since: datetime) -> list[ListedRefund]: ...

    def list_transfers(self, created_since: datetime) -> list[ListedTransfer]:
        """Transfers with ``amount_reversed``: a reversal shows on its transfer."""

    def retrieve_transfer(self, transfer_id: str) -> ListedTransfer | None:
        """None when the provider has no such transfer."""

    def retrieve_refund(self, refund_id: str) -> ListedRefund | None:
        """None when the provider has no such refund."""

    def create_express_account(self, *, email: str, idempotency_key: str,
                               metadata: dict[str, str]) -> str:
        """Connected account id."""

    def account_link(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        """URL of Stripe's hosted onboarding for the account."""

    def account_status(self, account_id: str) -> AccountStatus: ...

    def construct_event(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify and parse a webhook. Raises InvalidWebhook."""

    # --- chargebacks and payout reversals (issue 11) ---------------------------------------

    def reverse_transfer(self, *, transfer_id: str, amount_minor: int, idempotency_key: str,
                         metadata: dict[str, str]) -> str:
        """Take (part of) a transfer back from the connected account; the reversal's id."""

    def submit_dispute_evidence(self, *, dispute_id: str, evidence: dict[str, str],
                                idempotency_key: str) -> str:
        """Send evidence to the bank for a card dispute and submit it; Stripe's new status."""


#: The test gateway's saveable cards and the last four digits each shows.
TEST_CARDS = {"ok": "4242", "action": "3155", "decline": "0341"}


@dataclass
class TestGateway:
    """Offline adapter: ids are made up, money never moves, events come from the card page.

    Connect is simulated too: ``create_express_account`` returns an account whose
    onboarding is the app's own test page, and transfers succeed immediately.
    """

    name: str = "test"
    onboarded: set[str] = field(default_factory=set)

    def create_payment_intent(self, *, amount_minor, currency, idempotency_key, metadata):
        intent_id = f"pi_test_{idempotency_key}"
        return IntentResult(intent_id, f"{intent_id}_secret", "requires_payment_method")

    def create_setup_intent(self, *, idempotency_key, metadata, customer=None, keep=False):
        return f"seti_test_{idempotency_key}_secret"

    def create_customer(self, *, email, idempotency_key, metadata):
        return f"cus_test_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex[:16]}"

    def saved_card_from_setup(self, *, setup_intent_id, customer, student_id):
        """The test card page names its SetupIntents ``seti_test_<card>_<token>``, where
        <card> is one of ``TEST_CARDS``: the card behaves at charge time as named."""
        parts = setup_intent_id.split("_")
        if len(parts) != 4 or parts[:2] != ["seti", "test"] or parts[2] not in TEST_CARDS:
            raise GatewayError("The card could not be saved (unknown test card).")
        last4 = TEST_CARDS[parts[2]]
        return CardDetails(f"pm_test_{parts[2]}_{parts[3]}", "visa", last4, 12, 2034)

    def detach_payment_method(self, payment_method_id):
        return None

    def charge_saved_card(self, *, amount_minor, currency, customer, payment_method,
                          off_session, idempotency_key, metadata):
        """``pm_test_ok_…`` succeeds; ``pm_test_action_…`` needs the student off-session
        (on-session the test page stands in for the bank and it succeeds);
        ``pm_test_decline_…`` is declined."""
        intent_id = f"pi_test_{idempotency_key}"
        kind = payment_method.split("_")[2] if payment_method.count("_") >= 3 else ""
        if kind == "decline":
            raise CardDeclined("Your card was declined (test card).", code="card_declined")
        if kind == "action" and off_session:
            return IntentResult(intent_id, f"{intent_id}_secret", "requires_action")
        if kind not in TEST_CARDS:
            raise GatewayError("Unknown test card.")
        return IntentResult(intent_id, f"{intent_id}_secret", "succeeded",
                            charge_id=f"ch_test_{idempotency_key}",
                            amount_received=amount_minor)

    def confirm_payment_intent(self, *, intent_id, payment_method, return_url=None):
        raise GatewayError("The test gateway is paid through its card page.")

    def retrieve_payment_intent(self, intent_id):
        return IntentResult(intent_id, f"{intent_id}_secret", "requires_payment_method")

    def refund(self, *, intent_id, amount_minor, idempotency_key, metadata):
        return f"re_test_{idempotency_key}"

    def list_refunds(self, charge_id):
        return []  # nothing is charged, so nothing can be refunded elsewhere

    def create_transfer(self, *, amount_minor, currency, destination, transfer_group,
                        source_transaction, idempotency_key, metadata):
        return f"tr_test_{idempotency_key}"

    # Money never moves through the test gateway, so there is never anything to list.
    def list_charges(self, created_since):
        return []

    def list_refunds_since(self, created_since):
        return []

    def list_transfers(self, created_since):
        return []

    def retrieve_transfer(self, transfer_id):
        return None

    def retrieve_refund(self, refund_id):
        return None

    def create_express_account(self, *, email, idempotency_key, metadata):
        return f"acct_test_{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex[:16]}"

    def account_link(self, *, account_id, refresh_url, return_url):
        return return_url

    def account_status(self, account_id):
        return AccountStatus(account_id, details_submitted=True, payouts_enabled=True)

    def construct_event(self, payload, signature):
        raise InvalidWebhook("The test gateway does not receive webhooks.")

    # --- chargebacks and payout reversals (issue 11) ---------------------------------------

    def reverse_transfer(self, *, transfer_id, amount_minor, idempotency_key, metadata):
        return f"trr_test_{idempotency_key}"

    def submit_dispute_evidence(self, *, dispute_id, evidence, idempotency_key):
        return "under_review"


def get_gateway() -> Gateway:
    """The app's gateway: Stripe when a secret key is configured, the test one otherwise."""
    gateway = current_app.extensions.get("skileez_gateway")
    if gateway is None:
        if current_app.config["STRIPE_SECRET_KEY"]:
            # Imported here: the Stripe adapter imports this module's port and errors,
            # and an app without a key never loads the stripe library.
            from skileez.payments.stripe_gateway import StripeGateway

            gateway = StripeGateway.from_config(current_app.config)
        else:
            gateway = TestGateway()
        current_app.extensions["skileez_gateway"] = gateway
    return gateway
