from __future__ import annotations

from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, Regexp

from skileez.core.forms import Form


class DisputeForm(Form):
    reason = TextAreaField("What went wrong?", validators=[
        InputRequired("Tell us what went wrong."),
        Length(min=10, max=1000, message="Write between 10 and 1000 characters."),
    ], render_kw={"rows": 5, "maxlength": 1000})


class DisputeAnswerForm(Form):
    """The coach's side of a dispute: read by the admin who decides, and by the student."""

    answer = TextAreaField("Your side of what happened", validators=[
        InputRequired("Write your side of what happened."),
        Length(max=2000, message="Keep your answer to 2000 characters or fewer."),
    ], render_kw={"rows": 6, "maxlength": 2000},
        description="The admin reads this beside the student's reason before deciding; "
                    "the student sees it too. You can edit it until the decision.")


class AdminMoneyForm(Form):
    """Manual release or refund: an admin always says why."""

    amount = StringField("Amount to refund", validators=[Optional()],
                         render_kw={"inputmode": "decimal"},
                         description="Leave empty to refund everything still held.")
    reason = TextAreaField("Reason (kept in the audit log and told to the student)", validators=[
        InputRequired("Give a reason."),
        Length(min=5, max=500, message="Write between 5 and 500 characters."),
    ], render_kw={"rows": 2})


class ResolveDisputeForm(Form):
    resolution = RadioField("Decision", choices=[
        SelectChoice("release", "Release the payment to the coach"),
        SelectChoice("refund", "Refund the student in full"),
        SelectChoice("partial", "Refund part, release the rest"),
    ], validators=[InputRequired("Choose a decision.")])
    refund_amount = StringField("Amount to refund (for a partial refund)",
                                validators=[Optional()], render_kw={"inputmode": "decimal"})
    # Both people are told the decision with this reason, so it is never left empty.
    note = TextAreaField("Reason, sent to both people", validators=[
        InputRequired("Give the reason for your decision; both people are told it."),
        Length(max=1000, message="Keep the reason under 1000 characters.")],
        render_kw={"rows": 3})
    # Set by the confirmation step, after the admin has read what each person gets.
    confirmed = HiddenField()


class ResolveDifferenceForm(Form):
    """An admin closes a difference with Stripe: what they did is kept in the audit log."""

    note = TextAreaField("What you did about it (kept in the audit log)", validators=[
        InputRequired("Say what you did about this difference."),
        Length(min=5, max=500, message="Write between 5 and 500 characters."),
    ], render_kw={"rows": 2, "maxlength": 500})


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class PatternForm(Form):
    """A weekly pattern for the rest of a contract: read from the query to preview it, and
    posted (with the chosen starts) to book it."""

    weekday = SelectField("Every", coerce=int,
                          choices=[SelectChoice(n, day) for n, day in enumerate(WEEKDAYS)],
                          validators=[InputRequired("Choose a weekday.")])
    at = StringField("At (your time)", validators=[
        InputRequired("Give a time such as 18:00."),
        Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", message="Give a time such as 18:00.")],
        render_kw={"type": "time", "step": 60})
    first_day = DateField("Starting on or after", validators=[
        InputRequired("Choose the first date.")])
    count = IntegerField("Sessions", validators=[
        InputRequired("Say how many sessions to book."),
        NumberRange(min=1, max=50, message="Book from 1 to 50 sessions.")])
    starts = SelectMultipleField("Times to book", validate_choice=False,
                                 validators=[Optional()])

    @property
    def minute_of_day(self) -> int:
        hours, minutes = self.at.data.split(":")
        return int(hours) * 60 + int(minutes)


# --- card disputes at the bank and payout reversals (issue 11) -------------------------------

class DisputeEvidenceForm(Form):
    """What an admin sends the cardholder's bank, through Stripe, once."""

    text = TextAreaField("What the bank should know", validators=[
        InputRequired("Write what the bank should know."),
        Length(max=15000, message="Keep it under 15000 characters."),
    ], render_kw={"rows": 6, "maxlength": 15000},
        description="Sent once, with the session's record if ticked; it cannot be changed "
                    "afterwards.")
    include_summary = BooleanField("Attach the session's record (times, who joined when, "
                                   "notes, timeline)", default=True)


class ReversePayoutForm(Form):
    """An admin takes a coach's transfer back; the reason goes to the audit log and the coach."""

    reason = TextAreaField("Reason (kept in the audit log and told to the coach)", validators=[
        InputRequired("Give a reason."),
        Length(min=5, max=500, message="Write between 5 and 500 characters."),
    ], render_kw={"rows": 2})
