"""Transaction helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import defaultdict, namedtuple
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from skileez.extensions import db

T = TypeVar("T")


def insert_many(model: Any, rows: list[dict], *, key: tuple[str, ...]) -> list[int]:
    """Insert ``rows`` in one statement; their new ids, in ``rows``' order.

    A multi-row ``INSERT … RETURNING`` does not promise its rows back in order, and
    SQLAlchemy's way of making it (``sort_by_parameter_order``) falls back to one
    statement per row on SQLite; so the ids come back with the ``key`` columns and are
    matched to the rows given. Rows equal in ``key`` are interchangeable, so any match
    is right.
    """
    if not rows:
        return []
    returning = (model.id, *(getattr(model, name) for name in key))
    if db.engine.dialect.name == "postgresql":
        returned = db.session.execute(_recordset_insert(
            model, rows, returning=("id", *key))).all()
    else:
        returned = db.session.execute(insert(model).returning(*returning), rows).all()
    ids_by_key: dict[str, list[int]] = defaultdict(list)
    for row_id, *values in returned:
        ids_by_key[_key(values)].append(row_id)
    return [ids_by_key[_key([row[name] for name in key])].pop() for row in rows]


def insert_rows(model: Any, rows: list[dict]) -> None:
    """Insert ``rows`` (all with the same keys) in one statement, whatever their number."""
    if not rows:
        return
    if db.engine.dialect.name == "postgresql":
        db.session.execute(_recordset_insert(model, rows))
    else:
        db.session.execute(insert(model), rows)


def _recordset_insert(model: Any, rows: list[dict], returning: tuple = ()):
    """``INSERT … SELECT … FROM json_to_recordset(:rows)``: the whole batch as one JSON
    parameter.

    Thousands of rows as a multi-row VALUES are thousands of placeholders, which the
    driver parses and SQLAlchemy renders on every batch (most of a sweep's time went
    there); as arrays, one per column, the driver quotes every element. As one JSON
    document the batch is encoded by the standard library's C encoder and parsed by the
    server, and the statement is the same whatever the batch's size. Each value first
    passes its column type's own conversion (aware UTC times); the record's column types
    are the table's, so the server casts each field as an ordinary insert would.
    """
    table = model.__table__
    dialect = db.engine.dialect
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    convert = [(name, column.type.process_bind_param)
               for name, column in zip(names, columns, strict=True)
               if isinstance(column.type, TypeDecorator)]
    if convert:
        rows = [dict(row) for row in rows]
        for row in rows:
            for name, process in convert:
                row[name] = process(row[name], dialect)
    quoted = [dialect.identifier_preparer.quote(name) for name in names]
    fields = ", ".join(f"{name} {column.type.compile(dialect)}"
                       for name, column in zip(quoted, columns, strict=True))
    listed = ", ".join(quoted)
    sql = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({listed}) "
           f"SELECT {listed} FROM json_to_recordset(CAST(:rows AS json)) AS batch({fields})")
    if returning:
        sql += " RETURNING " + ", ".join(
            dialect.identifier_preparer.quote(name) for name in returning)
    return text(sql).bindparams(rows=json.dumps(rows, default=_json_value))


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be inserted in a batch")


def among(column: Any, values: Iterable[Any]) -> Any:
    """``column IN (values)`` for a batch's ids.

    On PostgreSQL ``column = ANY(:values)``: one array parameter whatever the batch's
    size, so the statement text stays the same (the driver caches what it parsed of it;
    a 500-placeholder IN is parsed anew on every batch).
    """
    values = list(values)
    if db.engine.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _key(values: list) -> Any:
    """Plain values as they are; a JSON value (a payload) as its canonical text, the same
    for the dict given and the one the database hands back."""
    if any(isinstance(value, (dict, list)) for value in values):
        return json.dumps(values, sort_keys=True, default=str)
    return tuple(values)


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


READ_ENGINE = "skileez_autocommit_read_engine"


def autocommit_read(read: Callable[[Connection], T]) -> T:
    """``read(connection)`` for a read that needs no transaction of its own (a poll asking
    "has it changed?"), at the cost of its one statement and nothing else.

    On PostgreSQL it runs on an engine of its own in autocommit and without the pool's
    pre-ping: a ping and a BEGIN/ROLLBACK around one indexed read would cost more than the
    read. Because the read is idempotent, a connection found dead (the database restarted)
    is dropped and the read tried once more on a fresh one, which is what the ping buys
    elsewhere. Nothing may be written through it.

    Joined to a transaction someone else opened (a test's), it reads inside that one
    instead, which is the only place the test's rows are.
    """
    bind = db.engine
    if isinstance(bind, Connection):
        return read(db.session.connection())
    if bind.dialect.name != "postgresql":
        with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            return read(connection)
    engine = _read_engine(bind)
    try:
        with engine.connect() as connection:
            return read(connection)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    with engine.connect() as connection:
        return read(connection)


def _read_engine(main: Engine) -> Engine:
    engines = current_app.extensions.setdefault(READ_ENGINE, {})
    engine = engines.get(main)
    if engine is None:
        engine = engines[main] = create_engine(
            main.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=2,
            max_overflow=8)
    return engine


DRIVER_CONNECTIONS = "skileez_prepared_read_connections"


class PreparedRead:
    """A SELECT of one row asked so often (the status poll) that SQLAlchemy's own work
    around each execution (a Connection and a pool checkout, an execution context, a result
    with its metadata: about 0.2 ms, more than the indexed read itself) is most of its cost.

    On PostgreSQL it is compiled once and sent straight through psycopg, on an autocommit
    connection kept for these reads alone, as a server-side prepared statement; each value
    comes back through its column's own result type (``UTCDateTime``), as SQLAlchemy would
    give it. The row is a named tuple with the statement's column names, whichever way it
    was read.

    Whenever anything listens for statements on the engine (the benchmarks' statement
    count, an instrumentation library), the read goes through SQLAlchemy instead, so that
    everything sent is seen; so does a read on SQLite, or joined to a transaction someone
    else opened (a test's). The parameters must be values the driver takes as they are
    (integers, strings): a type that converts what is bound is refused when the read is
    first run.
    """

    def __init__(self, statement: Select) -> None:
        self.statement = statement
        self.row = namedtuple("Row", [column.key for column in statement.selected_columns])
        self._compiled: dict[str, tuple[str, dict, list]] = {}

    def first(self, **parameters) -> tuple | None:
        bind = db.engine
        if isinstance(bind, Connection):
            return self._row(db.session.connection().execute(self.statement, parameters))
        if bind.dialect.name != "postgresql":
            return autocommit_read(lambda connection: self._row(
                connection.execute(self.statement, parameters)))
        engine = _read_engine(bind)
        dispatch = engine.dispatch
        if dispatch.before_cursor_execute or dispatch.after_cursor_execute:
            return autocommit_read(lambda connection: self._row(
                connection.execute(self.statement, parameters)))
        sql, constants, processors = self._compiled_for(engine, parameters)
        values = {**constants, **parameters}
        found = _driver_connections(bind).run(
            lambda cursor: cursor.execute(sql, values, prepare=True).fetchone())
        if found is None:
            return None
        return self.row._make([value if process is None else process(value)
                               for process, value in zip(processors, found, strict=True)])

    def _row(self, result) -> tuple | None:
        found = result.first()
        return None if found is None else self.row._make(found)

    def _compiled_for(self, engine: Engine, parameters: dict) -> tuple[str, dict, list]:
        cached = self._compiled.get(engine.dialect.name)
        if cached is None:
            dialect = engine.dialect
            compiled = self.statement.compile(dialect=dialect)
            converting = [name for name in parameters if compiled.binds[name].type
                          .dialect_impl(dialect).bind_processor(dialect) is not None]
            if converting:
                raise TypeError(f"{', '.join(converting)}: a prepared read binds plain values")
            constants = {name: value for name, value
                         in compiled.construct_params(parameters).items()
                         if name not in parameters}
            processors = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                          for column in self.statement.selected_columns]
            cached = self._compiled[dialect.name] = (compiled.string, constants, processors)
        return cached


class DriverConnections:
    """psycopg connections in autocommit for ``PreparedRead``, each with its cursor: a stack
    (``list.pop`` and ``append`` are atomic, so threads share it without a lock), opened as
    they are first needed, at most ``keep`` of them kept idle, all closed when the app's
    engine is disposed. A connection found broken (the database restarted) is dropped and the read,
    which changes nothing, is tried once more on a fresh one."""

    def __init__(self, engine: Engine, keep: int = 4) -> None:
        arguments, options = engine.dialect.create_connect_args(engine.url)
        self._connect = lambda: engine.dialect.loaded_dbapi.connect(
            *arguments, **options, autocommit=True)
        self._idle: list = []
        self._keep = keep

    def run(self, read: Callable[[Any], T]) -> T:
        """``read(cursor)`` on a kept connection's own cursor (making a cursor per read
        costs a quarter of the read)."""
        for attempt in (1, 2):
            try:
                cursor = self._idle.pop()
            except IndexError:
                cursor = self._connect().cursor()
            try:
                answer = read(cursor)
            except Exception:
                if not cursor.connection.broken:
                    self._give_back(cursor)
                    raise
                cursor.connection.close()
                if attempt == 2:
                    raise
                continue
            self._give_back(cursor)
            return answer
        raise AssertionError("unreachable")

    def _give_back(self, cursor) -> None:
        if len(self._idle) < self._keep:
            self._idle.append(cursor)
        else:
            cursor.connection.close()

    def close(self, *_args) -> None:
        while self._idle:
            self._idle.pop().connection.close()


def _driver_connections(main: Engine) -> DriverConnections:
    pools = current_app.extensions.setdefault(DRIVER_CONNECTIONS, {})
    pool = pools.get(main)
    if pool is None:
        pool = pools[main] = DriverConnections(main)
        event.listen(main, "engine_disposed", pool.close)
    return pool
