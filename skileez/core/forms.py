"""Form pieces shared by several domains."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, ValidationError

from skileez.core.timezones import all_timezones, is_valid_timezone


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


def _strip_nul(value):
    """Browsers can send NUL characters; PostgreSQL text cannot store them."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    return value


class Form(FlaskForm):
    """Base form for every Skileez form: CSRF from Flask-WTF, and input PostgreSQL can store."""

    class Meta:
        def bind_field(self, form, unbound_field, options):
            filters = (_strip_nul, *unbound_field.kwargs.get("filters", ()))
            return unbound_field.bind(form=form, filters=filters, **options)


def attach_error(form, error) -> None:
    """Show a rule's message beside the field it names, or above the form."""
    field = getattr(form, error.field, None) if error.field else None
    if field is not None:
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)
