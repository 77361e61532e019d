"""Default-deny access: every blueprint requires sign-in unless a view opts out.

Copied from newdle's habit: forgetting a decorator should lock a page, not open it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import Blueprint, Response, abort, current_app, request
from flask_login import current_user

from skileez.extensions import login_manager


def public(view: Callable) -> Callable:
    """Mark a view as reachable without signing in."""
    view.skileez_public = True  # type: ignore[attr-defined]
    return view


def is_public_endpoint(endpoint: str | None) -> bool:
    if endpoint is None or endpoint == "static" or endpoint.endswith(".static"):
        return True
    view = current_app.view_functions.get(endpoint)
    return bool(getattr(view, "skileez_public", False))


def answered_before_sign_in(answer: Callable[..., Response | None]) -> Callable[[Callable],
                                                                            Callable]:
    """For a view asked so often that loading the signed-in person is most of its cost (a
    poll): ``answer`` runs first, with the view's arguments, and may answer on its own from
    a query that checks the sign-in itself (``auth.session.signed_in_token``), say "not
    modified". When it returns None the request goes on as any other: sign-in required,
    then the view, which must answer the same way for everyone ``answer`` let through.
    """

    def decorate(view: Callable) -> Callable:
        view.skileez_early_answer = answer  # type: ignore[attr-defined]
        return view

    return decorate


def require_login(bp: Blueprint) -> Blueprint:
    @bp.before_request
    def _require_login():
        if is_public_endpoint(request.endpoint):
            return None
        view = current_app.view_functions.get(request.endpoint)
        early = getattr(view, "skileez_early_answer", None)
        if early is not None:
            response = early(**(request.view_args or {}))
            if response is not None:
                return response
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        return None

    return bp


def require_role(bp: Blueprint, role: str) -> Blueprint:
    """Signed-in users without ``role`` get 403; anonymous ones are sent to sign in."""

    @bp.before_request
    def _require_role():
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if current_user.role != role:
            abort(403)
        return None

    return bp


def role_required(role: str) -> Callable[[Callable], Callable]:
    """For views inside a login-required blueprint that only one role may use (403 otherwise)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role != role:
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def role_route(bp: Blueprint, role: str) -> Callable[..., Callable[[Callable], Callable]]:
    """``bp.route`` for the pages only ``role`` may use: the route and its check are one decorator.

    A blueprint that holds public pages and one role's own pages (the coach
    directory and the coach's availability) keeps its endpoint names this way;
    a nested blueprint would rename every ``coaches.x`` to ``coaches.me.x``. The
    view is returned as it was, so two rules can share one view function.
    """

    def route(rule: str, **options) -> Callable[[Callable], Callable]:
        def register(view: Callable) -> Callable:
            bp.route(rule, **options)(role_required(role)(view))
            return view

        return register

    return route
