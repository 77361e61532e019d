"""What students say about a coach in public: their ratings of sessions, for the coach's page."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from skileez.extensions import db
from skileez.sessions.models import Rating, Session


def public_reviews(coach_id: int, limit: int = 10) -> list:
    """Students' feedback the rater chose to make public, newest first."""
    return list(db.session.scalars(
        select(Rating).join(Session, Session.id == Rating.session_id)
        .where(Rating.ratee_id == coach_id, Rating.rater_id == Session.student_id,
               Rating.public.is_(True), Rating.feedback != "")
        .options(joinedload(Rating.rater))  # each review names its rater
        .order_by(Rating.created_at.desc()).limit(limit)))
