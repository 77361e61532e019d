"""A fake of Stripe Connect's API, in front of localstripe, for the real ``stripe`` library.

localstripe has no Connect (no accounts, account links or transfers; see
``tests/STRIPE_NOTES.md``), and a ``StripeClient`` has one API base address. So this is a
small loopback HTTP server that answers the Connect endpoints itself, checking each request
the way Stripe would, and *proxies* every other request (method, path, query, headers,
body) to an upstream, normally localstripe. Point ``STRIPE_API_BASE`` at it and the app's
one gateway reaches both::

    from tests.fake_stripe_connect import fake_connect  # noqa: F401
    from tests.stripe_support import localstripe  # noqa: F401

    def test_payout(fake_connect):  # noqa: F811
        app = make_app(**fake_connect.app_config())
        ...
        assert len(fake_connect.transfers) == 1

Served here: ``POST /v1/transfers``, ``GET /v1/transfers[/<id>]``, ``POST /v1/accounts``,
``GET /v1/accounts/<id>``, ``POST /v1/account_links``, ``GET /v1/refunds`` when it filters
on ``created`` (localstripe cannot; see ``_refunds_created_since``), transfer reversals
(``POST /v1/transfers/<id>/reversals``: at most what is not reversed yet) and card disputes,
which localstripe lacks too (``GET``/``POST /v1/disputes/<id>`` with text ``evidence[...]``
and ``submit``, ``POST /v1/disputes/<id>/close``; a test plays the bank with
``open_dispute`` and ``dispute``), plus the hosted-onboarding page an account link points
to (``GET /_fake_connect/onboarding/<token>``: marks the account onboarded and redirects to
``return_url``; a used link redirects to ``refresh_url``). Transfer lists filter on
``created`` and page with ``starting_after``.

What it checks, like Stripe: a ``Bearer sk_…``/``rk_…`` key; a form-encoded body;
unknown, missing and malformed parameters (400 in Stripe's error shape, so the library
raises ``InvalidRequestError``); transfer amount > 0, destination ``acct_…``,
source_transaction ``ch_…``/``py_…`` (and, with an upstream, that the charge exists there,
succeeded and covers the amount); transfers to a known account that has not finished
onboarding are refused. ``Idempotency-Key`` is honoured: the same key with the same
parameters replays the first answer with ``Idempotent-Replayed: true``; the same key with
other parameters is a 400 ``idempotency_error``; the same key while the first request is
still executing is a 409 ``idempotency_error`` with code ``idempotency_key_in_use`` (hold
transfers in flight with ``hold_transfers()`` to see it). As on Stripe, only answers from requests
that were executed are stored, so a failure injected with ``fail_next_transfers`` (a 500 that
happened "before" execution) is not replayed and a retry with the same key executes.

One localstripe gap is shimmed on the proxied path, because the gateway's retry-after-
decline flow depends on it: after a declined charge Stripe lets a ``requires_payment_method``
PaymentIntent take a new payment method and be confirmed again, but localstripe keeps the
failed charge as ``latest_charge`` and refuses the confirm. When a PaymentIntent update sets
``payment_method`` on such an intent, the proxy first clears ``latest_charge`` upstream
(localstripe's generic update accepts a JSON ``{"latest_charge": null}``). Turn it off with
``FakeStripeConnect(emulate_retry_after_decline=False)``.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from tests.stripe_support import (
    PUBLISHABLE_KEY,
    SECRET_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    localstripe,  # noqa: F401 - the fake_connect fixture depends on it
)

STRIPE_VERSION = "2024-06-20"
ONBOARDING_PATH = "/_fake_connect/onboarding/"
LINK_LIFETIME_SECONDS = 300
# Hop-by-hop headers (RFC 9110 7.6.1) plus the ones the proxy recomputes.
_NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
})
_PARAM_NAME = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PI_UPDATE = re.compile(r"^/v1/payment_intents/(pi_[A-Za-z0-9]+)$")
_CAPABILITIES = frozenset({"transfers", "card_payments"})


def _new_id(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(24))


def _mask(key: str) -> str:
    """Stripe's way of naming a key in an error: prefix and last four only."""
    prefix = key[: key.find("_", 3) + 1] if key.count("_") >= 2 else key[:3]
    return f"{prefix}****{key[-4:]}"


class StripeApiError(Exception):
    """An error answered in Stripe's shape: ``{"error": {"type", "message", ...}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def payload(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested data: ``metadata[k]=v`` → ``{"metadata":
    {"k": "v"}}``, ``a[0]=x`` → ``{"a": ["x"]}``. Values stay strings, as on the wire."""
    result: dict[str, Any] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        match = _PARAM_NAME.match(name)
        if match is None:
            raise StripeApiError(400, f"Invalid parameter name: {name}")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise StripeApiError(400, f"Invalid hash: {name}", param=parts[0])
        last = parts[-1] or str(len(node))
        if isinstance(node.get(last), dict):
            raise StripeApiError(400, f"Invalid hash: {name}", param=parts[0])
        node[last] = value

    def listify(value: Any, under_metadata: bool) -> Any:
        if not isinstance(value, dict):
            return value
        items = {k: listify(v, under_metadata or k == "metadata") for k, v in value.items()}
        if items and not under_metadata and all(k.isdigit() for k in items):
            return [items[k] for k in sorted(items, key=int)]
        return items

    return {key: listify(value, key == "metadata") for key, value in result.items()}


