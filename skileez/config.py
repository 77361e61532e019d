"""Settings read from the environment.

Secrets never have a fallback outside development and testing: a production
process without SECRET_KEY refuses to start rather than sign cookies with a
well-known value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("development", "testing", "production")


class ConfigurationError(RuntimeError):
    """Raised at start-up when the environment cannot run the app safely."""


Settings = dict[str, Any]


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Environment:
    """Typed reads of the process environment, one rule per kind of value.

    ``optional`` treats an empty variable as unset (an empty secret is no secret);
    the others keep the variable's text when it is set at all, as operators expect.
    """

    values: Mapping[str, str]

    def text(self, name: str, default: str) -> str:
        return self.values.get(name, default)

    def optional(self, name: str) -> str | None:
        return self.values.get(name) or None

    def integer(self, name: str, default: int) -> int:
        return int(self.values.get(name, default))

    def number(self, name: str, default: float) -> float:
        return float(self.values.get(name, default))

    def flag(self, name: str, default: bool = False) -> bool:
        return _bool(self.values.get(name), default)


def _sqlite_url(instance_path: str) -> str:
    return "sqlite:///" + str(Path(instance_path) / "skileez.sqlite3")


def normalise_database_url(url: str) -> str:
    """Heroku-style URLs say postgres://; SQLAlchemy wants a driver named."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _environment_name(override: Settings, env: Environment) -> str:
    name = override.get("SKILEEZ_ENV") or env.text("SKILEEZ_ENV", "production")
    if name not in ENVIRONMENTS:
        raise ConfigurationError(f"SKILEEZ_ENV must be one of {', '.join(ENVIRONMENTS)}")
    return name


def _secret_key(name: str, override: Settings, env: Environment) -> str:
    secret_key = override.get("SECRET_KEY") or env.optional("SECRET_KEY")
    if secret_key:
        return secret_key
    if name == "production":
        raise ConfigurationError(
            "SECRET_KEY is not set. Set it in the environment before starting "
            "Skileez in production (for example: export SECRET_KEY=$(python -c "
            "'import secrets; print(secrets.token_hex(32))'))."
        )
    # Random per process: development sessions simply end on restart.
    return os.urandom(32).hex()


def _storage(env: Environment, instance_path: str, redis_url: str | None) -> Settings:
    database_url = env.optional("DATABASE_URL") or _sqlite_url(instance_path)
    return {
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": redis_url,
    }


def _cookies(https_expected: bool) -> Settings:
    """HttpOnly everywhere, Secure wherever HTTPS is expected."""
    return {
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": https_expected,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": https_expected,
        "REMEMBER_COOKIE_DURATION": 30 * 24 * 3600,
        "REMEMBER_COOKIE_REFRESH_EACH_REQUEST": False,
        "PERMANENT_SESSION_LIFETIME": 30 * 24 * 3600,
        "WTF_CSRF_TIME_LIMIT": None,  # tokens live as long as the session
        "WTF_CSRF_SSL_STRICT": https_expected,
    }


