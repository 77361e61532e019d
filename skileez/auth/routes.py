"""Sign-up, sign-in, sign-out and the profile pages."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import (
    Blueprint,
    current_app,
    flash,
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
from skileez.core.forms import attach_error
from skileez.core.timezones import format_local
from skileez.extensions import db, limiter

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


def _form_status(form) -> int:
    return 422 if form.errors else 200


@bp.route("/register", methods=["GET", "POST"])
@public
@_throttle_registration
def register():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = operations.create_user(name=form.name.data, email=form.email.data,
                                          password=form.password.data,
                                          role=form.role.data, timezone=form.timezone.data)
            db.session.commit()
        except DomainError as error:
            db.session.rollback()
            attach_error(form, error)
        else:
            g.account_created = True
            start_session(user, remember=False)
            flash(f"Welcome to Skileez, {user.name}! Your account is ready.", "success")
            return redirect(url_for("dashboard.index"), code=303)
    return render_template("auth/register.html", form=form), _form_status(form)


@bp.route("/login", methods=["GET", "POST"])
@public
@_throttle_login
def login():
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for("dashboard.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = operations.authenticate(form.email.data, form.password.data)
        except DomainError as error:
            db.session.rollback()
            g.login_failed = True
            form.form_errors.append(error.message)
        else:
            if user is None:
                g.login_failed = True
                form.form_errors.append("That email and password do not match an account. "
                                        "Check both and try again.")
            else:
                db.session.commit()
                start_session(user, remember=bool(form.remember.data))
                flash(f"Welcome back, {user.name}.", "success")
                target = safe_redirect_target(request.args.get("next"),
                                              url_for("dashboard.index"))
                return redirect(target, code=303)
    elif request.method == "POST":
        g.login_failed = True
    return render_template("auth/login.html", form=form), _form_status(form)


def _end_every_session() -> None:
    """Sign out here and invalidate every copy of this account's cookies.

    The session and remember cookies carry the account's session token, so a
    copy taken before sign-out (another device, a stolen cookie) opens nothing
    once the token has rotated. Clearing first, then ``logout_user``, lets
    Flask-Login still delete this browser's remember cookie.
    """
    operations.sign_out_everywhere(current_user._get_current_object())
    db.session.commit()
    session.clear()
    logout_user()


@bp.post("/logout")
def logout():
    _end_every_session()
    flash("You have been signed out.", "info")
    return redirect(url_for("core.home"), code=303)


@bp.post("/profile/sign-out-everywhere")
def sign_out_everywhere():
    _end_every_session()
    flash("You have been signed out on every device and browser, including this one. "
          "Sign in again to continue here.", "info")
    return redirect(url_for("auth.login"), code=303)


@bp.route("/profile", methods=["GET", "POST"])
def profile():
    form = ProfileForm(obj=current_user)
    password_form = ChangePasswordForm(prefix="pw")
    if form.validate_on_submit():
        try:
            operations.update_profile(current_user, name=form.name.data,
                                      timezone=form.timezone.data)
            db.session.commit()
        except DomainError as error:
            db.session.rollback()
            attach_error(form, error)
        else:
            flash("Your profile has been saved. Times are now shown in "
                  f"{current_user.timezone.replace('_', ' ')}.", "success")
            return redirect(url_for("auth.profile"), code=303)
    return render_template("auth/profile.html", form=form, password_form=password_form), \
        _form_status(form)


@bp.route("/profile/password", methods=["GET", "POST"])
def change_password():
    form = ProfileForm(obj=current_user, formdata=None)
    password_form = ChangePasswordForm(prefix="pw")
    if password_form.validate_on_submit():
        try:
            operations.change_password(current_user,
                                       current_password=password_form.current_password.data,
                                       new_password=password_form.new_password.data)
            db.session.commit()
        except DomainError as error:
            db.session.rollback()
            attach_error(password_form, error)
        else:
            # The session token rotated; sign this browser in again with the new one.
            start_session(current_user._get_current_object(), remember=False)
            flash("Your password has been changed. Other devices have been signed out.",
                  "success")
            return redirect(url_for("auth.profile"), code=303)
    return render_template("auth/profile.html", form=form, password_form=password_form,
                           password_open=True), _form_status(password_form)
