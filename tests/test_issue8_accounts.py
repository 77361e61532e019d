"""Issue 8, accounts and security: names, test addresses, sign-out, throttles,
redirects and body limits, as a visitor or an attacker meets them over HTTP."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.coaches.models import Offering
from skileez.extensions import db
from skileez.notifications.mail import deliver
from skileez.notifications.models import OutboxEmail
from skileez.notifications.operations import notify
from tests.conftest import TEST_PASSWORD, Client, smtp_config


def register_data(**overrides):
    data = {"name": "Ana Lopez", "email": "ana@example.com", "password": "a long passphrase",
            "confirm": "a long passphrase", "role": "student", "timezone": "Europe/Madrid"}
    data.update(overrides)
    return data


def users(app):
    with app.app_context():
        return db.session.scalars(select(User).order_by(User.id)).all()


def user_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


# --- 6: names are one line and bounded; the mailer never fails on a header ----------

@pytest.mark.parametrize(("typed", "stored"), [
    ("Evil\r\nBcc: x@y", "Evil Bcc: x@y"),
    ("Ana\tLopez", "Ana Lopez"),
    ("Ana\x00 Lopez\x1b[31m", "Ana Lopez[31m"),
    ("Ana\u2028Lopez\x85", "Ana Lopez"),
])
def test_registered_name_is_stored_on_one_line(app, client, typed, stored):
    response = client.post("/register", register_data(name=typed), token_page="/register")
    assert response.status_code == 303
    [user] = users(app)
    assert user.name == stored
    with app.app_context():
        email = db.session.scalars(select(OutboxEmail)).one()
        assert email.subject == f"Welcome to Skileez, {stored}"
        assert email.status == "sent"


def test_a_500_character_name_is_refused_beside_the_field(app, client):
    response = client.post("/register", register_data(name="x" * 500), token_page="/register")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Keep your name to 100 characters or fewer (this one has 500)." in body
    assert 'id="name"' in body and "is-invalid" in body
    assert user_count(app) == 0


def test_the_name_limit_is_the_policy_value(make_app):
    app = make_app(POLICY={"name_max_chars": 20})
    client = Client(app)
    page = client.get("/register").get_data(as_text=True)
    assert 'maxlength="20"' in page
    response = client.post("/register", register_data(name="x" * 21), token_page="/register")
    assert response.status_code == 422
    assert "Keep your name to 20 characters or fewer" in response.get_data(as_text=True)


def test_profile_name_is_bounded_and_kept_on_one_line(app, client, make_user):
    user = make_user(email="sam@example.com", name="Sam Rivera")
    client.login("sam@example.com")
    too_long = client.post("/profile", {"name": "y" * 500, "timezone": "Europe/Berlin"},
                           token_page="/profile")
    assert too_long.status_code == 422
    assert "Keep your name to 100 characters or fewer" in too_long.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user.id).name == "Sam Rivera"
    saved = client.post("/profile", {"name": "Sam\r\nBcc: x@y", "timezone": "Europe/Berlin"},
                        token_page="/profile")
    assert saved.status_code == 303
    with app.app_context():
        assert db.session.get(User, user.id).name == "Sam Bcc: x@y"


def test_every_one_line_field_loses_control_characters_and_textareas_keep_lines(
        app, client, make_user):
    make_user("coach", email="clara@example.com")
    client.login("clara@example.com")
    response = client.post("/coaches/me/offerings/new", {
        "title": "Conversation\r\npractice\x00", "description": "Line one\r\nLine\ttwo\x00\x07",
        "duration_minutes": "45", "currency": "EUR", "price": "49.90"},
        token_page="/coaches/me/offerings/new")
    assert response.status_code == 303
    with app.app_context():
        offering = db.session.scalars(select(Offering)).one()
        assert offering.title == "Conversation practice"
        assert offering.description.replace("\r\n", "\n") == "Line one\nLine\ttwo"


def test_an_email_whose_subject_holds_a_line_break_is_still_delivered(make_app, make_user,
                                                                       smtp_server):
    """A name saved before names were cleaned must not make its emails fail for good."""
    app = make_app(**smtp_config(smtp_server))
    user = make_user(email="sam@example.com")
    with app.app_context():
        db.session.execute(User.__table__.update().where(User.id == user.id)
                           .values(name="Evil\r\nBcc: x@y"))
        db.session.commit()
        notify(db.session.get(User, user.id), "welcome", {"role": "student"})
        db.session.commit()
        row = db.session.scalars(select(OutboxEmail)).one()
        assert "\r\n" in row.subject
        deliver(row.id)  # already sent once after commit; a second run changes nothing
        db.session.refresh(row)
        assert (row.status, row.transport, row.last_error) == ("sent", "smtp", None)
    [message] = smtp_server.messages
    assert message["Subject"] == "Welcome to Skileez, Evil Bcc: x@y"
    assert message["To"] == "sam@example.com"
    assert message["Bcc"] is None


# --- 12: reserved test domains outside production ----------------------------------

@pytest.mark.parametrize("email", ["ana@skileez.test", "ana@mail.example", "ana@demo.invalid",
                                   "ana@skileez.localhost", "Ana@Skileez.TEST"])
def test_reserved_test_domains_can_register_outside_production(app, client, email):
    response = client.post("/register", register_data(email=email), token_page="/register")
    assert response.status_code == 303, response.get_data(as_text=True)
    assert [u.email for u in users(app)] == [email.lower()]


@pytest.mark.parametrize("email", ["not valid@skileez.test", "ana@.test", "ana@skileez..test"])
def test_a_test_domain_does_not_excuse_a_malformed_address(app, client, email):
    response = client.post("/register", register_data(email=email), token_page="/register")
    assert response.status_code == 422
    assert "Enter a valid email address" in response.get_data(as_text=True)
    assert user_count(app) == 0


@pytest.mark.parametrize(("email", "tld"), [("ana@skileez.test", "test"),
                                            ("ana@mail.example", "example"),
                                            ("ana@demo.invalid", "invalid"),
                                            ("ana@skileez.localhost", "localhost")])
def test_production_refuses_reserved_test_domains_and_says_why(make_app, email, tld):
    app = make_app(SKILEEZ_ENV="production")
    browser = app.test_client()  # over HTTPS: production cookies are Secure
    page = browser.get("/register", base_url="https://localhost").get_data(as_text=True)
    match = Client.CSRF.search(page)
    token = match.group(1) or match.group(2)
    response = browser.post("/register", data={**register_data(email=email), "csrf_token": token},
                            base_url="https://localhost",
                            headers={"Referer": "https://localhost/register"})
    assert response.status_code == 422
    assert f"Addresses ending in .{tld} are reserved for testing" in \
        response.get_data(as_text=True)
    assert user_count(app) == 0


# --- 13: signing out ends the session on the server --------------------------------

def _copy_of(client, app, *names):
    """Another browser holding copies of these cookies (as a thief would)."""
    thief = app.test_client()
    for name in names:
        cookie = client.http.get_cookie(name)
        assert cookie is not None, f"no {name} cookie to copy"
        thief.set_cookie(name, cookie.value)
    return thief


def test_a_session_cookie_copied_before_logout_opens_nothing_after(app, client, make_user):
    make_user(email="sam@example.com")
    client.login("sam@example.com")
    thief = _copy_of(client, app, "session")
    assert thief.get("/dashboard").status_code == 200
    assert client.logout().status_code == 303
    replay = thief.get("/dashboard")
    assert replay.status_code == 302
    assert urlsplit(replay.headers["Location"]).path == "/login"


def test_a_remember_cookie_copied_before_logout_opens_nothing_after(app, client, make_user):
    make_user(email="sam@example.com")
    client.login("sam@example.com", remember=True)
    copied = client.http.get_cookie("remember_token").value
    thief = app.test_client()
    thief.set_cookie("remember_token", copied)
    assert thief.get("/dashboard").status_code == 200
    response = client.logout()
    # This browser's remember cookie is deleted, and the copy is worthless.
    assert any(c.startswith("remember_token=;") for c in response.headers.getlist("Set-Cookie"))
    replay = app.test_client()
    replay.set_cookie("remember_token", copied)
    assert replay.get("/dashboard").status_code == 302


def test_sign_out_everywhere_ends_every_browsers_session(app, make_user):
    make_user(email="sam@example.com")
    laptop, phone = Client(app), Client(app)
    laptop.login("sam@example.com")
    phone.login("sam@example.com", remember=True)
    profile = laptop.get("/profile").get_data(as_text=True)
    assert 'action="/profile/sign-out-everywhere"' in profile
    response = laptop.post("/profile/sign-out-everywhere", token_page="/profile")
    assert response.status_code == 303
    assert urlsplit(response.headers["Location"]).path == "/login"
    page = laptop.get("/login").get_data(as_text=True)
    assert "signed out on every device and browser, including this one" in page
    assert laptop.get("/dashboard").status_code == 302
    assert phone.get("/dashboard").status_code == 302
    phone.login("sam@example.com")  # the password still works
    assert phone.get("/dashboard").status_code == 200


def test_sign_out_everywhere_needs_the_csrf_token(app, client, make_user):
    make_user(email="sam@example.com")
    client.login("sam@example.com")
    assert client.post("/profile/sign-out-everywhere", csrf=False).status_code == 400
    assert client.get("/dashboard").status_code == 200


# --- 14: the per-account throttle keys on the account, however it is spelled --------

def _fail(client, email, address):
    return client.post("/login", {"email": email, "password": "not the password"},
                       environ_base={"REMOTE_ADDR": address})


@pytest.mark.parametrize("spelling", ["sam@example.com\x00", "\x00sam@example.com",
                                      "sam@exam\x00ple.com", " SAM@example.com\t",
                                      "sam@example.com\r\n"])
def test_a_locked_account_stays_locked_whatever_the_spelling(client, make_user, spelling):
    make_user(email="sam@example.com")
    for attempt in range(10):
        assert _fail(client, "sam@example.com", f"10.0.0.{attempt}").status_code == 422
    right = client.post("/login", {"email": spelling, "password": TEST_PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.0.5.5"})
    assert right.status_code == 429
    assert "Too many failed sign-in attempts" in right.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_failures_spelled_differently_count_for_the_same_account(client, make_user):
    make_user(email="sam@example.com")
    for attempt in range(10):
        spelling = "sam@example.com" + "\x00" * attempt
        assert _fail(client, spelling, f"10.0.0.{attempt}").status_code == 422
    assert _fail(client, "sam@example.com", "10.0.9.9").status_code == 429


# --- 15: next= only ever leads to a page of this site ------------------------------

HOSTILE_NEXT = [
    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/\r\n/evil.example",
    "\t//evil.example", " //evil.example", "/\\evil.example", "\\\\evil.example",
    "//evil.example", "///evil.example", "https://evil.example", "http:evil.example",
    "/\x00/evil", "javascript:alert(1)", "\x00javascript:alert(1)", "/\t\\evil.example",
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_hostile_next_never_leaves_the_site_and_never_500s(client, make_user, target):
    make_user(email="sam@example.com")
    response = client.post("/login", {"email": "sam@example.com", "password": TEST_PASSWORD},
                           query_string={"next": target})
    assert response.status_code == 303
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert parts.scheme in ("", "http") and parts.netloc in ("", "localhost")
    assert location.startswith("/") and not location.startswith("//")
    assert "\\" not in location and "evil" not in location
    assert parts.path == "/dashboard"


@pytest.mark.parametrize("url", ["/login?next=/%09/evil.example",
                                 "/login?next=/%0A/evil.example",
                                 "/login?next=/%0D%0A/evil.example",
                                 "/login?next=%2F%5C/evil.example"])
def test_the_reported_urls_land_on_the_dashboard(client, make_user, url):
    make_user(email="sam@example.com")
    response = client.post(url, {"email": "sam@example.com", "password": TEST_PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard"


@pytest.mark.parametrize(("target", "expected"), [
    ("/notifications/?page=2", "/notifications/?page=2"),
    ("/coaches/?q=a%20b", "/coaches/?q=a%20b"),
    ("/sessions/\t", "/sessions/"),
    # What a browser makes of it: a (missing) page of this site, and no second header.
    ("/dashboard\r\nSet-Cookie: x=1", "/dashboardSet-Cookie:%20x=1"),
])
def test_next_to_a_page_of_this_site_is_followed(client, make_user, target, expected):
    make_user(email="sam@example.com")
    response = client.post("/login", {"email": "sam@example.com", "password": TEST_PASSWORD},
                           query_string={"next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == expected
    assert not any("x=1" in c for c in response.headers.getlist("Set-Cookie"))


# --- 17: a request body has a size limit --------------------------------------------

def test_a_2_mb_post_gets_the_friendly_413_page(app, client):
    response = client.post("/login", {"email": "sam@example.com",
                                      "password": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413
    body = response.get_data(as_text=True)
    assert "That was more than we can accept" in body
    assert "larger than the 1 MB a request may hold" in body
    assert "Go to the home page" in body  # the full page, with the site around it


def test_an_htmx_post_over_the_limit_gets_the_alert_partial(app, client):
    response = client.post("/register", {"name": "x" * (2 * 1024 * 1024)}, htmx=True,
                           token_page="/register")
    assert response.status_code == 413
    assert response.headers["HX-Retarget"] == "#htmx-alerts"
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div class="alert') and "1 MB" in body
    assert user_count(app) == 0


def test_the_body_limit_is_configurable(make_app):
    client = Client(make_app(MAX_CONTENT_LENGTH=512 * 1024))
    response = client.post("/login", {"email": "a@example.com", "password": "x" * 600_000})
    assert response.status_code == 413
    assert "512 KB" in response.get_data(as_text=True)


# --- 18: sign-up is throttled per address -------------------------------------------

def _register(app, n, address="203.0.113.9", **overrides):
    client = Client(app)
    return client.post("/register", register_data(email=f"person{n}@example.com", **overrides),
                       token_page="/register", environ_base={"REMOTE_ADDR": address})


def test_the_sixth_account_from_one_address_in_an_hour_is_refused(app):
    # Mistakes cost nothing: only accounts actually created count.
    for n in range(3):
        assert _register(app, 100 + n, password="short", confirm="short").status_code == 422
    for n in range(5):
        assert _register(app, n).status_code == 303
    refused = _register(app, 5)
    assert refused.status_code == 429
    body = refused.get_data(as_text=True)
    assert "sign-up is paused here until" in body and "minute" in body
    assert user_count(app) == 5
    assert "person5@example.com" not in [u.email for u in users(app)]
    # Another address is not affected.
    assert _register(app, 6, address="198.51.100.4").status_code == 303


def test_the_registration_limit_is_a_config_value(make_app):
    app = make_app(REGISTRATION_LIMIT="1 per day")
    assert _register(app, 0).status_code == 303
    assert _register(app, 1).status_code == 429
    assert user_count(app) == 1


def test_production_without_redis_warns_that_throttling_is_per_process(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="skileez"):
        make_app(SKILEEZ_ENV="production")
    assert any("login and sign-up throttling is per process" in record.getMessage()
               for record in caplog.records if record.levelno == logging.WARNING)


def test_no_warning_when_the_counters_are_shared(make_app, caplog, redis_url):
    with caplog.at_level(logging.WARNING, logger="skileez"):
        make_app(SKILEEZ_ENV="production", RATELIMIT_STORAGE_URI=redis_url)
        make_app(SKILEEZ_ENV="testing")
    assert not any("throttling is per process" in record.getMessage()
                   for record in caplog.records)
