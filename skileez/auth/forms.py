"""One form per account action; shape checks only, rules live in operations."""

from __future__ import annotations

from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    RadioField,
    SelectChoice,
    StringField,
)
from wtforms.validators import Email, EqualTo, InputRequired, Length, ValidationError

from skileez.core.forms import Form, TimezoneField

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


class RegisterForm(Form):
    name = StringField("Full name", validators=[
        InputRequired("Tell us your name."),
        Length(max=120, message="Keep your name under 120 characters."),
    ], render_kw={"autocomplete": "name"})
    email = EmailInput("Email", validators=[
        InputRequired("Enter your email address."),
        Length(max=254, message="That email address is too long."),
        Email("Enter a valid email address, like name@example.com.",
              check_deliverability=False),
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

    def validate_name(self, field):
        field.data = (field.data or "").strip()
        if not field.data:
            raise ValidationError("Tell us your name.")


class LoginForm(Form):
    email = EmailInput("Email", validators=[
        InputRequired("Enter your email address."), Length(max=254),
    ], render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[
        InputRequired("Enter your password."), Length(max=PASSWORD_MAX),
    ], render_kw={"autocomplete": "current-password"})
    remember = BooleanField("Keep me signed in for 30 days")


class ProfileForm(Form):
    name = StringField("Full name", validators=[
        InputRequired("Tell us your name."),
        Length(max=120, message="Keep your name under 120 characters."),
    ])
    timezone = TimezoneField("Time zone",
                             description="Every time on Skileez is shown in this zone.")

    def validate_name(self, field):
        field.data = (field.data or "").strip()
        if not field.data:
            raise ValidationError("Tell us your name.")


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
