"""The Stripe adapter of the payment gateway port, built on the official ``stripe`` library.

Every call goes through one ``stripe.StripeClient`` owned by the gateway, never the
module-level ``stripe.api_key``: global state would leak between app instances (and tests),
and the client is where ``STRIPE_API_BASE`` points the library at localstripe in tests.

Errors leave this module only as the port's own exceptions, so callers never import
``stripe``: a refused card is ``CardDeclined`` (its message is Stripe's customer-facing
text), anything else is ``GatewayError`` whose ``retryable`` says whether the same call may
succeed later (network trouble, rate limits, Stripe 5xx) or never will (bad parameters,
bad key). Messages are scrubbed of anything shaped like a key before they are raised or
logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import stripe

from skileez.payments.gateway import (
    AUTHENTICATION_REQUIRED,
    IDEMPOTENCY_KEY_IN_USE,
    AccountStatus,
    CardDeclined,
    CardDetails,
    GatewayError,
    IntentResult,
    InvalidWebhook,
    ListedCharge,
    ListedRefund,
    ListedTransfer,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Stripe's own default; older signatures are replays until proven otherwise.
WEBHOOK_TOLERANCE_SECONDS = 300
DEFAULT_MAX_NETWORK_RETRIES = 2
DEFAULT_TIMEOUT_SECONDS = 30.0
#: Objects per page of a list call (Stripe allows 1 to 100).
DEFAULT_LIST_PAGE_SIZE = 100

# A PaymentIntent in one of these states needs no (further) confirmation: a second
# confirm, e.g. a double-submitted form, reports the state instead of failing.
_SETTLED_STATUSES = frozenset({"succeeded", "processing", "requires_capture"})
# Decline codes where the same card may work a moment later.
_TRANSIENT_DECLINES = frozenset({"processing_error", "try_again_later"})
_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk|whsec)_[A-Za-z0-9_*]+")


def _redact(text: str | None) -> str:
    """Stripe echoes (masked) keys in some messages; never pass even a fragment on."""
    return _KEY_PATTERN.sub("[redacted]", text or "").strip()


def _field(obj: Any, name: str) -> Any:
    """A StripeObject attribute, or None when Stripe left it out."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _object_id(value: Any) -> str | None:
    """An id from a field Stripe sends as an id or, when expanded, as an object
    (localstripe always expands ``latest_charge``)."""
    if value is None or isinstance(value, str):
        return value
    return _field(value, "id")


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject (or nothing) as a plain dict."""
    if obj is None:
        return {}
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Stripe stores metadata values as strings; send them as such."""
    return {str(key): str(value) for key, value in (metadata or {}).items()}


def _intent_result(intent: Any) -> IntentResult:
    status = _field(intent, "status")
    error_message = None
    if status == "requires_payment_method":
        error_message = _redact(_field(_field(intent, "last_payment_error"), "message")) or None
    return IntentResult(
        intent_id=_field(intent, "id"),
        client_secret=_field(intent, "client_secret"),
        status=status,
        charge_id=_object_id(_field(intent, "latest_charge")),
        error_message=error_message,
        # localstripe leaves amount_received out; for a succeeded intent it equals amount.
        amount_received=_field(intent, "amount_received")
        if _field(intent, "amount_received") is not None
        else (_field(intent, "amount") if status == "succeeded" else None),
    )


def _when(stamp: Any) -> datetime:
    return datetime.fromtimestamp(int(stamp or 0), tz=UTC)


def _since_filter(created_since: datetime) -> dict[str, int]:
    """``created >= created_since`` as ``created[gt]`` one second earlier: Stripe counts
    whole seconds, so it is the same filter, and it is the one form localstripe's charge
    list understands too."""
    return {"gt": int(created_since.timestamp()) - 1}


def _listed_charge(item: Any) -> ListedCharge:
    return ListedCharge(id=_field(item, "id"),
                        payment_intent_id=_object_id(_field(item, "payment_intent")),
                        amount=int(_field(item, "amount") or 0),
                        currency=str(_field(item, "currency") or "").upper(),
                        status=_field(item, "status"), created=_when(_field(item, "created")))


