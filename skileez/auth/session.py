"""Flask-Login wiring: who is signed in, and what happens when nobody is."""

from __future__ import annotations

import re

from flask import Flask, flash, redirect, request, session, url_for
from flask_login import LoginManager, login_user
from sqlalchemy import select

from skileez.auth.models import User
from skileez.core.http import is_htmx
from skileez.extensions import db, login_manager


def init_login(app: Flask, login_manager: LoginManager) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(session_token: str):
        """Look users up by their rotating token; deactivated accounts are signed out."""
        user = db.session.scalar(select(User).where(User.session_token == session_token))
        if user is None or not user.is_active:
            return None
        return user

    @login_manager.unauthorized_handler
    def unauthorized():
        target = url_for("auth.login", next=_safe_next(request.full_path))
        if is_htmx():
            response = app.response_class(status=401)
            response.headers["HX-Redirect"] = target
            return response
        flash("Please sign in to continue.", "info")
        return redirect(target)


def signed_in_token() -> str | None:
    """The sign-in token this request's session holds, when Flask-Login would take it as it
    is: for an answer that checks it in a query of its own instead of loading the person
    (which must also require an active account, as ``load_user`` does). None whenever
    Flask-Login would do more than look the token up (a session made in another browser,
    a sign-in carried by the remember cookie only): then Flask-Login decides, as always.
    """
    token = session.get("_user_id")
    if not token or session.get("_id") != login_manager._session_identifier_generator():
        return None
    return token


def start_session(user, remember: bool) -> None:
    """Sign in on a fresh session so a session id planted before sign-in is worthless."""
    session.clear()
    login_user(user, remember=remember, fresh=True)
    session.permanent = remember


def _safe_next(path: str) -> str:
    return safe_redirect_target(path.rstrip("?"), "/")


# What a browser removes from a URL before parsing it (WHATWG URL standard):
# C0 controls and spaces at either end, and every tab, CR and LF inside.
_URL_EDGES = "".join(chr(c) for c in range(0x21))
_URL_INSIDE = re.compile(r"[\t\n\r]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def safe_redirect_target(target: str | None, default: str) -> str:
    """Only follow ``next`` to a path on this site, judged as the browser will read it.

    ``/<TAB>/evil.example`` is ``//evil.example`` to a browser (another site), so the
    check runs on the value after the browser's own clean-up. Whatever is left
    must be a plain path: one leading slash, no backslash (browsers read it as a
    slash), no control character (a newline would also break the header).
    """
    if not target:
        return default
    target = _URL_INSIDE.sub("", target.strip(_URL_EDGES))
    if not target.startswith("/") or target.startswith("//") or _UNSAFE.search(target):
        return default
    return target
