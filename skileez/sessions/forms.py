from __future__ import annotations

from wtforms import HiddenField

from skileez.core.forms import Form


class BookForm(Form):
    """Carries the chosen start (UTC, ISO 8601) from the confirmation page."""

    starts_at = HiddenField()