def _listed_refund(item: Any) -> ListedRefund:
    return ListedRefund(id=_field(item, "id"), charge_id=_object_id(_field(item, "charge")),
                        payment_intent_id=_object_id(_field(item, "payment_intent")),
                        amount=int(_field(item, "amount") or 0),
                        currency=str(_field(item, "currency") or "").upper(),
                        status=_field(item, "status"), created=_when(_field(item, "created")))


def _listed_transfer(item: Any) -> ListedTransfer:
    return ListedTransfer(id=_field(item, "id"), amount=int(_field(item, "amount") or 0),
                          currency=str(_field(item, "currency") or "").upper(),
                          destination=_object_id(_field(item, "destination")),
                          amount_reversed=int(_field(item, "amount_reversed") or 0),
                          created=_when(_field(item, "created")))


def map_stripe_error(exc: stripe.StripeError, action: str) -> GatewayError:
    """Translate a library error into the port's vocabulary.

    Retryable: could not reach Stripe, rate limited, Stripe's own 5xx, or a 409 conflict
    (a request with the same idempotency key still in flight). Not retryable: anything the
    same request will keep getting (4xx: bad parameters, unknown objects, refused key).
    """
    status = exc.http_status
    detail = _redact(exc.user_message) or type(exc).__name__
    if isinstance(exc, stripe.CardError):
        error = exc.error
        code = _field(error, "decline_code") or exc.code or "card_declined"
        message = _redact(exc.user_message) or "Your card was declined."
        return CardDeclined(message, retryable=code in _TRANSIENT_DECLINES, code=code)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayError(f"Stripe refused to {action}: {detail}", retryable=False,
                            code=exc.code or ("authentication_failed" if status == 401
                                              else "permission_denied"))
    if isinstance(exc, stripe.APIConnectionError):
        return GatewayError(f"Could not reach Stripe to {action}: {detail}", retryable=True,
                            code="api_connection_error")
    if isinstance(exc, stripe.RateLimitError):
        return GatewayError(f"Stripe rate-limited the request to {action}.", retryable=True,
                            code=exc.code or "rate_limit")
    if status == 409 or (exc.code or _field(exc.error, "code")) == IDEMPOTENCY_KEY_IN_USE:
        # Stripe's 409 (the library raises a plain APIError for it): our own earlier
        # request with this key is still executing, and its result will be replayed to
        # a later retry. Never a failure of the operation itself.
        return GatewayError(f"Stripe is still working on the request to {action}.",
                            retryable=True, code=IDEMPOTENCY_KEY_IN_USE)
    if isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError):
        return GatewayError(f"Stripe rejected the request to {action}: {detail}",
                            retryable=False, code=exc.code or _field(exc.error, "type"))
    # APIError and anything newer: judge by the HTTP status.
    retryable = status is None or status >= 500 or status == 409
    return GatewayError(f"Stripe failed to {action} (HTTP {status}): {detail}",
                        retryable=retryable, code=exc.code or "api_error")


