"""Sign-up, sign-in, sign-out and the profile pages."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, logout_user

from skileez import clock
from skileez.auth import operations
from skileez.auth.forms import (
    ChangePasswordForm,
    LoginForm,
    ProfileForm,
    RegisterForm,
)
from skileez.auth.models import User
from skileez.auth.session import safe_redirect_target, start_session
from skileez.core.access import public, require_login
from skileez.core.errors import DomainError
from skileez.core.timezones import format_local
from skileez.core.unit_of_work import see_other, submit, transaction
from skileez.extensions import limiter

bp = require_login(Blueprint("auth", __name__))


def _login_account_key() -> str:
    # The same spelling the account is looked up by: a NUL, a tab or a capital
    # letter must not buy a fresh counter for the same account.
    return "account:" + User.normalise_email(request.form.get("email") or "")[:254]


def _client_address_key() -> str:
    return "address:" + (request.remote_addr or "unknown")


def _login_failed(response) -> bool:
    return bool(g.get("login_failed"))


def _login_limit() -> str:
    return current_app.config["LOGIN_FAILURE_LIMIT"]


def _registration_limit() -> str:
    return current_app.config["REGISTRATION_LIMIT"]


def _account_created(response) -> bool:
    return bool(g.get("account_created"))


def _when_again(limit) -> str:
    """"14:05 UTC (in about 12 minutes)": when a throttled person may try again."""
    reset = datetime.fromtimestamp(limit.reset_at, UTC)
    return (f"{format_local(reset, _viewer_tz(), 'time')} "
            f"({_minutes_until(reset, clock.now())})")


def _throttled_message(limit) -> None:
    g.rate_limit_message = (
        "Too many failed sign-in attempts. For your security, signing in is paused "
        f"until {_when_again(limit)}. Then try again, or reset your password."
    )
    return None


def _registration_throttled_message(limit) -> None:
    g.rate_limit_message = (
        "Too many accounts have been created from your network recently, so sign-up is "
        f"paused here until {_when_again(limit)}. Then try again; if you already have "
        "an account, sign in instead."
    )
    return None


def _viewer_tz() -> str:
    return current_user.timezone if current_user.is_authenticated else "UTC"


def _minutes_until(reset, now) -> str:
    minutes = max(1, int((reset - now).total_seconds() // 60) + 1)
    return f"in about {minutes} minute{'s' if minutes != 1 else ''}"


def _throttle_login(view):
    """Count failed sign-ins per account and per address; successes cost nothing."""
    for name, key in (("account", _login_account_key), ("address", _client_address_key)):
        view = limiter.limit(_login_limit, key_func=key, methods=["POST"],
                             deduct_when=_login_failed, on_breach=_throttled_message,
                             scope=f"login-{name}")(view)
    return view


def _throttle_registration(view):
    """Count accounts created per address: typos cost nothing, each new account does.

    A new account costs an Argon2 hash (64 MiB) and a row; without a bound one
    address could create them as fast as the server hashes.
    """
    return limiter.limit(_registration_limit, key_func=_client_address_key,
                         methods=["POST"], deduct_when=_account_created,
                         on_breach=_registration_throttled_message,
                         scope="register-address")(view)


NO_MATCH = "That email and password do not match an account. Check both and try again."


@bp.route("/register", methods=["GET", "POST"])
@public
@_throttle_registration
def register():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = RegisterForm()

    def welcome(user: User):
        g.account_created = True
        start_session(user, remember=False)
        return see_other(url_for("dashboard.index"),
                         f"Welcome to Skileez, {user.name}! Your account is ready.")

    return submit(form, lambda: operations.create_user(
        name=form.name.data, email=form.email.data, password=form.password.data,
        role=form.role.data, timezone=form.timezone.data),
        page=lambda: render_template("auth/register.html", form=form), done=welcome)


@bp.route("/login", methods=["GET", "POST"])
@public
@_throttle_login
def login():
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for("dashboard.index"))
    form = LoginForm()

    def sign_in() -> User:
        user = operations.authenticate(form.email.data, form.password.data)
        if user is None:
            raise DomainError(NO_MATCH)
        return user

    def page() -> str:
        if request.method == "POST":
            g.login_failed = True  # every refused sign-in counts against the throttle
        return render_template("auth/login.html", form=form)

    def welcome_back(user: User):
        start_session(user, remember=bool(form.remember.data))
        return see_other(safe_redirect_target(request.args.get("next"),
                                              url_for("dashboard.index")),
                         f"Welcome back, {user.name}.")

    return submit(form, sign_in, page=page, done=welcome_back)


def _end_every_session() -> None:
    """Sign out here and invalidate every copy of this account's cookies.

    The session and remember cookies carry the account's session token, so a
    copy taken before sign-out (another device, a stolen cookie) opens nothing
    once the token has rotated. Clearing first, then ``logout_user``, lets
    Flask-Login still delete this browser's remember cookie.
    """
    with transaction():
        operations.sign_out_everywhere(current_user._get_current_object())
    session.clear()
    logout_user()


@bp.post("/logout")
def logout():
    _end_every_session()
    return see_other(url_for("core.home"), "You have been signed out.", "info")


@bp.post("/profile/sign-out-everywhere")
def sign_out_everywhere():
    _end_every_session()
    return see_other(url_for("auth.login"),
                     "You have been signed out on every device and browser, including this "
                     "one. Sign in again to continue here.", "info")


def _profile_page(form, password_form, **context) -> str:
    return render_template("auth/profile.html", form=form, password_form=password_form,
                           **context)


@bp.route("/profile", methods=["GET", "POST"])
def profile():
    form = ProfileForm(obj=current_user)
    password_form = ChangePasswordForm(prefix="pw")
    return submit(form, lambda: operations.update_profile(current_user, name=form.name.data,
                                                          timezone=form.timezone.data),
                  page=lambda: _profile_page(form, password_form),
                  done=lambda _: see_other(url_for("auth.profile"),
                                           "Your profile has been saved. Times are now shown "
                                           f"in {current_user.timezone.replace('_', ' ')}."))


@bp.route("/profile/password", methods=["GET", "POST"])
def change_password():
    form = ProfileForm(obj=current_user, formdata=None)
    password_form = ChangePasswordForm(prefix="pw")

    def signed_in_again(_):
        # The session token rotated; sign this browser in again with the new one.
        start_session(current_user._get_current_object(), remember=False)
        return see_other(url_for("auth.profile"),
                         "Your password has been changed. Other devices have been signed out.")

    return submit(password_form, lambda: operations.change_password(
        current_user, current_password=password_form.current_password.data,
        new_password=password_form.new_password.data),
        page=lambda: _profile_page(form, password_form, password_open=True),
        done=signed_in_again)
