"""One form per account action; shape checks only, rules live in operations."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    RadioField,
    SelectChoice,
    StringField,
)
from wtforms.validators import EqualTo, InputRequired, Length, StopValidation, ValidationError

from skileez.core.forms import Form, TimezoneField
from skileez.policy import get_policy

PASSWORD_MIN = 10
PASSWORD_MAX = 1024


def strong_password(form, field):
    password = field.data or ""
    if len(password) < PASSWORD_MIN:
        raise ValidationError(f"Use at least {PASSWORD_MIN} characters.")
    if len(password) > PASSWORD_MAX:
        raise ValidationError(f"Use at most {PASSWORD_MAX} characters.")
    if password.strip() == "" or len(set(password)) < 3:
        raise ValidationError("That password is too easy to guess; mix more characters.")


class EmailInput(EmailField):
    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if self.data:
            self.data = self.data.strip()


# Top-level domains RFC 2606 and RFC 6761 reserve for testing and documentation
# (the demo accounts live at skileez.test). No mail is ever delivered there.
RESERVED_TEST_TLDS = ("test", "example", "invalid", "localhost")


def reserved_test_tld(address: str) -> str | None:
    tld = address.rpartition("@")[2].lower().rsplit(".", 1)[-1]
    return tld if tld in RESERVED_TEST_TLDS else None


def email_address_problem(address: str) -> str | None:
    """Why an address cannot be used, or None; reserved test domains only outside production.

    email-validator's ``test_environment`` admits only ``.test``; the other
    reserved names are checked as if they ended in ``.test``, so the rest of
    the address still gets every syntax check. Shared by the forms and the
    ``create-admin`` command so an address the site accepts is never refused there.
    """
    tld = reserved_test_tld(address)
    if tld and current_app.config["SKILEEZ_ENV"] == "production":
        return (f"Addresses ending in .{tld} are reserved for testing and never "
                "receive email. Use the address you read your email at.")
    if tld:
        address = address[:len(address) - len(tld)] + "test"
    try:
        validate_email(address, check_deliverability=False, test_environment=bool(tld))
    except EmailNotValidError:
        return "Enter a valid email address, like name@example.com."
    return None


def email_address(form, field):
    problem = email_address_problem(field.data or "")
    if problem:
        raise ValidationError(problem)


class NameField(StringField):
    """A person's name: one line (the base form removed line breaks), trimmed, bounded.

    The bound comes from the policy, so it is read when the form is used, not
    when this module is imported.
    """

    def __init__(self, label="Full name", validators=None, **kwargs):
        super().__init__(label, validators, **kwargs)

    def __call__(self, **kwargs):
        kwargs.setdefault("maxlength", get_policy().name_max_chars)
        return super().__call__(**kwargs)

    def pre_validate(self, form):
        self.data = (self.data or "").strip()
        if not self.data:
            raise StopValidation("Tell us your name.")
        limit = get_policy().name_max_chars
        if len(self.data) > limit:
            raise StopValidation(f"Keep your name to {limit} characters or fewer "
                                 f"(this one has {len(self.data)}).")


class RegisterForm(Form):
    name = NameField(render_kw={"autocomplete": "name"})
    email = EmailInput("Email", validators=[
        InputRequired("Enter your email address."),
        Length(max=254, message="That email address is too long."),
        email_address,
    ], render_kw={"autocomplete": "email"})
    password = PasswordField("Password", validators=[
        InputRequired("Choose a password."), strong_password,
    ], render_kw={"autocomplete": "new-password", "minlength": PASSWORD_MIN},
        description=f"At least {PASSWORD_MIN} characters.")
    confirm = PasswordField("Confirm password", validators=[
        InputRequired("Type the password again."),
        EqualTo("password", "The two passwords do not match."),
    ], render_kw={"autocomplete": "new-password"})
    role = RadioField("I want to", choices=[
        SelectChoice("student", "Learn — I'm a student"),
        SelectChoice("coach", "Teach — I'm a coach"),
    ], default="student", validators=[InputRequired("Choose student or coach.")])
    timezone = TimezoneField("Time zone", default="UTC",
                             render_kw={"data-detect-timezone": "1"},
                             description="Times are shown to you in this zone.")


class LoginForm(Form):
    email = EmailInput("Email", validators=[
        InputRequired("Enter your email address."), Length(max=254),
    ], render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[
        InputRequired("Enter your password."), Length(max=PASSWORD_MAX),
    ], render_kw={"autocomplete": "current-password"})
    remember = BooleanField("Keep me signed in for 30 days")


class ProfileForm(Form):
    name = NameField(render_kw={"autocomplete": "name"})
    timezone = TimezoneField("Time zone",
                             description="Every time on Skileez is shown in this zone.")


class ChangePasswordForm(Form):
    current_password = PasswordField("Current password", validators=[
        InputRequired("Enter your current password."), Length(max=PASSWORD_MAX),
    ], render_kw={"autocomplete": "current-password"})
    new_password = PasswordField("New password", validators=[
        InputRequired("Choose a new password."), strong_password,
    ], render_kw={"autocomplete": "new-password"},
        description=f"At least {PASSWORD_MIN} characters.")
    confirm = PasswordField("Confirm new password", validators=[
        InputRequired("Type the new password again."),
        EqualTo("new_password", "The two passwords do not match."),
    ], render_kw={"autocomplete": "new-password"})


class ConfirmForm(Form):
    """A bare form for POST buttons: carries only the CSRF token."""
