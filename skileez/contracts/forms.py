from __future__ import annotations

from wtforms import IntegerField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange

from skileez.core.forms import Form, PolicyLength


class ProposalForm(Form):
    sessions_count = IntegerField("Number of sessions", default=5, validators=[
        InputRequired("Enter how many sessions you want, from 1 to 50."),
        NumberRange(1, 50, "Choose between 1 and 50 sessions."),
    ], render_kw={"min": 1, "max": 50})
    message = TextAreaField("Message to the coach", validators=[
        PolicyLength("proposal_message_max_chars", "Keep the message under {max} characters."),
    ], render_kw={"rows": 4},
        description="What you want to work on, your level, when you are usually free.")


class ResponseForm(Form):
    response_message = TextAreaField("Note to the student (optional)", validators=[
        Length(max=1000, message="Keep the note under 1000 characters."),
    ], render_kw={"rows": 3, "maxlength": 1000})