@dataclass
class RecordedRequest:
    """One request as it reached the fake. ``headers`` has lower-case names."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, Any]
    proxied: bool
    status: int | None = None
    replayed: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class _Stored:
    fingerprint: str
    status: int
    payload: dict[str, Any]


@dataclass
class _Link:
    account: str
    refresh_url: str
    return_url: str
    expires_at: int
    used: bool = False


@dataclass
class _Response:
    status: int
    payload: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class FakeStripeConnect:
    """The server. Start it with ``with FakeStripeConnect(upstream=...) as fake:``.

    ``upstream``: base URL that every non-Connect request is forwarded to (None: answer
    404 like an unknown Stripe URL). ``check_source_transactions``: look the transfer's
    source charge up upstream. ``strict_destinations``: refuse transfers to accounts this
    fake did not create (Stripe would); off by default so tests may seed made-up
    ``acct_…`` ids. ``revoked_keys``: API keys answered with 401, as a rolled key would be.
    """

    def __init__(self, upstream: str | None = None, *, js_url: str | None = None,
                 record: bool = True, check_source_transactions: bool = True,
                 strict_destinations: bool = False,
                 emulate_retry_after_decline: bool = True) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.js_url = js_url
        self.record = record
        self.check_source_transactions = check_source_transactions
        self.strict_destinations = strict_destinations
        self.emulate_retry_after_decline = emulate_retry_after_decline
        self.revoked_keys: set[str] = set()
        self.transfers: list[dict[str, Any]] = []
        #: Every transfer reversal made, in order (each is also in its transfer's list).
        self.reversals: list[dict[str, Any]] = []
        #: Card disputes by id: made by tests with ``open_dispute`` (the bank's side).
        self.disputes: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self._links: dict[str, _Link] = {}
        self._idempotent: dict[str, _Stored] = {}
        self._failures: list[int] = []
        self._in_flight: set[str] = set()
        self._transfer_gate: threading.Event | None = None
        #: Set when a ``POST /v1/transfers`` reaches the fake (held or not).
        self.transfer_started = threading.Event()
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02},
                                        name="fake-stripe-connect", daemon=True)

    # --- lifecycle and test controls ---------------------------------------------------------

    def __enter__(self) -> FakeStripeConnect:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def app_config(self, webhook_secret: str = WEBHOOK_SECRET) -> dict[str, Any]:
        """Flask overrides aiming the app's gateway here (and so at the upstream too).
        Library retries are off: a 500 should reach the app's own retry logic at once."""
        config: dict[str, Any] = {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": webhook_secret,
            "STRIPE_API_BASE": self.base_url,
            "STRIPE_MAX_NETWORK_RETRIES": 0,
        }
        if self.js_url:
            config["STRIPE_JS_URL"] = self.js_url
        return config

    def fail_next_transfers(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` ``POST /v1/transfers`` with ``status`` (an ``api_error``),
        without executing or storing them, as when Stripe fails before running a call."""
        with self._lock:
            self._failures.extend([status] * n)

    def hold_transfers(self) -> threading.Event:
        """Keep every ``POST /v1/transfers`` in flight until the returned event is set, as
        a slow Stripe would; a second request with the same key meanwhile gets Stripe's
        409 ``idempotency_key_in_use``."""
        with self._lock:
            self._transfer_gate = threading.Event()
            self.transfer_started.clear()
            return self._transfer_gate

    def set_account_status(self, account_id: str, details_submitted: bool,
                           payouts_enabled: bool) -> dict[str, Any]:
        """What Stripe's onboarding would have done; creates the account if unknown."""
        with self._lock:
            account = self.accounts.get(account_id)
            if account is None:
                account = self._new_account(account_id, {"type": "express"})
                self.accounts[account_id] = account
            self._apply_status(account, details_submitted, payouts_enabled)
            return json.loads(json.dumps(account))

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # --- HTTP plumbing -----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _dispatch(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _dispatch

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        local = split.path.startswith(("/v1/transfers", "/v1/accounts", "/v1/account_links",
                                       "/v1/disputes", ONBOARDING_PATH))
        recorded = RecordedRequest(handler.command, split.path, split.query, headers, body,
                                   {}, proxied=not local)
        try:
            if handler.command == "GET" and split.path == "/v1/refunds" and \
                    "created" in decode_form(split.query) and self.upstream:
                recorded.params = decode_form(split.query)
                response = _Response(200, self._refunds_created_since(headers,
                                                                      recorded.params))
            elif local:
                response = self._local(handler.command, split.path, split.query, headers, body,
                                       recorded)
            else:
                recorded.params = self._params_for_the_record(headers, body, split.query)
                response = self._proxy(handler, body)
        except StripeApiError as exc:
            response = _Response(exc.status, exc.payload())
        except Exception as exc:  # a bug here must read as a Stripe 500, not a hang
            response = _Response(500, StripeApiError(
                500, f"fake_stripe_connect crashed: {exc!r}", type="api_error").payload())
        recorded.status = response.status
        recorded.replayed = response.headers.get("Idempotent-Replayed") == "true"
        if self.record:
            with self._lock:
                self.requests.append(recorded)
        self._write(handler, response, headers)

    @staticmethod
    def _params_for_the_record(headers: dict[str, str], body: bytes,
                               query: str) -> dict[str, Any]:
        """Decoded parameters of a proxied request, when they are form-encoded; the
        upstream, not the fake, judges them."""
        try:
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                return decode_form(body.decode("utf-8"))
            return decode_form(query) if not body else {}
        except (StripeApiError, UnicodeDecodeError):
            return {}

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, response: _Response,
               request_headers: dict[str, str]) -> None:
        if response.raw is not None:
            data = response.raw
        elif response.payload is not None:
            data = (json.dumps(response.payload, indent=2) + "\n").encode()
        else:
            data = b""
        handler.send_response(response.status)
        header_names = {name.lower() for name in response.headers}
        if response.payload is not None and "content-type" not in header_names:
            handler.send_header("Content-Type", "application/json")
        if response.raw is None and response.payload is not None:
            handler.send_header("Request-Id", _new_id("req_"))
            handler.send_header("Stripe-Version",
                                request_headers.get("stripe-version", STRIPE_VERSION))
            if "idempotency-key" in request_headers:
                handler.send_header("Idempotency-Key", request_headers["idempotency-key"])
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    # --- proxy ---------------------------------------------------------------------------------

    def _upstream(self, method: str, path_and_query: str, headers: dict[str, str],
                  body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self.upstream is not None
        parts = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request(method, parts.path.rstrip("/") + path_and_query, body=body,
                               headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _proxy(self, handler: BaseHTTPRequestHandler, body: bytes) -> _Response:
        if self.upstream is None:
            raise StripeApiError(404, f"Unrecognized request URL ({handler.command}: "
                                      f"{urlsplit(handler.path).path}).")
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _NOT_FORWARDED}
        if handler.command == "POST" and self.emulate_retry_after_decline:
            self._shim_retry_after_decline(handler.path, headers, body)
        try:
            status, upstream_headers, data = self._upstream(
                handler.command, handler.path, headers,
                body if handler.command in ("POST", "PUT", "PATCH", "DELETE") else None)
        except OSError as exc:
            raise StripeApiError(502, f"Upstream {self.upstream} unreachable: {exc}",
                                 type="api_error") from None
        kept = {k: v for k, v in upstream_headers
                if k.lower() not in _NOT_FORWARDED | {"server", "date"}}
        return _Response(status, headers=kept, raw=data)

    def _shim_retry_after_decline(self, path: str, headers: dict[str, str],
                                  body: bytes) -> None:
        """See the module docstring: let a declined PaymentIntent take a new card."""
        match = _PI_UPDATE.match(urlsplit(path).path)
        if match is None or "payment_method" not in parse_qs(body.decode(errors="replace")):
            return
        auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
        status, _, data = self._upstream("GET", f"/v1/payment_intents/{match.group(1)}", auth,
                                         None)
        if status != 200:
            return
        intent = json.loads(data)
        if intent.get("status") == "requires_payment_method" and intent.get("latest_charge"):
            self._upstream("POST", f"/v1/payment_intents/{match.group(1)}",
                           {**auth, "Content-Type": "application/json"},
                           json.dumps({"latest_charge": None}).encode())

    # --- Connect endpoints ----------------------------------------------------------------------

    def _local(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes,
               recorded: RecordedRequest) -> _Response:
        if path.startswith(ONBOARDING_PATH) and method == "GET":
            return self._onboarding(path[len(ONBOARDING_PATH):], query)
        api_key = self._authenticate(headers)
        if method == "POST":
            content_type = headers.get("content-type", "")
            if not content_type.startswith("application/x-www-form-urlencoded"):
                raise StripeApiError(400, "Invalid request: the body must be "
                                          "application/x-www-form-urlencoded.")
            params = decode_form(body.decode("utf-8"))
        else:
            params = decode_form(query)
        recorded.params = params

        route = self._route(method, path)
        if route is None:
            raise StripeApiError(404, f"Unrecognized request URL ({method}: {path}).")
        endpoint, arg = route
        key = headers.get("idempotency-key") if method == "POST" else None
        with self._lock:
            if method == "POST" and path == "/v1/transfers" and self._failures:
                status = self._failures.pop(0)
                raise StripeApiError(status, "An unknown error occurred", type="api_error")
            fingerprint = json.dumps([method, path, params], sort_keys=True)
            if key:
                if len(key) > 255:
                    raise StripeApiError(400, "Idempotency-Key is too long (max 255).",
                                         type="idempotency_error")
                stored = self._idempotent.get(key)
                if stored is not None:
                    if stored.fingerprint != fingerprint:
                        raise StripeApiError(
                            400, "Keys for idempotent requests can only be used with the same "
                                 "parameters they were first used with. Try using a key other "
                                 f"than '{key}' if you meant to execute a different request.",
                            type="idempotency_error")
                    return _Response(stored.status, json.loads(json.dumps(stored.payload)),
                                     {"Idempotent-Replayed": "true"})
                if key in self._in_flight:
                    # Stripe's answer to a second request while the first with its key
                    # is still executing: try again later (the first one's result is kept).
                    raise StripeApiError(
                        409, "There is currently another in-progress request using this "
                             "Stripe token (probably an idempotency key). Try again later.",
                        type="idempotency_error", code="idempotency_key_in_use")
                self._in_flight.add(key)
        try:
            if method == "POST" and path == "/v1/transfers":
                self.transfer_started.set()
                gate = self._transfer_gate
                if gate is not None and not gate.wait(timeout=30):
                    raise StripeApiError(500, "held transfer was never released",
                                         type="api_error")
            with self._lock:
                payload = endpoint(params, arg, api_key, headers)
                if key:
                    self._idempotent[key] = _Stored(fingerprint, 200, payload)
                return _Response(200, json.loads(json.dumps(payload)))
        finally:
            if key:
                with self._lock:
                    self._in_flight.discard(key)

    def _route(self, method: str, path: str) -> tuple[Any, str | None] | None:
        parts = path.strip("/").split("/")
        routes: dict[tuple[str, str, int], Any] = {
            ("POST", "transfers", 2): self._create_transfer,
            ("GET", "transfers", 2): self._list_transfers,
            ("GET", "transfers", 3): self._retrieve_transfer,
            ("POST", "accounts", 2): self._create_account,
            ("GET", "accounts", 3): self._retrieve_account,
            ("POST", "account_links", 2): self._create_account_link,
        }
        if len(parts) < 2 or parts[0] != "v1":
            return None
        nested = self._nested_routes().get((method, parts[1], parts[-1] if len(parts) == 4
                                                               else None, len(parts)))
        if nested is not None:
            return nested, parts[2]
        endpoint = routes.get((method, parts[1], len(parts)))
        return None if endpoint is None else (endpoint, parts[2] if len(parts) == 3 else None)

    def _authenticate(self, headers: dict[str, str]) -> str:
        scheme, _, api_key = headers.get("authorization", "").partition(" ")
        api_key = api_key.strip()
        if scheme != "Bearer" or not api_key:
            raise StripeApiError(401, "You did not provide an API key. You need to provide "
                                      "your API key in the Authorization header, using Bearer "
                                      "auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if not api_key.startswith(("sk_", "rk_")) or api_key in self.revoked_keys:
            raise StripeApiError(401, f"Invalid API Key provided: {_mask(api_key)}")
        return api_key

    @staticmethod
    def _only(params: dict[str, Any], allowed: set[str]) -> None:
        for name in params:
            if name not in allowed:
                raise StripeApiError(400, f"Received unknown parameter: {name}",
                                     code="parameter_unknown", param=name)

    @staticmethod
    def _required(params: dict[str, Any], name: str) -> Any:
        value = params.get(name)
        if value is None or value == "":
            raise StripeApiError(400, f"Missing required param: {name}.",
                                 code="parameter_missing", param=name)
        return value

    @staticmethod
    def _string(params: dict[str, Any], name: str) -> str | None:
        value = params.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise StripeApiError(400, f"Invalid string: {value!r}",
                                 code="parameter_invalid_string", param=name)
        return value

    @staticmethod
    def _metadata(params: dict[str, Any]) -> dict[str, str]:
        metadata = params.get("metadata", {})
        if metadata == "":
            return {}
        if not isinstance(metadata, dict):
            raise StripeApiError(400, "Invalid object", code="parameter_invalid_string",
                                 param="metadata")
        if len(metadata) > 50:
            raise StripeApiError(400, "Metadata can have at most 50 keys.", param="metadata")
        for key, value in metadata.items():
            if not isinstance(value, str):
                raise StripeApiError(400, "Invalid metadata value", param=f"metadata[{key}]")
            if len(key) > 40 or len(value) > 500:
                raise StripeApiError(400, "Metadata keys are at most 40 characters and values "
                                          "at most 500.", param=f"metadata[{key}]")
        return dict(metadata)

    def _create_transfer(self, params: dict[str, Any], _arg: str | None, api_key: str,
                         headers: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"amount", "currency", "destination", "transfer_group",
                            "source_transaction", "metadata", "description", "source_type",
                            "expand"})
        raw_amount = self._required(params, "amount")
        if not (isinstance(raw_amount, str) and re.fullmatch(r"-?\d+", raw_amount)):
            raise StripeApiError(400, f"Invalid integer: {raw_amount}",
                                 code="parameter_invalid_integer", param="amount")
        amount = int(raw_amount)
        if amount < 1:
            raise StripeApiError(400, "This value must be greater than or equal to 1.",
                                 code="parameter_invalid_integer", param="amount")
        currency = self._required(params, "currency")
        if not (isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{3}", currency)):
            raise StripeApiError(400, f"Invalid currency: {currency}.",
                                 code="parameter_invalid_string", param="currency")
        currency = currency.lower()
        destination = self._required(params, "destination")
        if not (isinstance(destination, str) and destination.startswith("acct_")):
            raise StripeApiError(400, f"No such destination: '{destination}'",
                                 code="resource_missing", param="destination")
        account = self.accounts.get(destination)
        if account is None and self.strict_destinations:
            raise StripeApiError(400, f"No such destination: '{destination}'",
                                 code="resource_missing", param="destination")
        if account is not None and account["capabilities"].get("transfers") != "active":
            raise StripeApiError(400, "Your destination account needs to have at least one of "
                                      "the following capabilities enabled: transfers, "
                                      "crypto_transfers, legacy_payments",
                                 code="insufficient_capabilities_for_transfer",
                                 param="destination")
        source = self._string(params, "source_transaction")
        if source is not None:
            self._check_source(source, amount, api_key)
        transfer_id = _new_id("tr_")
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": _new_id("txn_"),
            "created": int(time.time()),
            "currency": currency,
            "description": self._string(params, "description"),
            "destination": destination,
            "destination_payment": _new_id("py_"),
            "livemode": False,
            "metadata": self._metadata(params),
            "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                          "url": f"/v1/transfers/{transfer_id}/reversals"},
            "reversed": False,
            "source_transaction": source,
            "source_type": self._string(params, "source_type") or "card",
            "transfer_group": self._string(params, "transfer_group"),
        }
        self.transfers.append(transfer)
        return transfer

    def _check_source(self, source: str, amount: int, api_key: str) -> None:
        if not source.startswith(("ch_", "py_")):
            raise StripeApiError(400, f"No such charge: '{source}'", code="resource_missing",
                                 param="source_transaction")
        if not (self.check_source_transactions and self.upstream and source.startswith("ch_")):
            return
        status, _, data = self._upstream("GET", f"/v1/charges/{source}",
                                         {"Authorization": f"Bearer {api_key}"}, None)
        if status == 404:
            raise StripeApiError(400, f"No such charge: '{source}'", code="resource_missing",
                                 param="source_transaction")
        charge = json.loads(data)
        if status != 200 or charge.get("status") != "succeeded":
            raise StripeApiError(400, f"The source transaction '{source}' has not succeeded, "
                                      "so it cannot fund a transfer.",
                                 param="source_transaction")
        if amount > int(charge.get("amount", 0)):
            raise StripeApiError(400, f"The transfer amount ({amount}) exceeds the source "
                                      f"transaction's amount ({charge.get('amount')}).",
                                 code="amount_too_large", param="amount")

    def _list_transfers(self, params: dict[str, Any], _arg: str | None, _key: str,
                        _headers: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"destination", "transfer_group", "limit", "created",
                            "starting_after", "ending_before", "expand"})
        matching = [t for t in reversed(self.transfers)
                    if all(params.get(k) in (None, t[k]) for k in ("destination",
                                                                   "transfer_group"))]
        return self._list_page(matching, params, "/v1/transfers")

    def _retrieve_transfer(self, params: dict[str, Any], transfer_id: str | None, _key: str,
                           _headers: dict[str, str]) -> dict[str, Any]:
        for transfer in self.transfers:
            if transfer["id"] == transfer_id:
                return transfer
        raise StripeApiError(404, f"No such transfer: '{transfer_id}'", code="resource_missing",
                             param="id")

    def _create_account(self, params: dict[str, Any], _arg: str | None, _key: str,
                        _headers: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"type", "email", "country", "capabilities", "metadata",
                            "business_type", "business_profile", "default_currency",
                            "settings", "tos_acceptance", "expand"})
        account_type = self._required(params, "type")
        if account_type not in ("express", "standard", "custom"):
            raise StripeApiError(400, "Invalid type: must be one of express, standard, or custom",
                                 code="parameter_invalid_string", param="type")
        email = self._string(params, "email")
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise StripeApiError(400, f"Invalid email address: {email}", code="email_invalid",
                                 param="email")
        capabilities = params.get("capabilities", {})
        if not isinstance(capabilities, dict):
            raise StripeApiError(400, "Invalid hash", param="capabilities")
        for name, value in capabilities.items():
            if name not in _CAPABILITIES:
                raise StripeApiError(400, f"Received unknown parameter: capabilities[{name}]",
                                     code="parameter_unknown", param=f"capabilities[{name}]")
            if not (isinstance(value, dict) and value.get("requested") in ("true", "false")):
                raise StripeApiError(400, "Invalid boolean",
                                     param=f"capabilities[{name}][requested]")
        account = self._new_account(_new_id("acct_"), params)
        self.accounts[account["id"]] = account
        return account

    def _new_account(self, account_id: str, params: dict[str, Any]) -> dict[str, Any]:
        requested = [name for name, value in (params.get("capabilities") or {}).items()
                     if isinstance(value, dict) and value.get("requested") == "true"]
        account = {
            "id": account_id,
            "object": "account",
            "type": params.get("type", "express"),
            "email": params.get("email") or None,
            "country": params.get("country") or "DE",
            "default_currency": params.get("default_currency") or "eur",
            "business_type": params.get("business_type") or None,
            "capabilities": {name: "inactive" for name in requested or ["transfers"]},
            "charges_enabled": False,
            "payouts_enabled": False,
            "details_submitted": False,
            "created": int(time.time()),
            "livemode": False,
            "metadata": self._metadata(params),
            "tos_acceptance": {"date": None},
            "external_accounts": {"object": "list", "data": [], "has_more": False,
                                  "total_count": 0,
                                  "url": f"/v1/accounts/{account_id}/external_accounts"},
        }
        self._apply_status(account, False, False)
        return account

    @staticmethod
    def _apply_status(account: dict[str, Any], details_submitted: bool,
                      payouts_enabled: bool) -> None:
        account["details_submitted"] = details_submitted
        account["payouts_enabled"] = payouts_enabled
        account["charges_enabled"] = details_submitted
        for name in account["capabilities"]:
            account["capabilities"][name] = "active" if details_submitted else "inactive"
        due = [] if details_submitted else [
            "business_profile.url", "external_account", "tos_acceptance.date",
            "tos_acceptance.ip"]
        if details_submitted and not payouts_enabled:
            due = ["external_account"]
        account["requirements"] = {
            "currently_due": due, "eventually_due": due, "past_due": due,
            "pending_verification": [], "errors": [], "current_deadline": None,
            "disabled_reason": "requirements.past_due" if due else None,
        }

    def _retrieve_account(self, params: dict[str, Any], account_id: str | None, api_key: str,
                          _headers: dict[str, str]) -> dict[str, Any]:
        account = self.accounts.get(account_id or "")
        if account is None:
            # Stripe answers 403 (a PermissionError), naming the (masked) key.
            raise StripeApiError(403, f"The provided key '{_mask(api_key)}' does not have "
                                      f"access to account '{account_id}' (or that account "
                                      "does not exist). Application access may have been "
                                      "revoked.", code="account_invalid")
        return account

    def _create_account_link(self, params: dict[str, Any], _arg: str | None, _key: str,
                             _headers: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"account", "refresh_url", "return_url", "type", "collect",
                            "collection_options", "expand"})
        account_id = self._required(params, "account")
        link_type = self._required(params, "type")
        if link_type not in ("account_onboarding", "account_update"):
            raise StripeApiError(400, f"Invalid type: {link_type}",
                                 code="parameter_invalid_string", param="type")
        urls = {}
        for name in ("refresh_url", "return_url"):
            url = self._required(params, name)
            split = urlsplit(url) if isinstance(url, str) else None
            if split is None or split.scheme not in ("http", "https") or not split.netloc:
                raise StripeApiError(400, "Not a valid URL", code="url_invalid", param=name)
            urls[name] = url
        if account_id not in self.accounts:
            raise StripeApiError(400, f"No such account: '{account_id}'",
                                 code="resource_missing", param="account")
        created = int(time.time())
        token = secrets.token_urlsafe(16)
        self._links[token] = _Link(account_id, urls["refresh_url"], urls["return_url"],
                                   created + LINK_LIFETIME_SECONDS)
        return {"object": "account_link", "created": created,
                "expires_at": created + LINK_LIFETIME_SECONDS,
                "url": f"{self.base_url}{ONBOARDING_PATH}{token}"}

    def _onboarding(self, token: str, query: str) -> _Response:
        """Stripe's hosted onboarding, reduced to one click: finishing (the default)
        onboards the account; ``?complete=0`` leaves it as it was. Either way the coach
        lands on ``return_url``; a used or expired link sends them to ``refresh_url``."""
        with self._lock:
            link = self._links.get(token)
            if link is None:
                return _Response(404, raw=b"Unknown onboarding link",
                                 headers={"Content-Type": "text/plain"})
            if link.used or time.time() > link.expires_at:
                return _Response(303, headers={"Location": link.refresh_url}, raw=b"")
            link.used = True
            if parse_qs(query).get("complete", ["1"])[0] != "0":
                self._apply_status(self.accounts[link.account], True, True)
            return _Response(303, headers={"Location": link.return_url}, raw=b"")

    # --- reconciliation: lists filtered by creation time, page by page ---------------------
    # Stripe's list endpoints filter on ``created`` (gt, gte, lt, lte: whole seconds) and
    # page newest first with ``limit`` (1 to 100, default 10) and ``starting_after`` (the id
    # of the last object of the previous page), answering ``has_more``. localstripe does so
    # for charges (``gt`` only) but not for refunds, so a refund list with ``created`` is
    # answered here from all of localstripe's refunds.

    @staticmethod
    def _created_filter(params: dict[str, Any]) -> Any:
        created = params.get("created")
        if created is None:
            return lambda _stamp: True
        if isinstance(created, str):
            if not re.fullmatch(r"\d+", created):
                raise StripeApiError(400, f"Invalid integer: {created}", param="created")
            return lambda stamp: stamp == int(created)
        if not isinstance(created, dict) or not created:
            raise StripeApiError(400, "Invalid created filter", param="created")
        tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
        bounds = []
        for op, value in created.items():
            if op not in tests:
                raise StripeApiError(400, f"Received unknown parameter: created[{op}]",
                                     code="parameter_unknown", param=f"created[{op}]")
            if not (isinstance(value, str) and re.fullmatch(r"\d+", value)):
                raise StripeApiError(400, f"Invalid integer: {value}", param=f"created[{op}]")
            bounds.append((tests[op], int(value)))
        return lambda stamp: all(test(int(stamp), bound) for test, bound in bounds)

    def _list_page(self, newest_first: list[dict[str, Any]], params: dict[str, Any],
                   url: str) -> dict[str, Any]:
        raw_limit = params.get("limit") or "10"
        if not (isinstance(raw_limit, str) and raw_limit.isdigit()
                and 1 <= int(raw_limit) <= 100):
            raise StripeApiError(400, "This value must be between 1 and 100.",
                                 code="parameter_invalid_integer", param="limit")
        limit = int(raw_limit)
        keep = self._created_filter(params)
        matching = [item for item in newest_first if keep(item["created"])]
        after = params.get("starting_after")
        if after:
            ids = [item["id"] for item in matching]
            if after not in ids:
                raise StripeApiError(400, f"No such object: '{after}'",
                                     code="resource_missing", param="starting_after")
            matching = matching[ids.index(after) + 1:]
        return {"object": "list", "data": matching[:limit], "has_more": len(matching) > limit,
                "url": url}

    def _refunds_created_since(self, headers: dict[str, str],
                               params: dict[str, Any]) -> dict[str, Any]:
        extra = set(params) - {"created", "limit", "starting_after", "charge",
                               "payment_intent"}
        if extra:
            name = sorted(extra)[0]
            raise StripeApiError(400, f"Received unknown parameter: {name}",
                                 code="parameter_unknown", param=name)
        auth = {k: v for k, v in headers.items() if k == "authorization"}
        refunds: list[dict[str, Any]] = []
        after = None
        while True:
            query = "?limit=100" + (f"&starting_after={after}" if after else "")
            status, _, data = self._upstream("GET", "/v1/refunds" + query, auth, None)
            if status != 200:
                raise StripeApiError(status, f"localstripe answered {status} listing refunds",
                                     type="api_error")
            page = json.loads(data)
            refunds.extend(page["data"])
            if not page["has_more"] or not page["data"]:
                break
            after = page["data"][-1]["id"]
        for name in ("charge", "payment_intent"):
            if params.get(name):
                refunds = [r for r in refunds if r.get(name) == params[name]]
        refunds.sort(key=lambda r: (r["created"], r["id"]), reverse=True)
        return self._list_page(refunds, params, "/v1/refunds")

    def reverse_in_dashboard(self, transfer_id: str, amount: int | None = None) -> str:
        """Reverse (part of) a transfer as someone in Stripe's dashboard would: the
        transfer's ``amount_reversed``, ``reversed`` and ``reversals`` change, and the app
        hears nothing. Returns the reversal's id."""
        with self._lock:
            transfer = next(t for t in self.transfers if t["id"] == transfer_id)
            amount = transfer["amount"] - transfer["amount_reversed"] if amount is None \
                else amount
            reversal = {"id": _new_id("trr_"), "object": "transfer_reversal", "amount": amount,
                        "currency": transfer["currency"], "created": int(time.time()),
                        "transfer": transfer_id, "metadata": {}}
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
            transfer["reversals"]["data"].insert(0, reversal)
            transfer["reversals"]["total_count"] += 1
            return reversal["id"]


    # --- transfer reversals and card disputes (issue 11) ----------------------------------------

    def _nested_routes(self) -> dict[tuple[str, str, str | None, int], Any]:
        return {
            ("POST", "transfers", "reversals", 4): self._create_reversal,
            ("GET", "disputes", None, 3): self._retrieve_dispute,
            ("POST", "disputes", None, 3): self._update_dispute,
            ("POST", "disputes", "close", 4): self._close_dispute,
        }

    def _create_reversal(self, params: dict[str, Any], transfer_id: str | None, _key: str,
                         _headers: dict[str, str]) -> dict[str, Any]:
        """``POST /v1/transfers/<id>/reversals``: at most what is not reversed yet; without
        an amount, all of it. A fully reversed transfer cannot be reversed again."""
        self._only(params, {"amount", "description", "metadata", "refund_application_fee",
                            "expand"})
        transfer = self._retrieve_transfer({}, transfer_id, _key, _headers)
        left = transfer["amount"] - transfer["amount_reversed"]
        raw = params.get("amount")
        if raw in (None, ""):
            amount = left
        elif isinstance(raw, str) and re.fullmatch(r"-?\d+", raw):
            amount = int(raw)
        else:
            raise StripeApiError(400, f"Invalid integer: {raw}",
                                 code="parameter_invalid_integer", param="amount")
        if transfer["reversed"] or left <= 0:
            raise StripeApiError(400, f"Transfer {transfer_id} has already been fully reversed.",
                                 code="transfer_already_reversed")
        if amount < 1:
            raise StripeApiError(400, "This value must be greater than or equal to 1.",
                                 code="parameter_invalid_integer", param="amount")
        if amount > left:
            raise StripeApiError(400, f"Amount to reverse ({amount}) is greater than the "
                                      f"transfer's remaining amount ({left}).",
                                 code="amount_too_large", param="amount")
        reversal = {"id": _new_id("trr_"), "object": "transfer_reversal", "amount": amount,
                    "balance_transaction": _new_id("txn_"), "created": int(time.time()),
                    "currency": transfer["currency"], "destination_payment_refund":
                    _new_id("pyr_"), "metadata": self._metadata(params),
                    "source_refund": None, "transfer": transfer_id}
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
        listing = transfer["reversals"]
        listing["data"].insert(0, reversal)
        listing["total_count"] += 1
        self.reversals.append(reversal)
        return reversal

    def open_dispute(self, charge_id: str, *, amount: int, currency: str = "eur",
                     reason: str = "fraudulent", payment_intent: str | None = None,
                     status: str = "needs_response", due_in: int = 7 * 86400) -> dict[str, Any]:
        """What a cardholder's bank does: a dispute on ``charge_id`` (a copy is returned;
        build the ``charge.dispute.*`` events from ``dispute(id)``)."""
        dispute_id = _new_id("du_")
        with self._lock:
            self.disputes[dispute_id] = {
                "id": dispute_id, "object": "dispute", "amount": amount,
                "balance_transactions": [], "charge": charge_id, "created": int(time.time()),
                "currency": currency, "evidence": {}, "evidence_details": {
                    "due_by": int(time.time()) + due_in, "has_evidence": False,
                    "past_due": False, "submission_count": 0},
                "is_charge_refundable": False, "livemode": False, "metadata": {},
                "payment_intent": payment_intent, "reason": reason, "status": status}
            return json.loads(json.dumps(self.disputes[dispute_id]))

    def dispute(self, dispute_id: str, **changes: Any) -> dict[str, Any]:
        """The dispute as Stripe holds it now (``changes``: the bank moved it, e.g.
        ``status="won"``)."""
        with self._lock:
            self.disputes[dispute_id].update(changes)
            return json.loads(json.dumps(self.disputes[dispute_id]))

    def _dispute_or_404(self, dispute_id: str | None) -> dict[str, Any]:
        dispute = self.disputes.get(dispute_id or "")
        if dispute is None:
            raise StripeApiError(404, f"No such dispute: '{dispute_id}'",
                                 code="resource_missing", param="id")
        return dispute

    def _retrieve_dispute(self, params: dict[str, Any], dispute_id: str | None, _key: str,
                          _headers: dict[str, str]) -> dict[str, Any]:
        self._only(params, {"expand"})
        return self._dispute_or_404(dispute_id)

    #: Stripe's evidence fields that take text (files are ids of uploads: none here).
    EVIDENCE_FIELDS = frozenset({
        "access_activity_log", "billing_address", "cancellation_policy_disclosure",
        "cancellation_rebuttal", "customer_communication", "customer_email_address",
        "customer_name", "customer_purchase_ip", "duplicate_charge_explanation",
        "duplicate_charge_id", "product_description", "refund_policy_disclosure",
        "refund_refusal_explanation", "service_date", "shipping_address",
        "shipping_carrier", "shipping_date", "shipping_tracking_number",
        "uncategorized_text"})

    def _update_dispute(self, params: dict[str, Any], dispute_id: str | None, _key: str,
                        _headers: dict[str, str]) -> dict[str, Any]:
        """``POST /v1/disputes/<id>``: evidence (text fields, 20,000 characters in all) and
        ``submit``; only while the dispute still needs a response."""
        self._only(params, {"evidence", "submit", "metadata", "expand"})
        dispute = self._dispute_or_404(dispute_id)
        evidence = params.get("evidence", {})
        if not isinstance(evidence, dict):
            raise StripeApiError(400, "Invalid object", param="evidence")
        for name, value in evidence.items():
            if name not in self.EVIDENCE_FIELDS:
                raise StripeApiError(400, f"Received unknown parameter: evidence[{name}]",
                                     code="parameter_unknown", param=f"evidence[{name}]")
            if not isinstance(value, str):
                raise StripeApiError(400, "Invalid string", param=f"evidence[{name}]")
        if sum(len(value) for value in evidence.values()) > 20000:
            raise StripeApiError(400, "The combined length of the text evidence fields is "
                                      "more than 20,000 characters.", param="evidence")
        submit = params.get("submit")
        if submit not in (None, "true", "false"):
            raise StripeApiError(400, f"Invalid boolean: {submit}",
                                 code="parameter_invalid_boolean", param="submit")
        if dispute["status"] not in ("needs_response", "warning_needs_response"):
            raise StripeApiError(400, "This dispute can no longer be updated: its status is "
                                      f"{dispute['status']}.")
        dispute["evidence"].update(evidence)
        dispute["evidence_details"]["has_evidence"] = bool(dispute["evidence"])
        if "metadata" in params:
            dispute["metadata"] = self._metadata(params)
        if submit == "true":
            dispute["evidence_details"]["submission_count"] += 1
            dispute["status"] = dispute["status"].replace("needs_response", "under_review")
        return dispute

    def _close_dispute(self, params: dict[str, Any], dispute_id: str | None, _key: str,
                       _headers: dict[str, str]) -> dict[str, Any]:
        """``POST /v1/disputes/<id>/close``: accept it as lost (only while it needs a
        response)."""
        self._only(params, {"expand"})
        dispute = self._dispute_or_404(dispute_id)
        if dispute["status"] not in ("needs_response", "warning_needs_response"):
            raise StripeApiError(400, "This dispute is already closed or under review.")
        dispute["status"] = "lost" if dispute["status"] == "needs_response" \
            else "warning_closed"
        return dispute


@pytest.fixture
def fake_connect(localstripe: LocalStripe) -> Iterator[FakeStripeConnect]:  # noqa: F811
    """Fake Connect in front of an emptied localstripe: ``fake_connect.app_config()`` (or
    ``STRIPE_API_BASE = fake_connect.base_url``) gives PaymentIntents, refunds and webhooks
    from localstripe and Connect from the fake, through one gateway."""
    localstripe.reset()
    with FakeStripeConnect(upstream=localstripe.api_base, js_url=localstripe.js_url) as fake:
        yield fake


__all__ = ["FakeStripeConnect", "RecordedRequest", "StripeApiError", "decode_form",
           "fake_connect"]
