"""The pages bench reads each page's SQL statements from the gunicorn worker's answer
(bench/wsgi.py's ``X-Bench-Statements``); a header that missed statements would make a
page that lazy-loads look within budget. Checked against the engine's own count."""

from __future__ import annotations

import importlib
import json
import sys

from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench import support


def test_the_header_counts_every_statement_the_request_ran(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    support.build_app(url)  # the schema, by the migrations
    monkeypatch.setenv("BENCH_APP_CONFIG", json.dumps(support.app_config(url)))
    monkeypatch.setenv("BENCH_STATEMENTS", "1")
    monkeypatch.delitem(sys.modules, "bench.wsgi", raising=False)
    wsgi = importlib.import_module("bench.wsgi")
    from skileez.extensions import db

    try:
        with wsgi.app.app_context():
            engine = db.engine
        seen = []

        def listener(_conn, _cursor, statement, *_rest):
            seen.append(statement)

        client = wsgi.app.test_client()
        client.get("/coaches/")  # warm: the first request also reads the engine's dialect
        event.listen(engine, "before_cursor_execute", listener)
        try:
            response = client.get("/coaches/")
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert response.status_code == 200
        assert seen, "the directory runs SQL, or this test measures nothing"
        assert response.headers["X-Bench-Statements"] == str(len(seen))
        assert client.get("/bench/bare").headers["X-Bench-Statements"] == "0"
    finally:
        # The counter listens on every engine; other tests' engines must not carry it.
        event.remove(Engine, "before_cursor_execute", wsgi.statement_log.record)
        sys.modules.pop("bench.wsgi", None)


def test_the_pages_bench_has_a_value_for_every_argument_of_every_page():
    """A GET route asking for an argument the pages bench does not fill stopped the whole
    ``make bench`` halfway (a new ``<dispute_id>`` page did)."""
    from bench.bench_pages import ARGUMENTS, page_rules

    wanting = {rule: sorted(set(arguments) - ARGUMENTS)
               for rule, _endpoint, arguments in page_rules() if set(arguments) - ARGUMENTS}
    assert wanting == {}