def _password_hashing(env: Environment) -> Settings:
    """Argon2id at RFC 9106's second recommended profile (64 MiB, t=3)."""
    return {
        "ARGON2_TIME_COST": env.integer("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_COST": env.integer("ARGON2_MEMORY_COST", 64 * 1024),
        "ARGON2_PARALLELISM": env.integer("ARGON2_PARALLELISM", 4),
    }


def _requests(env: Environment, redis_url: str | None) -> Settings:
    """What one client may send: body size, sign-in and sign-up throttling, proxies."""
    return {
        # Login throttling: the 11th failure in 15 minutes is refused.
        "LOGIN_FAILURE_LIMIT": "10 per 15 minutes",
        # Sign-up throttling: accounts created per client address.
        "REGISTRATION_LIMIT": env.text("REGISTRATION_LIMIT", "5 per hour"),
        # Largest request body read (bytes); anything bigger is refused with 413
        # before it is read. Our largest form is a few kilobytes.
        "MAX_CONTENT_LENGTH": env.integer("MAX_CONTENT_LENGTH", 1024 * 1024),
        "RATELIMIT_STORAGE_URI": env.optional("RATELIMIT_STORAGE_URI")
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
        "TRUSTED_PROXIES": env.integer("TRUSTED_PROXIES", 0),
    }


def _mail(env: Environment) -> Settings:
    """SMTP when MAIL_SERVER is set, otherwise the local mailbox."""
    server = env.optional("MAIL_SERVER")
    return {
        "MAIL_SERVER": server,
        "MAIL_PORT": env.integer("MAIL_PORT", 587 if server else 25),
        "MAIL_USERNAME": env.optional("MAIL_USERNAME"),
        "MAIL_PASSWORD": env.optional("MAIL_PASSWORD"),
        "MAIL_USE_TLS": env.flag("MAIL_USE_TLS", default=bool(server)),
        "MAIL_USE_SSL": env.flag("MAIL_USE_SSL"),
        "MAIL_TIMEOUT": env.number("MAIL_TIMEOUT", 20),
        "MAIL_DEFAULT_SENDER": env.text(
            "MAIL_DEFAULT_SENDER", "Skileez <no-reply@skileez.localhost>"
        ),
        "MAIL_MAX_ATTEMPTS": env.integer("MAIL_MAX_ATTEMPTS", 8),
        "MAIL_RETRY_INTERVALS": (60, 300, 900),
        # The public URL used in emails (links must work outside a request).
        "PUBLIC_BASE_URL": env.text("PUBLIC_BASE_URL", "http://127.0.0.1:5000"),
    }


def _stripe(env: Environment) -> Settings:
    """Without a secret key the built-in test gateway takes Stripe's place."""
    return {
        "STRIPE_SECRET_KEY": env.optional("STRIPE_SECRET_KEY"),
        "STRIPE_PUBLISHABLE_KEY": env.optional("STRIPE_PUBLISHABLE_KEY"),
        "STRIPE_WEBHOOK_SECRET": env.optional("STRIPE_WEBHOOK_SECRET"),
        "STRIPE_API_BASE": env.optional("STRIPE_API_BASE"),
        "STRIPE_JS_URL": env.text("STRIPE_JS_URL", "https://js.stripe.com/v3/"),
    }


def _jobs(env: Environment, redis_url: str | None) -> Settings:
    """RQ when Redis is configured, otherwise jobs run in this process."""
    return {
        "JOBS_BACKEND": "rq" if redis_url else "inprocess",
        "SWEEP_INTERVAL_SECONDS": env.integer("SWEEP_INTERVAL_SECONDS", 60),
        # Comparing with Stripe pages through its lists: a queue of its own, so a long run
        # never holds up mail or payouts.
        "RQ_QUEUES": ("default", "mail", "payouts", "reconciliation"),
    }


def _pages(env: Environment) -> Settings:
    return {
        "BOOTSTRAP_SERVE_LOCAL": True,
        "BOOTSTRAP_BTN_STYLE": "primary",
        "POLICY": {},
        "PER_PAGE": 20,
        # Meeting rooms: Jitsi by default; any Jitsi-compatible server works.
        "MEETING_BASE_URL": env.text("MEETING_BASE_URL", "https://meet.jit.si").rstrip("/"),
    }


def _apply_override(config: Settings, override: Settings) -> Settings:
    """Overrides win, and what is derived from an overridden value follows it."""
    config.update(override)
    if config.get("SQLALCHEMY_DATABASE_URI"):
        config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(
            config["SQLALCHEMY_DATABASE_URI"]
        )
    if "JOBS_BACKEND" not in override:
        config["JOBS_BACKEND"] = "rq" if config.get("REDIS_URL") else "inprocess"
    return config


def build_config(instance_path: str, override: Settings | None = None,
                 environ: Mapping[str, str] | None = None) -> Settings:
    """Return the settings for one app instance.

    ``override`` wins over the environment so tests can build isolated apps
    without touching ``os.environ``; ``environ`` stands in for it where a test
    wants to say what the environment holds.
    """
    override = dict(override or {})
    env = Environment(os.environ if environ is None else environ)
    name = _environment_name(override, env)
    redis_url = env.optional("REDIS_URL")
    config: Settings = {
        "SKILEEZ_ENV": name,
        "TESTING": name == "testing",
        "DEBUG": False,
        "SECRET_KEY": _secret_key(name, override, env),
        **_storage(env, instance_path, redis_url),
        **_cookies(https_expected=name == "production"),
        **_password_hashing(env),
        **_requests(env, redis_url),
        **_mail(env),
        **_stripe(env),
        **_jobs(env, redis_url),
        **_pages(env),
    }
    return _apply_override(config, override)
