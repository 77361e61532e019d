"""No 500 from anything a browser can send, on every route.

The targets are generated, not listed: every rule of the url map with each of its
GET/POST methods; for each, as every role (and anonymous), the query parameters
and form fields the view reads (recorded while it runs) and the fields of the
forms the pages render. URL variables are filled with the ids of a small seeded
world (sessions in several states, a payment, a dispute, …) and with absurd ids.
Each parameter then gets each hostile value once, the other parameters keeping the
values the page rendered, htmx and plain; a signed Stripe webhook gets hostile
JSON in each of its fields. Every 5xx is collected with its request and the last
frames of its traceback, and the test fails listing all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import time
import traceback
from datetime import UTC, datetime, timedelta

import pytest
from flask_wtf import FlaskForm
from sqlalchemy import select

from skileez.auth.models import User
from skileez.extensions import db
from tests import fuzz_support
from tests.conftest import TEST_PASSWORD, Client
from tests.fuzz_support import HOSTILE, JSON_BODIES, JSON_VALUES, page_forms, short

ROLES = ("anonymous", "student", "coach", "admin")
WEBHOOK_SECRET = "whsec_fuzz"
METHODS = ("GET", "POST")
# Absurd values for integer URL parts: beyond the int32 columns, beyond int64, and zero.
ABSURD_IDS = (0, 2**31)
ABSURD_TEXT = ("x" * 2000, "😀")
# Responses that mean the view refused this role or object before reading any input.
REFUSED = {401, 403, 404, 405}
# Sessions end last: a sign-out, whatever it rotates, must not cut the fuzz short.
LAST = ("logout", "sign_out")


class Capture(logging.Handler):
    """Keeps the traceback of the unexpected error the 500 handler logs."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record):
        if record.exc_info:
            frames = traceback.format_exception(*record.exc_info)
            self.last = "".join(frames[-4:]).strip()


# --- the world -------------------------------------------------------------------------

@pytest.fixture
def world(make_app, make_user, coaching, clock, book_session, paid_session, make_proposal):
    """Sessions completed, disputed, in progress, scheduled (with a reschedule request),
    awaiting payment and cancelled; a pending proposal, time off, mail and notifications."""
    from skileez.coaches.operations import add_time_off
    from skileez.payments.operations import open_dispute
    from skileez.sessions import calendar, operations
    from skileez.sessions.models import Session

    student, coach, contract = coaching["student"], coaching["coach"], coaching["contract"]
    admin = make_user("admin", name="Ada Admin", email="ada@example.com")
    spare = make_user(name="Spare Student", email="spare@example.com")
    make_user("coach", name="Spare Coach", email="sparecoach@example.com")
    make_proposal(spare, coaching["offering"], sessions=3)

    day = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    done = paid_session(student, contract, day)
    disputed = paid_session(student, contract, day + timedelta(hours=2))
    app = make_app.apps[-1]
    with app.app_context():
        clock.advance(day + timedelta(hours=3, minutes=5) - clock.now())
        for item in (done, disputed):
            operations.complete(db.session.get(Session, item.id))
        db.session.commit()
        open_dispute(db.session.get(Session, disputed.id).payment,
                     db.session.get(User, student.id),
                     reason="The coach left after ten minutes.")
        db.session.commit()
    live = paid_session(student, contract, datetime(2026, 3, 12, 9, 0, tzinfo=UTC))
    scheduled = paid_session(student, contract, datetime(2026, 3, 16, 9, 0, tzinfo=UTC))
    cancelled = paid_session(student, contract, datetime(2026, 3, 17, 9, 0, tzinfo=UTC))
    with app.app_context():
        db.session.expire_on_commit = False
        operations.cancel(db.session.get(Session, cancelled.id),
                          db.session.get(User, student.id), reason="Ill")
        db.session.commit()
        clock.advance(datetime(2026, 3, 12, 9, 5, tzinfo=UTC) - clock.now())
        operations.start(db.session.get(Session, live.id), db.session.get(User, coach.id))
        operations.request_reschedule(db.session.get(Session, scheduled.id),
                                      db.session.get(User, student.id),
                                      new_start=datetime(2026, 3, 16, 11, 0, tzinfo=UTC),
                                      reason="A clash with work.")
        add_time_off(db.session.get(User, coach.id),
                     starts_at=datetime(2026, 3, 20, 8, 0, tzinfo=UTC),
                     ends_at=datetime(2026, 3, 20, 10, 0, tzinfo=UTC), note="Dentist")
        calendar.ensure_token(db.session.get(User, student.id))
        db.session.commit()
        db.session.expire_on_commit = True
    book_session(student, contract, datetime(2026, 3, 18, 9, 0, tzinfo=UTC))  # unpaid hold
    return {"student": student, "coach": coach, "admin": admin, "spare": spare}


