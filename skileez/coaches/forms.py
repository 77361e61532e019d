"""Forms for what coaches publish. Shape checks here; rules in operations."""

from __future__ import annotations

from datetime import datetime

from wtforms import (
    DateTimeLocalField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from skileez.coaches.models import WEEKDAYS
from skileez.core.forms import Form
from skileez.core.money import SUPPORTED_CURRENCIES, MoneyError, parse_amount


class ProfileForm(Form):
    headline = StringField("Headline", validators=[
        InputRequired("Write a one-line headline students will see first."),
        Length(max=120, message="Keep the headline under 120 characters."),
    ], description="For example: “Conversational Spanish for busy professionals”.")
    bio = TextAreaField("About you", validators=[
        Length(max=2000, message="Keep your bio under 2000 characters."),
    ], render_kw={"rows": 6})
    subjects = StringField("Subjects", validators=[
        Length(max=600, message="That is too many subjects."),
    ], description="Separate with commas, up to 10: spanish, grammar, exam preparation.")
    buffer_minutes = IntegerField("Buffer between sessions (minutes)", default=15, validators=[
        InputRequired("Enter a buffer from 0 to 60 minutes."),
        NumberRange(0, 60, "Choose a buffer from 0 to 60 minutes."),
    ])
    min_notice_hours = IntegerField("Minimum booking notice (hours)", default=12, validators=[
        InputRequired("Enter a notice from 0 to 168 hours."),
        NumberRange(0, 168, "Choose a notice from 0 to 168 hours (one week)."),
    ])
    horizon_days = IntegerField("Booking horizon (days)", default=60, validators=[
        InputRequired("Enter a horizon from 1 to 365 days."),
        NumberRange(1, 365, "Choose a horizon from 1 to 365 days."),
    ])


class OfferingForm(Form):
    title = StringField("Title", validators=[
        InputRequired("Give the offering a title."),
        Length(max=120, message="Keep the title under 120 characters."),
    ])
    description = TextAreaField("Description", validators=[
        Length(max=2000, message="Keep the description under 2000 characters."),
    ], render_kw={"rows": 4})
    duration_minutes = IntegerField("Duration (minutes)", default=60, validators=[
        InputRequired("Enter a duration from 15 to 240 minutes."),
        NumberRange(15, 240, "Choose a duration from 15 to 240 minutes."),
    ], render_kw={"step": 5, "min": 15, "max": 240})
    currency = SelectField("Currency", choices=[SelectChoice(c) for c in SUPPORTED_CURRENCIES],
                           default="EUR")
    price = StringField("Price per session", validators=[
        InputRequired("Enter a price, such as 49.90."),
    ], render_kw={"inputmode": "decimal"})

    def validate_duration_minutes(self, field):
        if field.data is not None and field.data % 5:
            raise ValidationError("Use 5-minute steps (for example 45 or 50).")

    def validate_price(self, field):
        try:
            self.price_minor = parse_amount(field.data or "", self.currency.data or "EUR")
        except MoneyError as error:
            raise ValidationError(str(error)) from None


def _minutes(text: str) -> int | None:
    try:
        hours, minutes = text.strip().split(":")
        value = int(hours) * 60 + int(minutes)
    except (ValueError, AttributeError):
        return None
    if not 0 <= int(minutes) < 60 or not 0 <= value <= 1440:
        return None
    return value


class RuleForm(Form):
    weekday = SelectField("Day", choices=[SelectChoice(str(i), day)
                                          for i, day in enumerate(WEEKDAYS)], default="0")
    start = StringField("From", default="09:00", validators=[InputRequired("Enter a start.")],
                        render_kw={"type": "time", "step": 300})
    end = StringField("To", default="17:00", validators=[InputRequired("Enter an end.")],
                      render_kw={"type": "time", "step": 300},
                      description="Use 00:00 for midnight at the end of the day.")

    def validate_start(self, field):
        self.start_minute = _minutes(field.data)
        if self.start_minute is None or self.start_minute == 1440:
            raise ValidationError("Enter a time such as 09:00.")

    def validate_end(self, field):
        value = _minutes(field.data)
        if value == 0:
            value = 1440  # "until midnight"
        if value is None:
            raise ValidationError("Enter a time such as 17:00.")
        self.end_minute = value

    def validate_weekday(self, field):
        if field.data not in {str(i) for i in range(7)}:
            raise ValidationError("Choose a day of the week.")


class TimeOffForm(Form):
    starts_at = DateTimeLocalField("From", format="%Y-%m-%dT%H:%M", validators=[
        InputRequired("Enter when the time off starts.")])
    ends_at = DateTimeLocalField("Until", format="%Y-%m-%dT%H:%M", validators=[
        InputRequired("Enter when the time off ends.")])
    note = StringField("Note (only you see it)", validators=[
        Optional(), Length(max=200, message="Keep the note under 200 characters.")])

    def validate_starts_at(self, field):
        _reasonable_year(field)

    def validate_ends_at(self, field):
        _reasonable_year(field)
        if isinstance(field.data, datetime) and isinstance(self.starts_at.data, datetime) \
                and field.data <= self.starts_at.data:
            raise ValidationError("The end must be after the start.")


def _reasonable_year(field) -> None:
    """Years like 0001 or 9999 are typos, and cannot be converted between time zones."""
    if isinstance(field.data, datetime) and not 2000 <= field.data.year <= 2100:
        raise ValidationError("Enter a date between the years 2000 and 2100.")
