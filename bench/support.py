"""What every benchmark shares: its own PostgreSQL database, the app under gunicorn on a
loopback port, signed-in HTTP clients, wrk, and the summary lines ``make bench`` ends with.

Figures are taken the way a user meets the app: over HTTP, through gunicorn, on
PostgreSQL. A benchmark never drops a database it did not create: the databases made here
are named ``skileez_bench_<purpose>`` and carry a marker table; one that exists without the
marker is refused, so pointing BENCH_DATABASE_URL at a server with real data is safe.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from skileez.config import normalise_database_url

# The server the bench databases are made on; its own database is never touched.
DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MARKER_TABLE = "skileez_bench_owner"
CONNECT_TIMEOUT = 3
PASSWORD = "bench-password"
ROOT = Path(__file__).resolve().parent.parent
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')

# The lines ``make bench`` ends with, in this order, so that a script can compare runs.
# A benchmark that could not run leaves its line as "not measured (why)".
SUMMARY_KEYS = (
    "status fragment ratio",
    "booking many coaches",
    "booking one coach",
    "sweep nothing due",
    "sweep 100k due",
    "pages over budget",
    "slowest page",
)
summary: dict[str, str] = {}


class Skip(Exception):
    """The machine cannot run this benchmark (no PostgreSQL, no gunicorn): say so, go on."""


def record(key: str, value: str) -> None:
    """Keep one summary figure; printed at the end in SUMMARY_KEYS order."""
    if key not in SUMMARY_KEYS:
        raise KeyError(f"not a summary line: {key}")
    summary[key] = value


def summary_lines(reasons: dict[str, str]) -> list[str]:
    lines = []
    for key in SUMMARY_KEYS:
        value = summary.get(key) or f"not measured ({reasons.get(key, 'not run')})"
        lines.append(f"{key}: {value}")
    return lines


def server_url() -> URL:
    return make_url(normalise_database_url(
        os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER_URL)))


def first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def bench_database(purpose: str, *, fresh: bool) -> URL:
    """The URL of this benchmark's own database, created if missing (emptied if ``fresh``).

    Raises Skip when there is no usable PostgreSQL, or when a database of that name exists
    that a benchmark did not create.
    """
    server = server_url()
    if server.get_backend_name() != "postgresql":
        raise Skip(f"BENCH_DATABASE_URL is not a PostgreSQL URL ({server.get_backend_name()})")
    # A suffix keeps apart the databases of people benchmarking on one shared server.
    name = f"skileez_bench_{purpose}{os.environ.get('BENCH_DATABASE_SUFFIX', '')}"
    url = server.set(database=name)
    admin = create_engine(server, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": CONNECT_TIMEOUT})
    try:
        with admin.connect() as connection:
            exists = connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                       {"n": name})
            if exists and not _is_ours(url):
                raise Skip(f"database {name} exists and was not made by a benchmark")
            if exists and fresh:
                connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            if not exists or fresh:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
                engine = create_engine(url)
                with engine.begin() as own:
                    own.execute(text(f"CREATE TABLE {MARKER_TABLE} (made_at timestamptz)"))
                    own.execute(text(f"INSERT INTO {MARKER_TABLE} VALUES (now())"))
                engine.dispose()
    except DBAPIError as exc:
        raise Skip(f"no usable PostgreSQL at {server.render_as_string()}: "
                   f"{first_line(exc)}") from exc
    finally:
        admin.dispose()
    return url


def _is_ours(url: URL) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": CONNECT_TIMEOUT})
    try:
        with engine.connect() as connection:
            return bool(connection.scalar(text("SELECT to_regclass(:t) IS NOT NULL"),
                                          {"t": MARKER_TABLE}))
    finally:
        engine.dispose()


def app_config(url: URL | str, **overrides) -> dict:
    """Production settings, except what a loopback benchmark cannot have (HTTPS, real
    hashing cost on every sign-in, Redis, SMTP, Stripe)."""
    config = {
        "SKILEEZ_ENV": "production",
        "SECRET_KEY": "bench-secret-key",
        "SQLALCHEMY_DATABASE_URI": url if isinstance(url, str)
        else url.render_as_string(hide_password=False),
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_SECURE": False,
        "WTF_CSRF_SSL_STRICT": False,
        "REDIS_URL": None,
        "MAIL_SERVER": None,
        "STRIPE_SECRET_KEY": None,
        "RATELIMIT_STORAGE_URI": "memory://",
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_COST": 8,
        "ARGON2_PARALLELISM": 1,
    }
    config.update(overrides)
    return config


def build_app(url: URL | str, *, migrate: bool = True, **overrides):
    """An app in this process (for setting data up), with the schema the migrations build."""
    from flask_migrate import upgrade

    from skileez import create_app
    from skileez.extensions import db

    app = create_app(app_config(url, **overrides))
    if migrate:
        with app.app_context():
            logging.disable(logging.INFO)  # Alembic's line per revision would drown figures
            try:
                upgrade()
            finally:
                logging.disable(logging.NOTSET)
            db.session.remove()
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(url: URL | str, *, workers: int = 2, threads: int = 1,
             environment: dict[str, str] | None = None, **overrides) -> Iterator[str]:
    """The app served by gunicorn on a loopback port (``bench/wsgi.py``); yields its base URL.

    ``/bench/bare`` answers "ok" through the same app and middleware, so a page's cost can
    be given as a ratio to Flask's own per-request cost in the same server.
    ``environment`` adds variables for the server (``BENCH_STATEMENTS=1`` makes every
    answer say how many SQL statements it ran; see bench/wsgi.py).
    """
    binary = Path(sys.executable).with_name("gunicorn")
    if not binary.exists():
        raise Skip("gunicorn is not installed in this environment")
    port = free_port()
    env = dict(os.environ, **(environment or {}),
               BENCH_APP_CONFIG=json.dumps(app_config(url, **overrides)))
    process = subprocess.Popen(
        [str(binary), "bench.wsgi:app", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--log-level", "warning",
         "--keep-alive", "30"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_up(base: str, process: subprocess.Popen) -> None:
    import requests

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {process.stderr.read()[-2000:]}")
        try:
            if requests.get(f"{base}/bench/bare", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 30 s")


def signed_in(base: str, email: str, password: str = PASSWORD):
    """A requests.Session signed in through the login form, as a browser would."""
    import requests

    http = requests.Session()
    page = http.get(f"{base}/login", timeout=10)
    token = CSRF.search(page.text)
    response = http.post(f"{base}/login", timeout=30, allow_redirects=False, data={
        "email": email, "password": password, "csrf_token": token.group(1) if token else ""})
    if response.status_code != 303 or "session" not in http.cookies:
        raise RuntimeError(f"could not sign in as {email}: HTTP {response.status_code}")
    return http


def cookie_header(http) -> str:
    return "; ".join(f"{name}={value}" for name, value in http.cookies.items())


def wrk(url: str, *, cookie: str | None = None, seconds: int = 5, connections: int = 8,
        threads: int = 2, headers: dict[str, str] | None = None) -> float:
    """Requests per second wrk measures for ``url``; raises on any non-2xx/3xx answer."""
    binary = shutil.which("wrk")
    if binary is None:
        raise Skip("wrk is not installed (apt-get install wrk)")
    command = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in {**(headers or {}), **({"Cookie": cookie} if cookie else {})}.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output:
        raise RuntimeError(f"wrk saw error answers from {url}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def percentile_ms(samples: list[float], percent: int) -> float:
    if len(samples) < 2:
        return samples[0] * 1e3 if samples else 0.0
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1] * 1e3