# --- generating targets ----------------------------------------------------------------

def _models_by_table():
    return {mapper.class_.__tablename__: mapper.class_
            for mapper in db.Model.registry.mappers}


# URL arguments whose table is not their plural; every other ``<x>_id`` is looked up as
# table ``xs``. A new argument with no table fails the test with its name.
TABLE_OF = {"coach_id": "users", "email_id": "outbox_emails", "rule_id": "availability_rules",
            "time_off_id": "time_off", "request_id": "reschedule_requests",
            "item_id": "reconciliation_items"}


def _id_pool(name: str, protected: set[int]) -> list[int]:
    table = TABLE_OF.get(name, name.removesuffix("_id") + "s")
    model = _models_by_table().get(table)
    assert model is not None, f"no table for URL argument {name!r}: add it to TABLE_OF"
    ids = list(db.session.scalars(select(model.id).order_by(model.id)))
    if name == "user_id":  # the signed-in people must survive deactivation attempts
        ids = [each for each in ids if each not in protected]
    return ids[:8]


def _url_values(app, rule, protected: set[int], token: str) -> tuple[list, list]:
    """Values for a rule's variables: (real ones, absurd ones), each a list of dicts."""
    real, absurd = {}, {}
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        if kind == "AnyConverter":
            real[name] = sorted(converter.items)
            absurd[name] = real[name][:1]
        elif kind in ("DatabaseInteger", "IntegerConverter"):
            real[name] = _id_pool(name, protected)
            absurd[name] = list(ABSURD_IDS)
        elif kind == "PathConverter":
            real[name] = ["css/app.css", "js/app.js", "htmx.min.js"]
            absurd[name] = ["../../../etc/passwd", *ABSURD_TEXT]
        elif name == "token":
            real[name] = [token]
            absurd[name] = list(ABSURD_TEXT)
        else:
            real[name] = ["mail", "default"]
            absurd[name] = list(ABSURD_TEXT)
    names = list(real)

    def product(values):
        return [dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(values[n] for n in names))]

    return (product(real) if all(real.values()) else []), product(absurd)


