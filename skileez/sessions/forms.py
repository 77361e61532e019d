from __future__ import annotations

from wtforms import BooleanField, HiddenField, RadioField, SelectChoice, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from skileez.core.forms import Form, PolicyLength


def _notes_length() -> PolicyLength:
    return PolicyLength("completion_notes_max_chars", "Keep notes under {max} characters.")


class BookForm(Form):
    """Carries the chosen start (UTC, ISO 8601) from the confirmation page."""

    starts_at = HiddenField()


class RescheduleForm(Form):
    new_start = RadioField("New time", validate_choice=False,
                           validators=[InputRequired("Choose one of the open times.")])
    reason = TextAreaField("Why do you need to move it?", validators=[
        PolicyLength("reschedule_reason_max_chars", "Give a reason of {min} to {max} characters.",
                     min_setting="reschedule_reason_min_chars", required=True),
    ], render_kw={"rows": 3})


class AnswerRescheduleForm(Form):
    new_start = RadioField("Time", validate_choice=False, validators=[Optional()])
    note = TextAreaField("Note (optional)", validators=[
        Length(max=500, message="Keep the note under 500 characters.")], render_kw={"rows": 2})


class CancelForm(Form):
    reason = TextAreaField("Reason (optional, the other person sees it)", validators=[
        Length(max=500, message="Keep the reason under 500 characters.")], render_kw={"rows": 2})


class CompleteForm(Form):
    notes = TextAreaField("Your notes (optional)", validators=[_notes_length()],
        render_kw={"rows": 4},
        description="What you covered, homework, what to do next time. Only the two of you "
                    "see them.")


class NotesForm(Form):
    notes = TextAreaField("Your notes", validators=[
        InputRequired("Write your notes."), _notes_length()], render_kw={"rows": 4})


class MissedForm(Form):
    missed_by = RadioField("Who did not attend?", choices=[
        SelectChoice("student", "The student"), SelectChoice("coach", "The coach")],
        validators=[InputRequired("Say who did not attend.")])
    reason = TextAreaField("What happened?", validators=[
        InputRequired("Say what happened."),
        Length(max=500, message="Keep it under 500 characters.")], render_kw={"rows": 2})


class RatingForm(Form):
    stars = RadioField("Rating", choices=[SelectChoice(str(n), "★" * n) for n in range(5, 0, -1)],
                       validators=[InputRequired("Choose from 1 to 5 stars.")])
    feedback = TextAreaField("Feedback (optional)", validators=[
        PolicyLength("rating_feedback_max_chars", "Keep feedback under {max} characters.")],
        render_kw={"rows": 4})
    public = BooleanField("Show my feedback on the coach's public profile")
    would_recommend = BooleanField("I would recommend this coach", default=True)
    tags = StringField("Tags (optional)", validators=[Length(max=400)],
                       description="Up to 10, separated by commas: patient, clear, fun.")

    def stars_value(self) -> int:
        return int(self.stars.data)


__all__ = ["AnswerRescheduleForm", "BookForm", "CancelForm", "CompleteForm", "MissedForm",
           "NotesForm", "RatingForm", "RescheduleForm"]


class EndContractForm(Form):
    """The reason both people read, and the fingerprint of the preview being confirmed."""

    reason = TextAreaField("Why are you ending the contract? (both of you see it)", validators=[
        InputRequired("Say why you are ending the contract; both of you will see it."),
        Length(max=500, message="Keep the reason under 500 characters.")],
        render_kw={"rows": 3, "maxlength": 500})
    fingerprint = HiddenField()
