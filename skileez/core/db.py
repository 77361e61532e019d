"""Transaction helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from skileez.extensions import db


def lock_coach_calendar(coach_id: int) -> None:
    """Serialize writes to one coach's calendar on PostgreSQL (released at commit).

    The exclusion constraints already refuse overlaps, but many transactions
    inserting overlapping rows at once can deadlock inside the constraint check;
    taking a per-coach advisory lock first makes them queue instead. SQLite is
    already serialized by ``core.unit_of_work.transaction(serialized=True)``.
    """
    if db.engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    db.session.execute(text("SELECT pg_advisory_xact_lock(:namespace, :coach)"),
                       {"namespace": 7001, "coach": coach_id})


def is_lock_conflict(error: Exception) -> bool:
    """A deadlock or serialization failure: another writer won; nothing was saved."""
    code = getattr(getattr(error, "orig", None), "sqlstate", None)
    return code in ("40P01", "40001")
