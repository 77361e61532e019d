"""Request-wide behaviour: error pages, security headers, template helpers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Flask, g, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from skileez import clock
from skileez.core.errors import Conflict, DomainError
from skileez.core.http import is_htmx
from skileez.core.money import format_money
from skileez.core.timezones import format_local, humanize_delta, localize, zone_label
from skileez.core.words import (
    deadline_words,
    duration_words,
    list_words,
    percent_words,
    refund_words,
)
from skileez.extensions import db
from skileez.policy import get_policy

log = logging.getLogger(__name__)

ERROR_TITLES = {
    400: "That request could not be understood",
    401: "Please sign in",
    403: "You do not have access to this page",
    404: "We could not find that page",
    405: "That action is not available here",
    409: "That cannot be done right now",
    413: "That was more than we can accept",
    422: "Please check what you entered",
    429: "Too many attempts",
    500: "Something went wrong on our side",
}

ERROR_HINTS = {
    400: "Go back, reload the page and try again.",
    403: "If you think you should see this, sign in with the right account.",
    404: "The link may be old, or the page may belong to someone else.",
    409: "Nothing was changed. Reload the page to see the current state.",
    413: "Nothing was saved. Shorten what you entered, then try again.",
    429: "Wait a little, then try again.",
    500: "The problem has been logged. Please try again in a moment.",
}


def viewer_timezone() -> str:
    if current_user and current_user.is_authenticated:
        return current_user.timezone
    return "UTC"


def init_app(app: Flask) -> None:
    _register_error_handlers(app)
    _register_template_helpers(app)

    @app.after_request
    def security_headers(response):
        stripe_origin = _origin(app.config["STRIPE_JS_URL"])
        script_src = " ".join(filter(None, ["'self'", stripe_origin]))
        # Stripe.js talks to Stripe's API (or, in tests, to the stand-in it came from).
        connect_src = " ".join(dict.fromkeys(filter(None, [
            "'self'", "https://api.stripe.com", stripe_origin,
            _origin(app.config["STRIPE_API_BASE"])])))
        # Joining a session posts a form that redirects to the meeting room's server.
        form_action = " ".join(filter(None, ["'self'",
                                             _origin(app.config.get("MEETING_BASE_URL"))]))
        frame_src = " ".join(filter(None, ["'self'", stripe_origin, "https://hooks.stripe.com"]))
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src {script_src}; style-src 'self'; "
            f"img-src 'self' data:; font-src 'self' data:; connect-src {connect_src}; "
            f"frame-src {frame_src}; object-src 'none'; "
            f"base-uri 'self'; form-action {form_action}; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        response.headers.setdefault("Permissions-Policy",
                                    "camera=(), microphone=(), geolocation=()")
        if app.config["SESSION_COOKIE_SECURE"]:
            response.headers.setdefault("Strict-Transport-Security",
                                        "max-age=31536000; includeSubDomains")
        # The same URL answers with a fragment or a full page depending on HX-Request.
        response.vary.add("HX-Request")
        if request.endpoint and not request.endpoint.endswith("static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def render_error(status: int, message: str | None = None, *, title: str | None = None,
                 headers: dict | None = None):
    """The error page, or for htmx a small alert swapped into the page's alert area."""
    context = {
        "status": status,
        "title": title or ERROR_TITLES.get(status, "Something went wrong"),
        "message": message,
        "hint": ERROR_HINTS.get(status),
    }
    htmx_request = is_htmx()
    try:
        body = render_template("errors/_error.html" if htmx_request else "errors/error.html",
                               **context)
    except Exception:
        # The page chrome itself failed (say, the database is down): plain text it is.
        log.exception("Could not render the %s error page", status)
        body = f"<!doctype html><title>{context['title']}</title><h1>{context['title']}</h1>"
    response_headers = {"HX-Retarget": "#htmx-alerts", "HX-Reswap": "innerHTML"} \
        if htmx_request else {}
    response_headers.update(headers or {})
    return body, status, response_headers


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_error(400, "Your form had expired or was missing its security token, "
                                 "so nothing was saved. Reload the page and try again.",
                            title="Your form expired")

    @app.errorhandler(DomainError)
    def domain_error(error: DomainError):
        # Routes show most rule violations beside the form; these are the rest.
        return render_error(error.status_code, error.message)

    @app.errorhandler(413)
    def too_large(error):
        limit = request.max_content_length or app.config.get("MAX_CONTENT_LENGTH")
        message = (f"What you sent is larger than the {_size(limit)} a request may hold."
                   if limit else None)
        return render_error(413, message)

    @app.errorhandler(429)
    def too_many(error):
        message = getattr(g, "rate_limit_message", None) or (
            "You have tried too many times. Wait a few minutes, then try again.")
        return render_error(429, message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        message = None
        if status in (403, 404, 409) and error.description and \
                error.description != type(error).description:
            message = error.description
        if status == 405:
            message = None
        return render_error(status, message)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("Unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return render_error(500)

    # Conflict is a DomainError subclass; registered explicitly for clarity.
    app.register_error_handler(Conflict, domain_error)


def _size(size: int) -> str:
    """1048576 → "1 MB": a limit as people read it."""
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def _register_template_helpers(app: Flask) -> None:
    @app.template_filter("local")
    def local_filter(instant, style: str = "full", tz: str | None = None):
        return format_local(instant, tz or viewer_timezone(), style)

    @app.template_filter("local_in")
    def local_in_filter(instant, tz: str, style: str = "full"):
        """For emails and notifications: a time in a named person's zone (ISO strings too)."""
        if isinstance(instant, str):
            instant = datetime.fromisoformat(instant)
        return format_local(instant, tz, style)

    @app.template_filter("sentence")
    def sentence_filter(text):
        """Capitalise the first letter only (``capitalize`` would lower-case the rest)."""
        text = str(text or "")
        return text[:1].upper() + text[1:]

    @app.template_filter("relative")
    def relative_filter(instant):
        return humanize_delta(instant) if instant else ""

    # Sentences that state a rule say the policy value through these, never a literal:
    # {{ policy.payment_hold|duration }}, {{ policy.refund_coach_cancels|refund_words }}.
    app.add_template_filter(duration_words, "duration")
    app.add_template_filter(percent_words, "percent")
    app.add_template_filter(refund_words, "refund_words")
    app.add_template_filter(list_words, "list_words")

    @app.template_filter("deadline")
    def deadline_filter(instant, tz: str | None = None):
        return deadline_words(instant, tz or viewer_timezone()) if instant else ""

    @app.template_filter("money")
    def money_filter(minor: int, currency: str):
        return format_money(minor, currency)

    @app.template_filter("utc_param")
    def utc_param_filter(instant):
        """An instant for a URL: '2026-03-11T09:00:00Z' survives query strings ('+' does not)."""
        return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if instant else ""

    @app.template_filter("iso")
    def iso_filter(instant):
        return instant.isoformat() if instant else ""

    @app.context_processor
    def globals_():
        now = clock.now()
        tz = viewer_timezone()
        return {
            "now": now,
            "viewer_timezone": tz,
            "viewer_zone_label": zone_label(localize(now, tz), tz),
            "policy": get_policy(),
        }