class Fuzzer:
    def __init__(self, app, people):
        self.app = app
        self.people = people
        self.requests = 0
        self.failures: list[str] = []
        self.capture = Capture()
        self.clients: dict[str, Client] = {}
        self.snapshots: dict[str, list] = {}
        self.tokens: dict[str, str] = {}
        # (role, endpoint) -> rendered defaults; endpoint -> every field name seen
        self.defaults: dict[tuple[str, str], list] = {}
        self.field_names: dict[tuple[str, str], set] = {}
        self.adapter = app.url_map.bind("skileez.test")
        self.fuzzed: set[str] = set()

    # clients ------------------------------------------------------------------------
    def sign_in(self, role):
        client = Client(self.app)
        if role != "anonymous":
            client.login(self.people[role].email)
        self.tokens[role] = client.csrf_token("/dashboard" if role != "anonymous"
                                              else "/login")
        self.clients[role] = client
        self.snapshots[role] = self._cookies(client)

    @staticmethod
    def _cookies(client):
        return [(c.key, c.value) for c in client.http._cookies.values()]

    def _restore(self, role):
        """Each request starts from the role's signed-in cookies: a sign-in, a sign-out or a
        flash message of the previous request never leaks into the next."""
        http = self.clients[role].http
        http._cookies.clear()
        for key, value in self.snapshots[role]:
            http.set_cookie(key, value, domain="localhost")

    # one request --------------------------------------------------------------------
    def send(self, role, method, url, *, query=None, data=None, body=None, htmx=False,
             headers=None, label=None):
        self._restore(role)
        headers = dict(headers or {})
        if htmx:
            headers["HX-Request"] = "true"
        headers.setdefault("X-CSRFToken", self.tokens[role])
        kwargs = {"query_string": query or None, "headers": headers}
        if method == "POST":
            if body is not None:
                kwargs["data"] = body
                kwargs["content_type"] = "application/json"
            else:
                form = list(data or [])
                if not any(key == "csrf_token" for key, _ in form):
                    form.append(("csrf_token", self.tokens[role]))
                kwargs["data"] = _multi(form)
        fuzz_support.reset_reads()
        self.capture.last = None
        self.requests += 1
        try:
            response = self.clients[role].http.open(url, method=method, **kwargs)
            response.get_data()  # a streamed export runs while its body is read
        except Exception as error:  # an exception escaping the app is a 500 too
            self._fail(role, method, url, query, data, label or body, htmx, 500,
                       "".join(traceback.format_exception(error)[-4:]))
            return None
        if response.status_code >= 500:
            self._fail(role, method, url, query, data, label or body, htmx,
                       response.status_code, self.capture.last)
        if role != "anonymous" and response.status_code == 302 and \
                "/login" in response.headers.get("Location", "") and \
                not url.startswith(("/login", "/register")):
            # The account was signed out on the server (say, by a rotated token).
            self.sign_in(role)
        return response

    def _fail(self, role, method, url, query, data, body, htmx, status, trace):
        payload = {"query": query, "form": data, "json": body}
        payload = {k: v for k, v in payload.items() if v}
        self.failures.append(
            f"{status} {method} {url} as {role}{' (htmx)' if htmx else ''} "
            f"{short(payload)}\n    " + (trace or "(no traceback logged)").replace(
                "\n", "\n    "))

    # discovery ----------------------------------------------------------------------
    def learn_forms(self, role, html):
        for form in page_forms(html):
            action = (form["action"] or "").split("?")[0]
            if not action.startswith("/"):
                continue
            try:
                endpoint, _ = self.adapter.match(action, method=form["method"])
            except Exception:
                continue
            key = (role, endpoint)
            self.defaults.setdefault(key, form["fields"])
            self.defaults.setdefault(("*", endpoint), form["fields"])
            self.field_names.setdefault(endpoint, set()).update(form["names"])

    def defaults_for(self, role, endpoint):
        fields = self.defaults.get((role, endpoint)) or self.defaults.get(("*", endpoint)) or []
        fields = [(k, v) for k, v in fields if k != "csrf_token"]
        names = {k for k, _ in fields}
        if {"email", "password"} <= (names | self.field_names.get(endpoint, set())):
            person = self.people.get(role) or self.people["student"]
            fields = [(k, v) for k, v in fields if k not in ("email", "password")]
            fields += [("email", person.email), ("password", TEST_PASSWORD)]
        return fields


def _multi(pairs):
    from werkzeug.datastructures import MultiDict

    return MultiDict(pairs)


def _replace(pairs, name, value):
    """The rendered form with one field's value replaced (a list: the key sent twice)."""
    kept = [(k, v) for k, v in pairs if k != name]
    if value is None:
        return kept
    values = value if isinstance(value, list) else [value]
    return kept + [(name, each) for each in values]


def _ordered_rules(app):
    rules = [rule for rule in app.url_map.iter_rules()]
    return sorted(rules, key=lambda r: (any(word in r.endpoint for word in LAST), r.rule))


def _fuzz_routes(fuzzer: Fuzzer, protected, token):
    app = fuzzer.app
    plans = []
    with app.app_context():
        for rule in _ordered_rules(app):
            real, absurd = _url_values(app, rule, protected, token)
            for method in METHODS:
                if method in rule.methods:
                    plans.append((rule, method, real, absurd))
    gets = [plan for plan in plans if plan[1] == "GET"]
    posts = [plan for plan in plans if plan[1] == "POST"]
    # GET pages first: they render the forms whose fields the POSTs then fuzz.
    for rule, method, real, absurd in gets + posts:
        for role in ROLES:
            _fuzz_one(fuzzer, role, rule, method, real, absurd)
    return len({rule.rule for rule, *_ in plans})


