from __future__ import annotations

from wtforms import TextAreaField
from wtforms.validators import Length

from skileez.core.forms import Form


class AccountStatusForm(Form):
    reason = TextAreaField("Reason (kept in the audit log)", validators=[
        Length(max=500, message="Keep the reason under 500 characters."),
    ], render_kw={"rows": 3})
