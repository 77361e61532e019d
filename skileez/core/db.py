"""Transaction helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from skileez.extensions import db


def serialized_write() -> None:
    """Start a transaction that holds the write lock from its first statement.

    On SQLite, a check-then-insert (is this slot free? then book it) is only
    safe if no other writer can run between the two: ``BEGIN IMMEDIATE`` takes
    the lock up front, so concurrent bookings wait their turn (busy_timeout)
    instead of failing halfway with "database is locked". pysqlite only begins
    transactions before a write, so the reads before this point ran outside
    one and no stale snapshot is carried in. The caller must have no unsaved
    writes: the current transaction is committed first.
    On PostgreSQL this does nothing: row locks and exclusion constraints do the job.
    """
    if db.engine.dialect.name != "sqlite":
        return
    db.session.commit()
    db.session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def lock_coach_calendar(coach_id: int) -> None:
    """Serialize writes to one coach's calendar on PostgreSQL (released at commit).

    The exclusion constraints already refuse overlaps, but many transactions
    inserting overlapping rows at once can deadlock inside the constraint check;
    taking a per-coach advisory lock first makes them queue instead. SQLite is
    already serialized by ``serialized_write``.
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
