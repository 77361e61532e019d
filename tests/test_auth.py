"""Accounts: registering, signing in and out, profiles, passwords, deactivation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.core.models import AuditEvent
from skileez.extensions import db
from skileez.notifications.models import Notification, OutboxEmail
from tests.conftest import TEST_PASSWORD


def register_data(**overrides):
    data = {"name": "Ana Lopez", "email": "ana@example.com", "password": "a long passphrase",
            "confirm": "a long passphrase", "role": "student", "timezone": "Europe/Madrid"}
    data.update(overrides)
    return data


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_register_creates_account_signs_in_and_welcomes(app, client):
    response = client.post("/register", register_data(), token_page="/register")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/dashboard")

    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert "Hello, Ana" in dashboard
    assert "Welcome to Skileez!" in dashboard
    with app.app_context():
        user = User.find_by_email("ANA@example.com")
        assert user.role == "student" and user.timezone == "Europe/Madrid"
        assert user.password_hash.startswith("$argon2id$")
        assert db.session.scalar(select(func.count()).select_from(Notification)
                                 .where(Notification.recipient_id == user.id)) == 1
        email = db.session.scalars(select(OutboxEmail)).one()
        assert email.to_address == "ana@example.com"
        assert email.subject == "Welcome to Skileez, Ana Lopez"
        # No SMTP configured: the email is in the local mailbox, already "sent".
        assert email.status == "sent" and email.transport == "local"
        assert "http://skileez.test/dashboard" in email.text_body
        created = db.session.scalars(select(AuditEvent).where(
            AuditEvent.object_type == "users", AuditEvent.object_id == user.id)).one()
        assert created.from_state is None and created.to_state == "active"


def test_coach_can_register(app, client):
    response = client.post("/register", register_data(role="coach", email="c@example.com"),
                           token_page="/register")
    assert response.status_code == 303
    with app.app_context():
        assert User.find_by_email("c@example.com").role == "coach"


@pytest.mark.parametrize("email", ["ana@example.com", "ANA@EXAMPLE.COM", " Ana@Example.com "])
def test_duplicate_email_in_any_case_is_refused_beside_the_field(app, client, make_user, email):
    make_user(email="ana@example.com")
    response = client.post("/register", register_data(email=email), token_page="/register")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "An account with this email already exists" in body
    assert 'id="email"' in body and "is-invalid" in body
    assert count(app, User) == 1


@pytest.mark.parametrize(("field", "value", "message"), [
    ("password", "short", "Use at least 10 characters."),
    ("password", "aaaaaaaaaaaa", "too easy to guess"),
    ("confirm", "something else entirely", "The two passwords do not match."),
    ("timezone", "Mars/Olympus_Mons", "Choose a time zone from the list"),
    ("timezone", "", "Choose a time zone from the list"),
    ("email", "not-an-email", "Enter a valid email address"),
    ("email", "", "Enter your email address."),
    ("name", "   ", "Tell us your name."),
    ("name", "x" * 101, "Keep your name to 100 characters or fewer (this one has 101)."),
    ("role", "admin", "Not a valid choice"),
])
def test_bad_registration_input_is_explained_and_nothing_saved(app, client, field, value,
                                                                message):
    data = register_data(**{field: value})
    if field == "password":
        data["confirm"] = value
    response = client.post("/register", data, token_page="/register")
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(app, User) == 0
    assert count(app, OutboxEmail) == 0


def test_register_page_offers_the_iana_list_and_detects_the_browser_zone(client):
    body = client.get("/register").get_data(as_text=True)
    assert 'data-detect-timezone="1"' in body
    assert ('<option value="America/Argentina/Buenos_Aires">'
            "America/Argentina/Buenos Aires</option>") in body
    assert "<optgroup label=\"Europe\">" in body


def test_login_logout_cycle(app, client, make_user):
    user = make_user(email="sam@example.com")
    assert client.get("/dashboard").status_code == 302
    response = client.login("SAM@example.com")
    assert response.headers["Location"].endswith("/dashboard")
    assert client.get("/dashboard").status_code == 200
    client.logout()
    assert client.get("/dashboard").status_code == 302
    with app.app_context():
        assert db.session.get(User, user.id).last_login_at is not None


def test_wrong_password_is_refused_with_a_message(client, make_user):
    make_user(email="sam@example.com")
    response = client.post("/login", {"email": "sam@example.com", "password": "wrong password"})
    assert response.status_code == 422
    assert "do not match an account" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_login_follows_only_local_next(client, make_user):
    make_user(email="sam@example.com")
    data = {"email": "sam@example.com", "password": TEST_PASSWORD}
    response = client.post("/login?next=/notifications/", data)
    assert response.headers["Location"].endswith("/notifications/")
    client.logout()
    response = client.post("/login?next=//evil.example/", data)
    assert response.headers["Location"].endswith("/dashboard")


def test_login_issues_a_fresh_session(client, make_user):
    make_user(email="sam@example.com")
    client.get("/login")
    with client.http.session_transaction() as session:
        session["planted"] = "by an attacker"
    client.login("sam@example.com")
    with client.http.session_transaction() as session:
        assert "planted" not in session
        assert session.get("_user_id")


def test_remember_me_cookie_is_httponly_lax_and_at_most_30_days(client, make_user):
    make_user(email="sam@example.com")
    response = client.login("sam@example.com", remember=True)
    cookies = response.headers.getlist("Set-Cookie")
    remember = next(c for c in cookies if c.startswith("remember_token="))
    assert "HttpOnly" in remember and "SameSite=Lax" in remember
    expires = parsedate_to_datetime(remember.split("Expires=")[1].split(";")[0])
    lifetime = expires - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)


def test_cookies_are_secure_in_production(make_app):
    app = make_app(SKILEEZ_ENV="production")
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]


def test_deactivated_user_cannot_sign_in(app, client, make_user):
    user = make_user(email="sam@example.com")
    with app.app_context():
        db.session.get(User, user.id).status = "deactivated"
        db.session.commit()
    response = client.post("/login", {"email": "sam@example.com", "password": TEST_PASSWORD})
    assert response.status_code == 422
    assert "This account has been deactivated" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_profile_changes_name_and_time_zone(app, client, make_user, clock):
    user = make_user(email="sam@example.com", timezone="Europe/Berlin")
    client.login("sam@example.com")
    # 09:00 UTC on 10 March 2026 is 10:00 in Berlin (CET).
    assert "Tue 10 Mar 2026, 10:00 CET" in client.get("/profile").get_data(as_text=True)
    response = client.post("/profile", {"name": "Sam R.", "timezone": "America/New_York"},
                           token_page="/profile")
    assert response.status_code == 303
    page = client.get("/profile").get_data(as_text=True)
    assert "Tue 10 Mar 2026, 05:00 EDT" in page
    with app.app_context():
        stored = db.session.get(User, user.id)
        assert (stored.name, stored.timezone) == ("Sam R.", "America/New_York")


def test_profile_refuses_unknown_time_zone(app, client, make_user):
    user = make_user(email="sam@example.com")
    client.login("sam@example.com")
    response = client.post("/profile", {"name": "Sam", "timezone": "Nowhere/Else"},
                           token_page="/profile")
    assert response.status_code == 422
    assert "Choose a time zone from the list" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, user.id).timezone == "Europe/Berlin"


def test_change_password_signs_out_other_devices(app, make_client, make_user):
    make_user(email="sam@example.com")
    laptop, phone = make_client(app), make_client(app)
    laptop.login("sam@example.com")
    phone.login("sam@example.com")
    response = laptop.post("/profile/password", {
        "pw-current_password": TEST_PASSWORD, "pw-new_password": "an even longer secret",
        "pw-confirm": "an even longer secret"}, token_page="/profile")
    assert response.status_code == 303
    assert laptop.get("/dashboard").status_code == 200
    assert phone.get("/dashboard").status_code == 302
    phone.login("sam@example.com", password="an even longer secret")


def test_change_password_needs_the_current_one(app, client, make_user):
    make_user(email="sam@example.com")
    client.login("sam@example.com")
    response = client.post("/profile/password", {
        "pw-current_password": "not my password", "pw-new_password": "an even longer secret",
        "pw-confirm": "an even longer secret"}, token_page="/profile")
    assert response.status_code == 422
    assert "That is not your current password." in response.get_data(as_text=True)
    client.logout()
    client.login("sam@example.com")  # the old password still works


def test_create_admin_command(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["skileez", "create-admin", "Root@Example.com"],
                           input="admin password 1\nadmin password 1\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert User.find_by_email("root@example.com").role == "admin"
    again = runner.invoke(args=["skileez", "create-admin", "root@example.com"],
                          input="admin password 1\nadmin password 1\n")
    assert again.exit_code != 0
    assert "already exists" in again.output
    short = runner.invoke(args=["skileez", "create-admin", "x@example.com"],
                          input="short\nshort\n")
    assert short.exit_code != 0 and "at least 10" in short.output


def test_create_admin_accepts_the_addresses_registration_accepts(app):
    """The demo accounts live at .test; an admin made for a demo must be allowed there too."""
    runner = app.test_cli_runner()
    result = runner.invoke(args=["skileez", "create-admin", "ops@skileez.test"],
                           input="admin password 1\nadmin password 1\n")
    assert result.exit_code == 0, result.output
    bad = runner.invoke(args=["skileez", "create-admin", "not-an-address"],
                        input="admin password 1\nadmin password 1\n")
    assert bad.exit_code != 0 and "valid email address" in bad.output
