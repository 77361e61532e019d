from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import Length


class AccountStatusForm(FlaskForm):
    reason = TextAreaField("Reason (kept in the audit log)", validators=[
        Length(max=500, message="Keep the reason under 500 characters."),
    ], render_kw={"rows": 3})
