"""Settings read from the environment.

Secrets never have a fallback outside development and testing: a production
process without SECRET_KEY refuses to start rather than sign cookies with a
well-known value.
"""

from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENTS = ("development", "testing", "production")


class ConfigurationError(RuntimeError):
    """Raised at start-up when the environment cannot run the app safely."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _sqlite_url(instance_path: str) -> str:
    return "sqlite:///" + str(Path(instance_path) / "skileez.sqlite3")


def normalise_database_url(url: str) -> str:
    """Heroku-style URLs say postgres://; SQLAlchemy wants a driver named."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def build_config(instance_path: str, override: dict | None = None) -> dict:
    """Return the settings for one app instance.

    ``override`` wins over the environment so tests can build isolated apps
    without touching ``os.environ``.
    """
    override = dict(override or {})
    env = override.get("SKILEEZ_ENV") or os.environ.get("SKILEEZ_ENV", "production")
    if env not in ENVIRONMENTS:
        raise ConfigurationError(f"SKILEEZ_ENV must be one of {', '.join(ENVIRONMENTS)}")
    development = env == "development"
    testing = env == "testing"

    secret_key = override.get("SECRET_KEY") or os.environ.get("SECRET_KEY")
    if not secret_key:
        if env == "production":
            raise ConfigurationError(
                "SECRET_KEY is not set. Set it in the environment before starting "
                "Skileez in production (for example: export SECRET_KEY=$(python -c "
                "'import secrets; print(secrets.token_hex(32))'))."
            )
        # Random per process: development sessions simply end on restart.
        secret_key = os.urandom(32).hex()

    database_url = os.environ.get("DATABASE_URL") or _sqlite_url(instance_path)
    redis_url = os.environ.get("REDIS_URL") or None
    mail_server = os.environ.get("MAIL_SERVER") or None

    config: dict = {
        "SKILEEZ_ENV": env,
        "TESTING": testing,
        "DEBUG": False,
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": redis_url,
        # Cookies: HttpOnly everywhere, Secure wherever HTTPS is expected.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": not (development or testing),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": not (development or testing),
        "REMEMBER_COOKIE_DURATION": 30 * 24 * 3600,
        "REMEMBER_COOKIE_REFRESH_EACH_REQUEST": False,
        "PERMANENT_SESSION_LIFETIME": 30 * 24 * 3600,
        "WTF_CSRF_TIME_LIMIT": None,  # tokens live as long as the session
        "WTF_CSRF_SSL_STRICT": not (development or testing),
        "BOOTSTRAP_SERVE_LOCAL": True,
        "BOOTSTRAP_BTN_STYLE": "primary",
        # Argon2id at RFC 9106's second recommended profile (64 MiB, t=3).
        "ARGON2_TIME_COST": int(os.environ.get("ARGON2_TIME_COST", 3)),
        "ARGON2_MEMORY_COST": int(os.environ.get("ARGON2_MEMORY_COST", 64 * 1024)),
        "ARGON2_PARALLELISM": int(os.environ.get("ARGON2_PARALLELISM", 4)),
        # Login throttling: the 11th failure in 15 minutes is refused.
        "LOGIN_FAILURE_LIMIT": "10 per 15 minutes",
        # Sign-up throttling: accounts created per client address.
        "REGISTRATION_LIMIT": os.environ.get("REGISTRATION_LIMIT", "5 per hour"),
        # Largest request body read (bytes); anything bigger is refused with 413
        # before it is read. Our largest form is a few kilobytes.
        "MAX_CONTENT_LENGTH": int(os.environ.get("MAX_CONTENT_LENGTH", 1024 * 1024)),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI")
        or redis_url
        or "memory://",
        "RATELIMIT_HEADERS_ENABLED": True,
        # Said explicitly: Flask-Limiter's shared extension object otherwise keeps the
        # last app's setting, so one app built with throttling off turned it off for
        # every app built after it in the same process.
        "RATELIMIT_ENABLED": True,
        # If Redis is down, throttle per process rather than fail every sign-in.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
        # Behind N reverse proxies, trust N X-Forwarded-* hops (client address for
        # throttling, https for secure cookies). 0 when the app faces clients directly.
        "TRUSTED_PROXIES": int(os.environ.get("TRUSTED_PROXIES", 0)),
        # Mail: SMTP when MAIL_SERVER is set, otherwise the local mailbox.
        "MAIL_SERVER": mail_server,
        "MAIL_PORT": int(os.environ.get("MAIL_PORT", 587 if mail_server else 25)),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _bool(os.environ.get("MAIL_USE_TLS"), default=bool(mail_server)),
        "MAIL_USE_SSL": _bool(os.environ.get("MAIL_USE_SSL")),
        "MAIL_TIMEOUT": float(os.environ.get("MAIL_TIMEOUT", 20)),
        "MAIL_DEFAULT_SENDER": os.environ.get(
            "MAIL_DEFAULT_SENDER", "Skileez <no-reply@skileez.localhost>"
        ),
        "MAIL_MAX_ATTEMPTS": int(os.environ.get("MAIL_MAX_ATTEMPTS", 8)),
        "MAIL_RETRY_INTERVALS": (60, 300, 900),
        # The public URL used in emails (links must work outside a request).
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000"),
        # Stripe (used from the payments issue on).
        "STRIPE_SECRET_KEY": os.environ.get("STRIPE_SECRET_KEY") or None,
        "STRIPE_PUBLISHABLE_KEY": os.environ.get("STRIPE_PUBLISHABLE_KEY") or None,
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET") or None,
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE") or None,
        "STRIPE_JS_URL": os.environ.get("STRIPE_JS_URL", "https://js.stripe.com/v3/"),
        # Jobs: "rq" when Redis is configured, otherwise run in this process.
        "JOBS_BACKEND": "rq" if redis_url else "inprocess",
        "SWEEP_INTERVAL_SECONDS": int(os.environ.get("SWEEP_INTERVAL_SECONDS", 60)),
        "RQ_QUEUES": ("default", "mail", "payouts"),
        "POLICY": {},
        "PER_PAGE": 20,
        # Meeting rooms: Jitsi by default; any Jitsi-compatible server works.
        "MEETING_BASE_URL": os.environ.get("MEETING_BASE_URL", "https://meet.jit.si").rstrip("/"),
    }
    config.update(override)
    if config.get("SQLALCHEMY_DATABASE_URI"):
        config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(
            config["SQLALCHEMY_DATABASE_URI"]
        )
    if "JOBS_BACKEND" not in override:
        config["JOBS_BACKEND"] = "rq" if config.get("REDIS_URL") else "inprocess"
    return config
