"""Run the real ``stripe`` library against localstripe, a fake Stripe API on loopback.

Tests must never reach api.stripe.com and must not mock the library, so the payments
code is exercised end to end against localstripe (https://github.com/adrienverge/localstripe)
started as a subprocess. Use it from a test module with::

    from tests.stripe_support import localstripe, stripe_client  # noqa: F401

What localstripe does and does not do is recorded in ``tests/STRIPE_NOTES.md``.
"""

from __future__ import annotations

import importlib.util
import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import stripe

from tests.conftest import free_port, require_service

SECRET_KEY = "sk_test_localstripe"  # localstripe accepts any key starting with sk_
PUBLISHABLE_KEY = "pk_test_localstripe"
WEBHOOK_SECRET = "whsec_localstripe"
STARTUP_TIMEOUT = 20.0

# The ``localstripe`` console script binds to [::] (every interface, IPv4 and IPv6) and
# pickles its whole store to the fixed path /tmp/localstripe.pickle on every write, which
# concurrent runs (or another user's stale file) would fight over. So we serve the
# unmodified localstripe aiohttp app ourselves: on 127.0.0.1 only, persistence disabled,
# starting from an empty store (what ``--from-scratch`` does).
_LAUNCHER = """
import logging, sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


class LocalStripe:
    """A running localstripe: where it listens, plus the ``/_config`` helpers tests need."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path
        self.api_base = f"http://127.0.0.1:{port}"
        # Stripe.js stand-in; it derives the API base from its own URL, so keep the path.
        self.js_url = f"{self.api_base}/js.stripe.com/v3/"

    def client(self, api_key: str = SECRET_KEY) -> stripe.StripeClient:
        """A StripeClient aimed at localstripe. Plain HTTP is fine for stripe-python; no
        retries, because a retried 500 ("Not implemented") would only slow a test down."""
        bases = {"api": self.api_base, "connect": self.api_base, "files": self.api_base}
        return stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=0)

    def app_config(self, webhook_secret: str = WEBHOOK_SECRET) -> dict:
        """Flask config overrides that point the app's Stripe settings here."""
        return {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": webhook_secret,
            "STRIPE_API_BASE": self.api_base,
            "STRIPE_JS_URL": self.js_url,
        }

    def request(self, method: str, path: str, body: dict | None = None,
                query: str = "") -> bytes:
        """Raw call for what stripe-python cannot express (``/_config``, the fake 3DS)."""
        data = None if body is None else json.dumps(body).encode()
        url = f"{self.api_base}{path}{'?' + query if query else ''}"
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.read()

    def reset(self) -> None:
        """Forget every object (``DELETE /_config/data``). Webhooks are kept: they live
        outside the store, so use ``unregister_webhook`` for those."""
        self.request("DELETE", "/_config/data")

    def register_webhook(self, url: str, secret: str = WEBHOOK_SECRET,
                         events: list[str] | None = None, webhook_id: str = "skileez") -> str:
        """Have localstripe POST signed events to ``url`` (``POST /_config/webhooks/<id>``
        with url, secret and optionally the event types to send; None means all).
        Registering the same id again replaces that webhook."""
        body: dict = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = list(events)
        self.request("POST", f"/_config/webhooks/{webhook_id}", body)
        return webhook_id

    def unregister_webhook(self, webhook_id: str = "skileez") -> None:
        """localstripe has no delete; an empty event list makes the webhook inert."""
        self.request("POST", f"/_config/webhooks/{webhook_id}",
                     {"url": "http://127.0.0.1:9/", "secret": "unused", "events": []})

    def authenticate_3ds(self, payment_intent_id: str, client_secret: str,
                         success: bool = True) -> dict:
        """Answer a ``requires_action`` PaymentIntent's 3D Secure challenge: the same call
        the stand-in Stripe.js makes when its modal's button is clicked."""
        body = {"key": PUBLISHABLE_KEY, "client_secret": client_secret}
        raw = self.request("POST", f"/v1/payment_intents/{payment_intent_id}/_authenticate",
                           body, query=f"success={'true' if success else 'false'}")
        return json.loads(raw)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_localstripe(log_path: Path, timeout: float = STARTUP_TIMEOUT) -> LocalStripe:
    """Start localstripe on a free loopback port and return once it answers HTTP."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(port)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    server = LocalStripe(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with {process.returncode}:\n"
                               f"{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.js_url, timeout=0.5):
                return server
        except OSError:  # URLError included: not listening yet
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"localstripe did not answer within {timeout:.0f}s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory) -> Iterator[LocalStripe]:
    """One localstripe per test run; skipped locally (failed under CI) if it cannot run."""
    if importlib.util.find_spec("localstripe") is None:
        require_service("localstripe", False,
                        f"not installed for {sys.executable}; pip install -e '.[test]'")
    log_path = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    try:
        server = start_localstripe(log_path)
    except (OSError, RuntimeError) as exc:
        require_service("localstripe", False, str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stripe_client(localstripe: LocalStripe) -> stripe.StripeClient:
    """A client on an emptied localstripe, so no test sees another's objects."""
    localstripe.reset()
    return localstripe.client()


class WebhookReceiver:
    """A tiny HTTP server on loopback that records what localstripe POSTs to it."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()
        self._seen: list[tuple[bytes, dict[str, str]]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.put((body, dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/stripe/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received_types(self) -> list[str]:
        """Types of every event delivered so far."""
        while not self.received.empty():
            self._seen.append(self.received.get_nowait())
        return [json.loads(body).get("type") for body, _ in self._seen]

    def wait_for(self, event_type: str, object_id: str | None = None,
                 timeout: float = 10.0) -> tuple[bytes, dict[str, str]]:
        """The first delivery of ``event_type`` (about ``object_id``) as (raw body, headers).

        localstripe sends each event 1 s after it happens, to the webhooks registered *then*,
        so events from an earlier test can arrive here: match on the object id. Polls
        rather than sleeps."""
        deadline = time.monotonic() + timeout
        while True:
            for body, headers in self._seen:
                event = json.loads(body)
                if event.get("type") == event_type and (
                        object_id is None or event["data"]["object"].get("id") == object_id):
                    return body, headers
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                types = [json.loads(body).get("type") for body, _ in self._seen]
                raise AssertionError(f"no {event_type} webhook within {timeout}s; got {types}")
            try:
                self._seen.append(self.received.get(timeout=min(remaining, 0.2)))
            except queue.Empty:
                continue


__all__ = ["LocalStripe", "WebhookReceiver", "localstripe", "start_localstripe",
           "stripe_client"]