class StripeGateway:
    """``Gateway`` on Stripe: PaymentIntents for students, Connect for paying coaches."""

    name = "stripe"

    def __init__(self, client: stripe.StripeClient, *, webhook_secret: str | None,
                 webhook_tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
                 list_page_size: int = DEFAULT_LIST_PAGE_SIZE) -> None:
        self._client = client
        self._webhook_secret = webhook_secret
        self._webhook_tolerance = webhook_tolerance
        self._list_page_size = max(1, min(int(list_page_size), 100))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StripeGateway:
        """Build from the app's settings.

        ``STRIPE_API_BASE`` (optional) replaces api.stripe.com for the API, Connect and
        files hosts alike, which is how tests aim the real library at localstripe.
        ``STRIPE_MAX_NETWORK_RETRIES`` (default 2) lets the library retry connection
        errors, 409s and 5xx itself, re-sending the same Idempotency-Key so Stripe
        executes the call at most once; ``STRIPE_TIMEOUT_SECONDS`` bounds each attempt.
        """
        secret_key = config.get("STRIPE_SECRET_KEY")
        if not secret_key:
            raise GatewayError("STRIPE_SECRET_KEY is not set.", code="not_configured")
        base = (config.get("STRIPE_API_BASE") or "").rstrip("/")
        bases = {"api": base, "connect": base, "files": base} if base else None
        retries = config.get("STRIPE_MAX_NETWORK_RETRIES")
        timeout = config.get("STRIPE_TIMEOUT_SECONDS")
        client = stripe.StripeClient(
            secret_key,
            base_addresses=bases,  # type: ignore[arg-type]
            max_network_retries=DEFAULT_MAX_NETWORK_RETRIES if retries is None else int(retries),
            http_client=stripe.new_default_http_client(
                timeout=DEFAULT_TIMEOUT_SECONDS if timeout is None else float(timeout)),
        )
        page_size = config.get("STRIPE_LIST_PAGE_SIZE")
        return cls(client, webhook_secret=config.get("STRIPE_WEBHOOK_SECRET") or None,
                   list_page_size=DEFAULT_LIST_PAGE_SIZE if page_size is None else page_size)

    # --- helpers ------------------------------------------------------------------------

    def _call(self, action: str, call: Callable[[], T]) -> T:
        """Run one library call, turning its errors into the port's."""
        try:
            return call()
        except stripe.StripeError as exc:
            raise self._mapped(exc, action) from None

    @staticmethod
    def _mapped(exc: stripe.StripeError, action: str) -> GatewayError:
        error = map_stripe_error(exc, action)
        # ``from None`` above keeps the library's exception (and its request headers)
        # out of tracebacks; the request id is what Stripe support needs.
        logger.warning("Stripe call failed (%s, request %s, retryable=%s): %s",
                       action, exc.request_id, error.retryable, error.message)
        return error

    # --- students' payments ---------------------------------------------------------------

    def create_payment_intent(self, *, amount_minor: int, currency: str, idempotency_key: str,
                              metadata: dict[str, str]) -> IntentResult:
        """Card only: the page confirms with Stripe.js card elements, and localstripe
        rejects ``automatic_payment_methods``."""
        params = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "metadata": _metadata(metadata),
            "payment_method_types": ["card"],
        }
        intent = self._call("create a payment", lambda: self._client.v1.payment_intents.create(
            params, {"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return _intent_result(intent)

    def create_setup_intent(self, *, idempotency_key: str, metadata: dict[str, str],
                            customer: str | None = None, keep: bool = False) -> str:
        """A SetupIntent lets Stripe.js turn the card form into a ``pm_…`` the server then
        confirms the PaymentIntent with (the flow that works on localstripe and Stripe).
        With ``keep`` the card is being saved (for ``customer`` when there is one): set up
        for later off-session charges."""
        params: dict[str, Any] = {"payment_method_types": ["card"], "usage": "on_session",
                                  "metadata": _metadata(metadata)}
        if keep:
            params["usage"] = "off_session"
        if customer:
            params["customer"] = customer
        setup = self._call("prepare the card form", lambda: self._client.v1.setup_intents.create(
            params, {"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return setup.client_secret

    def confirm_payment_intent(self, *, intent_id: str, payment_method: str,
                               return_url: str | None = None) -> IntentResult:
        """Attach the card, then confirm: two calls, because localstripe answers 500 to
        ``confirm(payment_method=…)``; Stripe accepts both forms.

        ``return_url`` is deliberately not sent. Payment methods are card only, and 3D
        Secure is finished in the page by Stripe.js ``confirmCardPayment`` (next action
        ``use_stripe_sdk``), which needs no redirect; with a return_url Stripe would switch
        to a ``redirect_to_url`` next action, and localstripe rejects the parameter
        ("Unexpected return_url").

        Outcomes: ``succeeded`` (with the charge id); ``requires_action`` when the card
        needs 3D Secure (the page then calls confirmCardPayment with ``client_secret``);
        ``CardDeclined`` with Stripe's customer-facing message and the decline code when the
        card is refused, after which the intent is ``requires_payment_method`` and may be
        confirmed again with another card. Confirming an intent that already succeeded (or
        is processing) reports that state instead of failing.
        """
        action = "confirm the payment"
        intents = self._client.v1.payment_intents
        try:
            intents.update(intent_id, {"payment_method": payment_method})
            intent = intents.confirm(intent_id)
        except stripe.CardError as exc:
            raise self._mapped(exc, action) from None
        except stripe.InvalidRequestError as exc:
            current = self._retrieve_quietly(intent_id)
            if current is not None and current.status in _SETTLED_STATUSES:
                return current
            raise self._mapped(exc, action) from None
        except stripe.StripeError as exc:
            raise self._mapped(exc, action) from None
        return _intent_result(intent)

    def create_customer(self, *, email: str, idempotency_key: str,
                        metadata: dict[str, str]) -> str:
        customer = self._call("set up your card", lambda: self._client.v1.customers.create(
            {"email": email, "metadata": _metadata(metadata)},
            {"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return customer.id

    def saved_card_from_setup(self, *, setup_intent_id: str, customer: str,
                              student_id: int) -> CardDetails:
        """Check the SetupIntent is the student's and succeeded, then make sure its card
        is attached to their customer. The first card is set up before the student has a
        customer (the card page writes nothing), so a SetupIntent without one is theirs
        when its metadata names them; Stripe attaches on confirm when it has a customer,
        localstripe never does, and an attach of a card the customer holds already is
        never sent."""
        action = "save your card"
        setup = self._call(action, lambda: self._client.v1.setup_intents.retrieve(
            setup_intent_id))
        owner = _object_id(_field(setup, "customer"))
        named = str(_plain(_field(setup, "metadata")).get("student_id", ""))
        if owner != customer and not (owner is None and named == str(student_id)):
            raise GatewayError("That card set-up is not yours.", code="wrong_customer")
        if _field(setup, "status") != "succeeded":
            raise GatewayError("The card was not confirmed. Try again.",
                               code="setup_not_succeeded")
        method_id = _object_id(_field(setup, "payment_method"))
        if not method_id:
            raise GatewayError("The card was not confirmed. Try again.",
                               code="setup_not_succeeded")
        method = self._call(action, lambda: self._client.v1.payment_methods.retrieve(
            method_id))
        if _object_id(_field(method, "customer")) != customer:
            method = self._call(action, lambda: self._client.v1.payment_methods.attach(
                method_id, {"customer": customer}))
        card = _field(method, "card")
        return CardDetails(payment_method_id=method_id,
                           brand=str(_field(card, "brand") or "card")[:20],
                           last4=str(_field(card, "last4") or "")[:4],
                           exp_month=int(_field(card, "exp_month") or 0),
                           exp_year=int(_field(card, "exp_year") or 0))

    def detach_payment_method(self, payment_method_id: str) -> None:
        self._call("remove your card", lambda: self._client.v1.payment_methods.detach(
            payment_method_id))

    def charge_saved_card(self, *, amount_minor: int, currency: str, customer: str,
                          payment_method: str, off_session: bool, idempotency_key: str,
                          metadata: dict[str, str]) -> IntentResult:
        """One create call with ``confirm``: what Stripe documents for charging a saved
        card, and what localstripe supports. Off-session, a card that needs SCA is a
        CardError ``authentication_required`` at Stripe and ``requires_action`` at
        localstripe; both reach the caller (as CardDeclined with that code, or as the
        status)."""
        params: dict[str, Any] = {
            "amount": amount_minor, "currency": currency.lower(), "customer": customer,
            "payment_method": payment_method, "payment_method_types": ["card"],
            "confirm": True, "metadata": _metadata(metadata)}
        if off_session:
            params["off_session"] = True
        try:
            intent = self._client.v1.payment_intents.create(
                params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        except stripe.CardError as exc:
            error = self._mapped(exc, "charge your saved card")
            if (exc.code or "") == AUTHENTICATION_REQUIRED:
                raise CardDeclined(error.message, code=AUTHENTICATION_REQUIRED) from None
            raise error from None
        except stripe.StripeError as exc:
            raise self._mapped(exc, "charge your saved card") from None
        return _intent_result(intent)

    def _retrieve_quietly(self, intent_id: str) -> IntentResult | None:
        try:
            return _intent_result(self._client.v1.payment_intents.retrieve(intent_id))
        except stripe.StripeError:
            return None

    def retrieve_payment_intent(self, intent_id: str) -> IntentResult:
        intent = self._call("look up the payment",
                            lambda: self._client.v1.payment_intents.retrieve(intent_id))
        return _intent_result(intent)

    def refund(self, *, intent_id: str, amount_minor: int, idempotency_key: str,
               metadata: dict[str, str]) -> str:
        """Refund by PaymentIntent. Only ``payment_intent``, ``amount`` and ``metadata`` are
        sent: both Stripe and localstripe accept exactly those (localstripe refuses
        ``reason``, so it is left out)."""
        params = {"payment_intent": intent_id, "amount": amount_minor,
                  "metadata": _metadata(metadata)}
        refund = self._call("refund the payment", lambda: self._client.v1.refunds.create(
            params, {"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return refund.id

    def list_refunds(self, charge_id: str) -> list[dict[str, Any]]:
        """All of a charge's refunds, page by page (a charge rarely has more than one)."""
        listing = self._call("list the charge's refunds", lambda: self._client.v1.refunds.list(
            {"charge": charge_id, "limit": 100}))
        return [{"id": _field(item, "id"), "amount": _field(item, "amount"),
                 "currency": _field(item, "currency"), "status": _field(item, "status"),
                 "metadata": _plain(_field(item, "metadata"))}
                for item in self._call("list the charge's refunds", lambda: list(
                    listing.auto_paging_iter()))]

    # --- reconciliation: what Stripe holds, page by page -------------------------------------

    def _every_page(self, action: str, listing: Callable[[dict[str, Any]], Any],
                    params: dict[str, Any]) -> list[Any]:
        """Every object of a list call: pages of ``list_page_size``, each asking for the
        objects after the last one seen (``starting_after``) while Stripe says
        ``has_more``. Stripe lists newest first, so objects created meanwhile cannot
        shift a later page."""
        found: list[Any] = []
        after: str | None = None
        while True:
            page_params = {**params, "limit": self._list_page_size}
            if after:
                page_params["starting_after"] = after
            page = self._call(action, lambda params=page_params: listing(params))
            data = list(_field(page, "data") or ())
            found.extend(data)
            if not data or not _field(page, "has_more"):
                return found
            after = _field(data[-1], "id")

    def list_charges(self, created_since: datetime) -> list[ListedCharge]:
        """Charges, not PaymentIntents: Stripe filters both by ``created``, localstripe
        only charges; a charge names its PaymentIntent."""
        return [_listed_charge(item) for item in self._every_page(
            "list Stripe's charges", self._client.v1.charges.list,  # type: ignore[arg-type]
            {"created": _since_filter(created_since)})]

    def list_refunds_since(self, created_since: datetime) -> list[ListedRefund]:
        return [_listed_refund(item) for item in self._every_page(
            "list Stripe's refunds", self._client.v1.refunds.list,  # type: ignore[arg-type]
            {"created": _since_filter(created_since)})]

    def list_transfers(self, created_since: datetime) -> list[ListedTransfer]:
        return [_listed_transfer(item) for item in self._every_page(
            "list Stripe's transfers", self._client.v1.transfers.list,  # type: ignore[arg-type]
            {"created": _since_filter(created_since)})]

    def _retrieve_or_none(self, action: str, call: Callable[[], T]) -> T | None:
        """The object, or None when Stripe answers that it does not exist (404)."""
        try:
            return call()
        except stripe.StripeError as exc:
            if exc.http_status == 404:
                return None
            raise self._mapped(exc, action) from None

    def retrieve_transfer(self, transfer_id: str) -> ListedTransfer | None:
        item = self._retrieve_or_none("look up the transfer",
                                      lambda: self._client.v1.transfers.retrieve(transfer_id))
        return None if item is None else _listed_transfer(item)

    def retrieve_refund(self, refund_id: str) -> ListedRefund | None:
        item = self._retrieve_or_none("look up the refund",
                                      lambda: self._client.v1.refunds.retrieve(refund_id))
        return None if item is None else _listed_refund(item)

    # --- coaches (Connect) -------------------------------------------------------------------

    def create_transfer(self, *, amount_minor: int, currency: str, destination: str,
                        transfer_group: str, source_transaction: str | None,
                        idempotency_key: str, metadata: dict[str, str]) -> str:
        """Move a coach's share to their connected account. ``source_transaction`` ties
        the transfer to the student's charge, so it waits for those funds instead of
        needing an available platform balance."""
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": _metadata(metadata),
        }
        if source_transaction:
            params["source_transaction"] = source_transaction
        transfer = self._call("pay the coach", lambda: self._client.v1.transfers.create(
            params, {"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return transfer.id

    def create_express_account(self, *, email: str, idempotency_key: str,
                               metadata: dict[str, str]) -> str:
        params = {
            "type": "express",
            "email": email,
            "capabilities": {"transfers": {"requested": True}},
            "metadata": _metadata(metadata),
        }
        account = self._call("create the coach's Stripe account",
                             lambda: self._client.v1.accounts.create(
                                 params, {"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return account.id

    def account_link(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        """Links are single-use and short-lived: make one per click, never store it."""
        params = {"account": account_id, "refresh_url": refresh_url, "return_url": return_url,
                  "type": "account_onboarding"}
        link = self._call("start Stripe onboarding",
                          lambda: self._client.v1.account_links.create(params))  # type: ignore[arg-type]
        return link.url

    def account_status(self, account_id: str) -> AccountStatus:
        account = self._call("check the coach's Stripe account",
                             lambda: self._client.v1.accounts.retrieve(account_id))
        return AccountStatus(
            account_id=account.id,
            details_submitted=bool(_field(account, "details_submitted")),
            payouts_enabled=bool(_field(account, "payouts_enabled")),
        )

    # --- webhooks -----------------------------------------------------------------------------

    def construct_event(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify ``Stripe-Signature`` over the raw body, then parse it.

        Returns the event as plain dicts and lists (``id``, ``type``, ``data.object``…),
        so handlers and the database never hold library objects. Anything that does not
        check out (no secret configured, no or malformed header, wrong signature, a
        timestamp more than 300 s old or ahead, a body that is not a JSON event) is
        ``InvalidWebhook``.
        """
        if not self._webhook_secret:
            raise InvalidWebhook("STRIPE_WEBHOOK_SECRET is not configured.")
        if not signature:
            raise InvalidWebhook("The Stripe-Signature header is missing.")
        try:
            text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
        except UnicodeDecodeError:
            raise InvalidWebhook("The webhook body is not UTF-8.") from None
        try:
            stripe.WebhookSignature.verify_header(text, signature, self._webhook_secret,
                                                  self._webhook_tolerance)
        except stripe.SignatureVerificationError as exc:
            # The library's messages name no secret; keep them for the log.
            raise InvalidWebhook(f"Bad webhook signature: {_redact(exc.user_message)}") from None
        # The library only refuses old stamps; one from the future is as suspect (a
        # captured signature made to outlive the tolerance), so the window is both ways.
        stamps = [part[2:] for part in signature.split(",") if part.strip().startswith("t=")]
        if not stamps or not stamps[0].strip().isdigit() or \
                int(stamps[0].strip()) > time.time() + self._webhook_tolerance:
            raise InvalidWebhook("The webhook's timestamp is outside the tolerance.")
        try:
            event = json.loads(text)
        except ValueError:
            raise InvalidWebhook("The webhook body is not JSON.") from None
        data = event.get("data") if isinstance(event, dict) else None
        if not (isinstance(event, dict) and isinstance(event.get("id"), str)
                and isinstance(event.get("type"), str) and isinstance(data, dict)
                and isinstance(data.get("object"), dict)):
            raise InvalidWebhook("The webhook body is not a Stripe event.")
        return event

    # --- chargebacks and payout reversals (issue 11) --------------------------------------------

    def reverse_transfer(self, *, transfer_id: str, amount_minor: int, idempotency_key: str,
                         metadata: dict[str, str]) -> str:
        """``POST /v1/transfers/<id>/reversals``: the money leaves the coach's connected
        account back to the platform. Stripe refuses more than is not yet reversed."""
        params = {"amount": amount_minor, "metadata": _metadata(metadata)}
        reversal = self._call("take the transfer back", lambda: self._client.v1.transfers
                              .reversals.create(transfer_id, params,  # type: ignore[arg-type]
                                                {"idempotency_key": idempotency_key}))
        return reversal.id

    def submit_dispute_evidence(self, *, dispute_id: str, evidence: dict[str, str],
                                idempotency_key: str) -> str:
        """``POST /v1/disputes/<id>`` with ``evidence[...]`` and ``submit=true``: the evidence
        goes to the bank at once (it cannot be edited afterwards). Returns the dispute's
        status, normally ``under_review``."""
        params = {"evidence": dict(evidence), "submit": True}
        dispute = self._call("send the dispute evidence", lambda: self._client.v1.disputes
                             .update(dispute_id, params,  # type: ignore[arg-type]
                                     {"idempotency_key": idempotency_key}))
        return _field(dispute, "status") or "under_review"
