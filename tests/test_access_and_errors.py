"""Default-deny access, admin-only pages, and error pages for people and for htmx."""

from __future__ import annotations

import pytest
from flask import abort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from skileez.auth.models import User
from skileez.core.access import is_public_endpoint
from skileez.core.errors import Conflict, DomainError
from skileez.extensions import db

PUBLIC = {"core.home", "core.health", "core.favicon", "auth.login", "auth.register",
          "coaches.index", "coaches.profile", "payments.webhook", "sessions.calendar_feed"}


def _get_rules(app):
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and \
                not rule.endpoint.endswith("static"):
            yield rule


def test_only_the_intended_pages_are_public(app):
    with app.test_request_context():
        public = {rule.endpoint for rule in app.url_map.iter_rules()
                  if is_public_endpoint(rule.endpoint) and not rule.endpoint.endswith("static")}
    assert public == PUBLIC


def test_every_other_page_sends_anonymous_visitors_to_sign_in(app, client):
    for rule in _get_rules(app):
        response = client.get(rule.rule)
        if rule.endpoint in PUBLIC:
            assert response.status_code == 200, rule.rule
        else:
            assert response.status_code == 302, rule.rule
            assert "/login?next=" in response.headers["Location"], rule.rule


def test_every_blueprint_is_registered_and_reachable(app, client, make_user):
    make_user(email="sam@example.com")
    client.login("sam@example.com")
    for prefix in ("/coaches/", "/contracts/", "/sessions/", "/payments/", "/notifications/",
                   "/dashboard"):
        assert client.get(prefix).status_code == 200, prefix


def test_htmx_request_without_session_gets_401_with_redirect_header(client):
    response = client.get("/notifications/bell", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login?next=")


@pytest.mark.parametrize("role", ["student", "coach"])
def test_admin_pages_are_403_for_non_admins(app, client, make_user, role):
    make_user(role, email="person@example.com")
    client.login("person@example.com")
    admin_rules = [r for r in _get_rules(app) if r.endpoint.startswith("admin.")]
    assert len(admin_rules) >= 4
    for rule in admin_rules:
        response = client.get(rule.rule)
        assert response.status_code == 403, rule.rule
        assert "You do not have access to this page" in response.get_data(as_text=True)


def test_admin_pages_open_for_admins(app, client, make_user):
    make_user("admin", email="root@example.com")
    client.login("root@example.com")
    for rule in _get_rules(app):
        if rule.endpoint.startswith("admin."):
            # A fragment opened in a browser redirects to its page: that page must open.
            response = client.get(rule.rule, follow_redirects=True)
            assert response.status_code == 200, rule.rule
            assert response.request.path.startswith("/admin"), rule.rule


def _add_failing_routes(app):
    def conflict():
        raise Conflict("This session is cancelled and cannot be completed.")

    def rule_broken():
        raise DomainError("Choose a start at least one hour from now.")

    def forbidden():
        abort(403)

    def throttled():
        abort(429)

    def crash():
        raise RuntimeError("boom")

    for view in (conflict, rule_broken, forbidden, throttled, crash):
        view.skileez_public = True
        app.add_url_rule(f"/test/{view.__name__}", f"test_{view.__name__}", view)


@pytest.mark.parametrize(("url", "status", "text"), [
    ("/no/such/page", 404, "We could not find that page"),
    ("/test/forbidden", 403, "You do not have access to this page"),
    ("/test/conflict", 409, "This session is cancelled and cannot be completed."),
    ("/test/rule_broken", 422, "Choose a start at least one hour from now."),
    ("/test/throttled", 429, "Wait a few minutes, then try again."),
    ("/test/crash", 500, "Something went wrong on our side"),
])
def test_error_pages_full_and_as_htmx_partials(app, client, url, status, text):
    _add_failing_routes(app)
    page = client.get(url)
    assert page.status_code == status
    body = page.get_data(as_text=True)
    assert text in body and "<html" in body and "<nav" in body

    partial = client.get(url, headers={"HX-Request": "true"})
    assert partial.status_code == status
    fragment = partial.get_data(as_text=True)
    assert text in fragment and "<html" not in fragment
    assert partial.headers["HX-Retarget"] == "#htmx-alerts"


def test_405_and_400_have_friendly_pages(client):
    assert "That action is not available here" in client.http.put("/login").get_data(
        as_text=True)
    response = client.http.post("/login", data={"email": "x"})
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)


def test_conflict_on_admin_action_is_409_and_changes_nothing(app, client, make_user):
    make_user("admin", email="root@example.com")
    target = make_user(email="sam@example.com")
    with app.app_context():
        db.session.get(User, target.id).status = "deactivated"
        db.session.commit()
    client.login("root@example.com")
    response = client.post(f"/admin/users/{target.id}/deactivate", {"reason": ""},
                           token_page="/admin/users")
    assert response.status_code == 409
    assert "This account is already deactivated." in response.get_data(as_text=True)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=300), email=st.text(max_size=300),
       password=st.text(max_size=300), timezone=st.text(max_size=80),
       role=st.text(max_size=20))
def test_no_registration_input_causes_a_500(app, client, name, email, password, timezone,
                                            role):
    response = client.post("/register", {"name": name, "email": email, "password": password,
                                         "confirm": password, "role": role,
                                         "timezone": timezone}, token_page="/register")
    assert response.status_code in (303, 422), response.status_code
    if response.status_code == 303:
        client.logout()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=200), page=st.text(max_size=12), status=st.text(max_size=12))
def test_no_search_input_causes_a_500(app, client, make_user, query, page, status):
    with app.app_context():
        has_admin = db.session.scalar(select(func.count()).select_from(User)
                                      .where(User.role == "admin"))
    if not has_admin:
        make_user("admin", email="root@example.com")
        client.login("root@example.com")
    params = {"q": query, "page": page, "status": status, "role": status}
    for url in ("/admin/users", "/admin/mail", "/coaches/", "/notifications/"):
        assert client.get(url, query_string=params).status_code == 200, url


def test_absurd_page_numbers_are_clamped_not_500(app, client, make_user):
    make_user("admin", email="root@example.com")
    client.login("root@example.com")
    for url in ("/admin/users", "/admin/mail", "/admin/payments", "/coaches/", "/sessions/",
                "/notifications/", "/contracts/", "/contracts/proposals", "/payments/"):
        for page in ("9" * 30, "-5", "abc", "0"):
            response = client.get(url, query_string={"page": page})
            assert response.status_code == 200, (url, page)


def test_absurd_ids_in_urls_are_404_not_500(app, client, make_user):
    make_user("admin", email="root@example.com")
    client.login("root@example.com")
    big = "9" * 25
    for url in (f"/sessions/{big}", f"/contracts/{big}", f"/admin/users/{big}/deactivate",
                f"/coaches/{big}", f"/payments/{big}/receipt", f"/admin/mail/{big}"):
        assert client.get(url).status_code == 404, url


@pytest.mark.parametrize("body", ['"pm_x"', "1", "[[1, 2]]", "null", "[]"])
@pytest.mark.parametrize("url", ["/login", "/register"])
def test_a_json_body_that_is_not_an_object_is_a_form_with_no_fields(client, url, body):
    """Flask-WTF reads JSON when there is no form body; a browser can send any JSON."""
    token = client.csrf_token()
    response = client.http.post(url, data=body, content_type="application/json",
                                headers={"X-CSRFToken": token})
    assert response.status_code == 422
    assert "This field is required" in response.get_data(as_text=True) or \
        "Enter" in response.get_data(as_text=True)
