"""The sessions blueprint, shared by its three view modules, and the one way they load a session.

Booking and the session page (``routes``), history, exports and calendar feeds
(``history_routes``) and every life-cycle action (``lifecycle_routes``) add
their views here; the app factory imports all three by name, so no module has
to import another for its side effect.
"""

from __future__ import annotations

from flask import Blueprint, abort
from flask_login import current_user

from skileez.core.access import require_login
from skileez.extensions import db
from skileez.sessions.models import Session

bp = require_login(Blueprint("sessions", __name__, url_prefix="/sessions"))


def participant_session(session_id: int, options=()) -> Session:
    """The session, if the signed-in person is its coach or student; 404 for everyone else.

    ``options`` are loader options for what the page shows of it (its payment, people),
    so that they come with the session instead of one query each from the template.
    """
    session = db.session.get(Session, session_id, options=options)
    if session is None or not session.is_participant(current_user):
        abort(404)
    return session
