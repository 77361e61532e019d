"""Form pieces shared by several domains."""

from __future__ import annotations

import re

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from werkzeug.datastructures import ImmutableMultiDict
from wtforms import (
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import StopValidation

from skileez.core.timezones import all_timezones, is_valid_timezone
from skileez.policy import get_policy


class PolicyLength:
    """A length limit that is a policy setting, so the form checks (and its message and
    the field's ``maxlength`` state) the value in force, not the default.

    ``message`` may name ``{min}`` and ``{max}``. The bounds are read when a form is
    built (``field_flags``) and when it is validated, inside the app, never at import.
    With ``required``, an empty field gets the same message (as ``InputRequired``
    would, whose message cannot name a bound read later).
    """

    def __init__(self, max_setting: str, message: str, *, min_setting: str | None = None,
                 required: bool = False):
        self.max_setting = max_setting
        self.min_setting = min_setting
        self.message = message
        self.required = required

    def bounds(self) -> tuple[int, int]:
        policy = get_policy()
        low = getattr(policy, self.min_setting) if self.min_setting else 0
        return low, getattr(policy, self.max_setting)

    @property
    def field_flags(self) -> dict:
        low, high = self.bounds()
        flags = {"maxlength": high}
        if self.min_setting:
            flags["minlength"] = low
        if self.required:
            flags["required"] = True
        return flags

    def __call__(self, form, field) -> None:
        low, high = self.bounds()
        message = self.message.format(min=low, max=high)
        if self.required and not (field.raw_data and field.raw_data[0]):
            field.errors[:] = []
            raise StopValidation(message)
        if not low <= len(field.data or "") <= high:
            raise ValidationError(message)


def timezone_choices() -> list[SelectChoice]:
    """Every zone, grouped by region ("Europe", "America"…) so the list can be scanned."""
    return [SelectChoice(name, name.replace("_", " "),
                         optgroup=name.split("/", 1)[0] if "/" in name else "Universal")
            for name in all_timezones()]


class TimezoneField(SelectField):
    """An IANA time zone chosen from the full list.

    ``data-detect-timezone`` lets static/js/app.js preselect the browser's own
    zone on a fresh form; a value the person chose or submitted is never
    overwritten.
    """

    def __init__(self, label=None, validators=None, **kwargs):
        render_kw = kwargs.pop("render_kw", {}) or {}
        render_kw.setdefault("autocomplete", "off")
        super().__init__(label, validators, choices=timezone_choices(),
                         validate_choice=False, render_kw=render_kw, **kwargs)

    def pre_validate(self, form):
        if not is_valid_timezone(self.data):
            raise ValidationError("Choose a time zone from the list, such as Europe/Berlin.")


# Line breaks and tabs in a one-line field become a space ("Evil\r\nBcc: x" reads
# "Evil Bcc: x"); every other C0/C1 control character (NUL included) is dropped.
_LINE_BREAKS = re.compile("[\t\n\r\v\f\x85\u2028\u2029]+")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# In a multi-line field newlines and tabs are content; the other controls are not.
_CONTROLS_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def single_line(value):
    """Text safe to show in a table row, a page title or an email header.

    Browsers let people paste anything into a text input, and a CR/LF that
    reaches an email subject makes the message unsendable; PostgreSQL text
    cannot store NUL at all.
    """
    if not isinstance(value, str):
        return value
    return _CONTROLS.sub("", _LINE_BREAKS.sub(" ", value))


def multi_line(value):
    """Like ``single_line`` but keeps the newlines and tabs a textarea legitimately holds.

    Browsers submit a textarea's line breaks as CR LF (HTML's form encoding), so
    they are stored as plain LF: otherwise every save of an unchanged text would
    change it, and CRs would reach plain-text emails.
    """
    if not isinstance(value, str):
        return value
    return _CONTROLS_BUT_LINES.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def _strip_nul(value):
    """Browsers can send NUL characters; PostgreSQL text cannot store them."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    return value


def _input_filter(field_class):
    """The cleaning a field's kind of input needs before any validator sees it.

    Passwords keep every character but NUL (as they always have): changing
    what counts as a password would lock out whoever chose one with a tab.
    """
    if issubclass(field_class, TextAreaField):
        return multi_line
    if issubclass(field_class, PasswordField):
        return _strip_nul
    if issubclass(field_class, StringField):
        return single_line
    return _strip_nul


class Form(FlaskForm):
    """Base form for every Skileez form: CSRF from Flask-WTF, and input PostgreSQL can store.

    Every text input is cleaned here, once, so no form can forget to: one-line
    fields lose control characters, multi-line ones everything but newlines and tabs.
    """

    class Meta:
        def wrap_formdata(self, form, formdata):
            """Read form fields from form-encoded bodies only.

            Flask-WTF falls back to the JSON body when there is no form body and
            crashes on JSON that is not an object (``"pm_x"``, ``1``). No Skileez
            form is posted as JSON, so such a body simply carries no fields and the
            form answers with its usual messages.
            """
            if formdata is _Auto and not request.files and not request.form and request.is_json:
                return ImmutableMultiDict()
            return super().wrap_formdata(form, formdata)

        def bind_field(self, form, unbound_field, options):
            filters = (_input_filter(unbound_field.field_class),
                       *unbound_field.kwargs.get("filters", ()))
            return unbound_field.bind(form=form, filters=filters, **options)


def attach_error(form, error) -> None:
    """Show a rule's message beside the field it names, or above the form."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)
