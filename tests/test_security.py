"""SPEC's Security section, as far as accounts and requests go."""

from __future__ import annotations

import pytest
from argon2.profiles import RFC_9106_LOW_MEMORY

from skileez import create_app
from skileez.config import ConfigurationError, build_config
from tests.conftest import TEST_PASSWORD, base_config


def test_production_refuses_to_start_without_secret_key(monkeypatch, database_url):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    config = base_config(database_url, SKILEEZ_ENV="production")
    config.pop("SECRET_KEY")
    with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
        create_app(config)


def test_default_password_hashing_is_argon2id_at_owasp_strength(make_app, tmp_path):
    defaults = build_config(str(tmp_path), {"SKILEEZ_ENV": "testing"})
    app = make_app(**{key: value for key, value in defaults.items()
                      if key.startswith("ARGON2_")})
    from skileez.auth.passwords import hash_password, verify_password

    with app.app_context():
        hashed = hash_password("a long passphrase")
        assert verify_password(hashed, "a long passphrase")
        assert not verify_password(hashed, "a long passphrasE")
    assert hashed.startswith("$argon2id$v=19$")
    # OWASP's minimum for Argon2id is m=19 MiB, t=2; we use RFC 9106's 64 MiB, t=3.
    params = RFC_9106_LOW_MEMORY
    assert f"m={params.memory_cost},t={params.time_cost},p={params.parallelism}" in hashed


def test_old_hashes_are_upgraded_at_sign_in(app, client, make_user):
    user = make_user(email="sam@example.com")
    app.config["ARGON2_TIME_COST"] = 2
    client.login("sam@example.com")
    from skileez.auth.models import User
    from skileez.extensions import db

    with app.app_context():
        assert ",t=2," in db.session.get(User, user.id).password_hash


def _fail(client, email, address="10.0.0.1"):
    return client.post("/login", {"email": email, "password": "not the password"},
                       environ_base={"REMOTE_ADDR": address})


def test_eleventh_failure_for_one_account_gets_429_with_when_to_retry(client, make_user):
    make_user(email="sam@example.com")
    for attempt in range(10):
        # Different addresses: the per-account limit is what trips.
        assert _fail(client, "sam@example.com", f"10.0.0.{attempt}").status_code == 422
    response = _fail(client, "SAM@example.com", "10.0.1.1")
    assert response.status_code == 429
    body = response.get_data(as_text=True)
    assert "Too many failed sign-in attempts" in body
    assert "signing in is paused until" in body and "minute" in body
    # Even the right password is refused while throttled…
    right = client.post("/login", {"email": "sam@example.com", "password": TEST_PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.0.2.2"})
    assert right.status_code == 429
    # …but another account is not affected.
    make_user(email="other@example.com")
    assert client.post("/login", {"email": "other@example.com", "password": TEST_PASSWORD},
                       environ_base={"REMOTE_ADDR": "10.0.3.3"}).status_code == 303


def test_eleventh_failure_from_one_address_gets_429(client):
    for attempt in range(10):
        assert _fail(client, f"nobody{attempt}@example.com").status_code == 422
    assert _fail(client, "someone-else@example.com").status_code == 429
    assert _fail(client, "someone-else@example.com", "10.9.9.9").status_code == 422


def test_successful_logins_do_not_count_as_failures(client, make_user):
    make_user(email="sam@example.com")
    for _ in range(12):
        client.login("sam@example.com")
        client.logout()


def test_missing_csrf_token_is_400_and_changes_nothing(app, client, make_user):
    response = client.post("/register", {"name": "A", "email": "a@example.com",
                                         "password": "a long passphrase",
                                         "confirm": "a long passphrase", "role": "student",
                                         "timezone": "UTC"}, csrf=False)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    make_user(email="sam@example.com")
    client.login("sam@example.com")
    assert client.post("/logout", csrf=False).status_code == 400
    assert client.get("/dashboard").status_code == 200  # still signed in


def test_htmx_requests_carry_csrf_in_a_header(app, client, make_user):
    make_user(email="sam@example.com", welcome=True)
    client.login("sam@example.com")
    token = client.csrf_token("/dashboard")
    from sqlalchemy import select

    from skileez.extensions import db
    from skileez.notifications.models import Notification

    with app.app_context():
        notification_id = db.session.scalar(select(Notification.id))
    url = f"/notifications/{notification_id}/read"
    refused = client.http.post(url, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    assert refused.headers["HX-Retarget"] == "#htmx-alerts"
    accepted = client.http.post(url, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert accepted.status_code == 200


def test_security_headers(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' https://js.stripe.com" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "HX-Request" in response.headers["Vary"]


def test_pages_have_no_inline_scripts(client, make_user):
    make_user(email="sam@example.com")
    pages = ["/", "/login", "/register", "/coaches/"]
    client.login("sam@example.com")
    pages += ["/dashboard", "/profile", "/notifications/"]
    for page in pages:
        body = client.get(page).get_data(as_text=True)
        for tag in body.split("<script")[1:]:
            assert tag.lstrip().startswith("src="), f"inline script on {page}"
        assert " onclick=" not in body and " onload=" not in body


def test_htmx_and_bootstrap_are_served_locally(client):
    body = client.get("/login").get_data(as_text=True)
    assert "cdn" not in body.lower()
    htmx = client.get("/static/vendor/htmx/htmx.min.js")
    assert htmx.status_code == 200 and b"htmx" in htmx.data
    assert b"2.0" in client.get("/static/vendor/htmx/htmx.js").data[:20000]
    assert client.get("/bootstrap/static/css/bootstrap.min.css").status_code == 200


def test_behind_a_proxy_throttling_uses_the_forwarded_client_address(make_app):
    from tests.conftest import Client

    client = Client(make_app(TRUSTED_PROXIES=1))

    attempts = iter(range(100))

    def fail(forwarded_for):
        # A new email each time: only the per-address limit can trip.
        return client.post("/login", {"email": f"x{next(attempts)}@example.com",
                                      "password": "not the password"},
                           headers={"X-Forwarded-For": forwarded_for},
                           environ_base={"REMOTE_ADDR": "10.0.0.254"})

    for _ in range(10):
        assert fail("203.0.113.7").status_code == 422
    assert fail("203.0.113.7").status_code == 429
    assert fail("198.51.100.1").status_code == 422  # another client behind the same proxy


def test_an_app_built_without_throttling_does_not_switch_it_off_for_the_next(make_app,
                                                                             make_client):
    """The limiter extension is shared by every app of a process (tests, CLI, workers)."""
    make_app(RATELIMIT_ENABLED=False)
    app = make_app()
    client = make_client(app)
    statuses = [client.post("/login", {"email": "nobody@example.com",
                                       "password": "wrong password!"}).status_code
                for _ in range(11)]
    assert statuses[-1] == 429
