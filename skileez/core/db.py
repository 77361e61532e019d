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