def _fuzz_one(fuzzer: Fuzzer, role, rule, method, real, absurd):
    reached, args_read, form_read, aware = [], set(), set(), False
    defaults = fuzzer.defaults_for(role, rule.endpoint) if method == "POST" else []
    for index, values in enumerate(real if role != "anonymous" else real[:1]):
        url = rule.build(values, append_unknown=False)[1]
        plain = fuzzer.send(role, method, url, data=defaults)
        htmx = fuzzer.send(role, method, url, data=defaults, htmx=True) if index == 0 \
            else None
        if plain is None:
            continue
        args_read |= fuzz_support.READS["args"]
        form_read |= fuzz_support.READS["form"]
        if plain.status_code in REFUSED or (
                plain.status_code == 302 and "/login" in plain.headers.get("Location", "")):
            continue
        reached.append(url)
        if method == "GET" and plain.mimetype == "text/html":
            fuzzer.learn_forms(role, plain.get_data(as_text=True))
        if htmx is not None and b"<html" in plain.data and b"<html" not in htmx.data:
            aware = True
    if role in ("student", "admin") or not reached:
        # Absurd ids: as someone who could own the object, and as the person who can
        # see every object (the admin).
        for values in absurd if role in ("student", "admin") else []:
            fuzzer.send(role, method, rule.build(values, append_unknown=False)[1],
                        data=defaults)
    if not reached:
        return
    if method == "GET":
        form_read = set()
        args_read |= fuzzer.field_names.get(rule.endpoint, set()) if \
            fuzzer.defaults.get(("*", rule.endpoint)) is not None else set()
    else:
        form_read |= fuzzer.field_names.get(rule.endpoint, set())
    form_read.discard("csrf_token")
    targets = [("query", name) for name in sorted(args_read)] + \
        [("form", name) for name in sorted(form_read)]
    rendered = dict(fuzzer.defaults_for(role, rule.endpoint)) if method == "GET" else {}
    values = [*HOSTILE, None, ["1", "😀"]]  # missing; the key twice
    first = rule.endpoint not in fuzzer.fuzzed
    fuzzer.fuzzed.add(rule.endpoint)
    if first:  # the first role to reach a route: every value in every parameter
        pairs = list(itertools.product(targets, values))
    else:  # the others: every value once, the parameters taking turns
        pairs = [(targets[n % len(targets)], value) for n, value in enumerate(values)] \
            if targets else []
    for n, ((where, name), value) in enumerate(pairs):
        url = reached[n % len(reached)]
        for htmx in ((n // len(reached)) % 2 == 1,) if aware else (False,):
            if where == "query":
                query = _replace(list(rendered.items()) if method == "GET" else [],
                                 name, value)
                fuzzer.send(role, method, url, query=_multi(query), data=defaults,
                            htmx=htmx)
            else:
                fuzzer.send(role, method, url, data=_replace(defaults, name, value),
                            htmx=htmx)
    if method == "POST":
        for n, body in enumerate(JSON_BODIES):
            fuzzer.send(role, method, reached[n % len(reached)], body=body,
                        htmx=n % 2 == 1)


# --- the webhook -----------------------------------------------------------------------

def _sign(payload: bytes) -> str:
    timestamp = int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + payload,
                      hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    yield path


def _set(event, path, value):
    event = json.loads(json.dumps(event))
    if not path:
        return value
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


def _fuzz_webhook(fuzzer: Fuzzer, payment):
    """Correctly signed events with each field of each event type made hostile."""
    counter = itertools.count()
    intent = payment.payment_intent_id or "pi_none"
    objects = {
        "payment_intent.succeeded": {
            "id": intent, "object": "payment_intent", "amount": payment.amount_minor,
            "amount_received": payment.amount_minor, "currency": payment.currency.lower(),
            "latest_charge": "ch_fuzz", "metadata": {"payment_id": str(payment.id)}},
        "payment_intent.payment_failed": {
            "id": intent, "object": "payment_intent",
            "metadata": {"payment_id": str(payment.id)},
            "last_payment_error": {"code": "card_declined", "message": "Declined"}},
        "charge.dispute.created": {
            "id": "dp_fuzz", "object": "dispute", "charge": payment.charge_id or "ch_x",
            "payment_intent": intent, "reason": "fraudulent", "amount": payment.amount_minor},
        "charge.refunded": {"id": "ch_fuzz", "object": "charge"},
    }
    for event_type, obj in objects.items():
        template = {"id": "evt", "object": "event", "type": event_type,
                    "data": {"object": obj}}
        for path in _leaves(template):
            for value in JSON_VALUES:
                event = _set(template, path, value)
                if isinstance(event, dict) and path != ("id",):
                    event["id"] = f"evt_fuzz_{next(counter)}"
                body = json.dumps(event).encode()
                fuzzer.send("anonymous", "POST", "/payments/webhook", body=body,
                            headers={"Stripe-Signature": _sign(body)},
                            label=f"signed {event_type}, {'.'.join(path)} = {short(value)}")
    for body in (*JSON_BODIES, "x" * 100_000, "\x00"):
        raw = body.encode()
        fuzzer.send("anonymous", "POST", "/payments/webhook", body=raw,
                    headers={"Stripe-Signature": _sign(raw)})
        fuzzer.send("anonymous", "POST", "/payments/webhook", body=raw,
                    headers={"Stripe-Signature": "t=1,v1=" + "0" * 64})


# --- the test --------------------------------------------------------------------------

@pytest.fixture
def fuzz_app(make_app, world, monkeypatch):
    """The app as production builds it, but without throttles (they would turn the fuzz
    into 429s) and with the request recording what each view reads."""
    original_init = FlaskForm.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        fuzz_support.record_form_fields(self)

    monkeypatch.setattr(FlaskForm, "__init__", recording_init)
    app = make_app(RATELIMIT_ENABLED=False, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    app.request_class = fuzz_support.RecordingRequest
    return app


def test_no_browser_input_causes_a_500_on_any_route(fuzz_app, make_app, world, clock,
                                                    record_property, request, capsys):
    started = time.monotonic()
    fuzzer = Fuzzer(fuzz_app, world)
    logging.getLogger("skileez").addHandler(fuzzer.capture)
    try:
        for role in ROLES:
            fuzzer.sign_in(role)
        with fuzz_app.app_context():
            protected = {world[role].id for role in ("student", "coach", "admin")}
            token = db.session.get(User, world["student"].id).calendar_token
        routes = _fuzz_routes(fuzzer, protected, token)

        # Signed webhooks: an app with Stripe configured, on the same database.
        stripe_app = make_app(RATELIMIT_ENABLED=False, STRIPE_SECRET_KEY="sk_test_fuzz",
                              STRIPE_PUBLISHABLE_KEY="pk_test_fuzz",
                              STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                              STRIPE_API_BASE="http://127.0.0.1:9")
        from skileez.payments.models import Payment

        with stripe_app.app_context():
            db.session.expire_on_commit = False
            payment = db.session.scalar(select(Payment).order_by(Payment.id.desc()))
            db.session.expunge(payment)
        webhook = Fuzzer(stripe_app, world)
        webhook.capture = fuzzer.capture
        webhook.sign_in("anonymous")
        _fuzz_webhook(webhook, payment)
    finally:
        logging.getLogger("skileez").removeHandler(fuzzer.capture)

    total = fuzzer.requests + webhook.requests
    failures = fuzzer.failures + webhook.failures
    summary = (f"fuzzed {total} requests over {routes} routes "
               f"({webhook.requests} signed webhooks) in {time.monotonic() - started:.0f} s: "
               f"{len(failures)} answered 5xx")
    record_property("fuzz_requests", total)
    record_property("fuzz_routes", routes)
    _report_at_the_end(request.config, summary)
    with capsys.disabled():
        print(f"\n{summary}")
    assert routes >= 70, summary
    assert not failures, summary + "\n" + "\n".join(failures)


def _report_at_the_end(config, line):
    """The request count in pytest's terminal summary, where CI logs show it."""

    class Summary:
        @staticmethod
        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_sep("-", "route fuzz")
            terminalreporter.write_line(line)

    if not config.pluginmanager.has_plugin("skileez-route-fuzz"):
        config.pluginmanager.register(Summary(), "skileez-route-fuzz")
