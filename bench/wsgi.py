"""The app as gunicorn serves it to the benchmarks: settings from BENCH_APP_CONFIG (JSON,
written by ``bench.support.gunicorn``), plus ``/bench/bare``, the cheapest answer the same
app and middleware can give, which the page figures are compared with.

With BENCH_STATEMENTS set, every answer carries ``X-Bench-Statements``: the SQL statements
the worker ran for that request, counted on the driver's cursor (so lazy loads from a
template, context processors and the sign-in hook all count). A request sent with
``X-Bench-Explain: 1`` is answered instead with JSON: each SELECT it ran, with its
parameters, and the sequential scans PostgreSQL's EXPLAIN plans for it. Both live here,
outside the product package, and cost nothing when the variable is not set.
"""

import gc
import json
import os
import threading

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from skileez import create_app


def bare():
    return "ok"


bare.skileez_public = True  # reachable without signing in, like any public view

app = create_app(json.loads(os.environ["BENCH_APP_CONFIG"]))
app.add_url_rule("/bench/bare", "bench_bare", bare)
gc.freeze()  # as the production entry point (wsgi.py) does, for the same reason


class StatementLog:
    """The statements of the request this thread is answering (None between requests)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def statements(self) -> list | None:
        return getattr(self._local, "statements", None)

    @statements.setter
    def statements(self, value: list | None) -> None:
        self._local.statements = value

    def record(self, _conn, _cursor, statement, parameters, _context, executemany) -> None:
        if self.statements is not None:
            self.statements.append((statement, None if executemany else parameters))


def seq_scans(plan: dict) -> list[str]:
    """The tables a plan (EXPLAIN's JSON, a node and its children) reads by Seq Scan."""
    found = [plan["Relation Name"]] if plan.get("Node Type") == "Seq Scan" else []
    for child in plan.get("Plans", ()):
        found += seq_scans(child)
    return found


def explain(statements: list) -> list[dict]:
    """EXPLAIN each SELECT as it was sent (same text, same parameters), on a connection of
    its own, with the table sizes the planner believes in. A statement repeated with other
    parameters (a lazy load per row) is explained once."""
    answers, seen = [], set()
    with app.app_context():
        from skileez.extensions import db

        with db.engine.connect() as connection:
            sizes = dict(connection.execute(text(
                "SELECT relname, reltuples::bigint FROM pg_class WHERE relkind = 'r'")).all())
            for statement, parameters in statements:
                if not statement.lstrip().upper().startswith(("SELECT", "WITH")) \
                        or parameters is None or statement in seen:
                    continue
                seen.add(statement)
                plan = connection.exec_driver_sql(
                    "EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
                tables = seq_scans(plan[0]["Plan"])
                answers.append({"statement": statement,
                                "seq_scans": [{"table": t, "rows": sizes.get(t, 0)}
                                              for t in tables]})
    return answers


class CountStatements:
    """WSGI middleware: buffers the answer (streamed ones too, so every statement is
    counted before the header is written) and adds the statement count."""

    def __init__(self, wsgi_app, log: StatementLog) -> None:
        self.wsgi_app = wsgi_app
        self.log = log

    def __call__(self, environ, start_response):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)
            return lambda data: None

        self.log.statements = []
        try:
            result = self.wsgi_app(environ, capture)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            statements = self.log.statements
        finally:
            self.log.statements = None
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        if environ.get("HTTP_X_BENCH_EXPLAIN"):
            body = json.dumps(explain(statements)).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "application/json"))
        headers += [("X-Bench-Statements", str(len(statements))),
                    ("Content-Length", str(len(body)))]
        start_response(captured["status"], headers)
        return [body]


if os.environ.get("BENCH_STATEMENTS"):
    statement_log = StatementLog()
    event.listen(Engine, "before_cursor_execute", statement_log.record)
    app.wsgi_app = CountStatements(app.wsgi_app, statement_log)
