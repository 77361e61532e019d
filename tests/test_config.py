"""Settings from the environment: each concern read with its own rule."""

from __future__ import annotations

import pytest

from skileez.config import ConfigurationError, build_config

PRODUCTION = {"SKILEEZ_ENV": "production", "SECRET_KEY": "from-the-vault"}


def test_production_settings_are_read_and_typed_from_the_environment(tmp_path):
    config = build_config(str(tmp_path), environ={
        **PRODUCTION,
        "DATABASE_URL": "postgres://skileez@db.internal/skileez",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "MAIL_SERVER": "smtp.example.com",
        "MAIL_TIMEOUT": "3.5",
        "TRUSTED_PROXIES": "1",
        "MEETING_BASE_URL": "https://meet.example.com/",
    })
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://skileez@db.internal/skileez"
    assert config["JOBS_BACKEND"] == "rq"
    assert config["RATELIMIT_STORAGE_URI"] == "redis://redis.internal:6379/0"
    assert (config["MAIL_PORT"], config["MAIL_USE_TLS"], config["MAIL_TIMEOUT"]) == (587, True, 3.5)
    assert config["TRUSTED_PROXIES"] == 1
    assert config["MEETING_BASE_URL"] == "https://meet.example.com"
    assert config["SESSION_COOKIE_SECURE"] and config["WTF_CSRF_SSL_STRICT"]


def test_without_services_the_app_runs_on_its_own(tmp_path):
    config = build_config(str(tmp_path), environ={"SKILEEZ_ENV": "development"})
    assert config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert (config["JOBS_BACKEND"], config["RATELIMIT_STORAGE_URI"]) == ("inprocess", "memory://")
    assert (config["MAIL_SERVER"], config["MAIL_PORT"], config["MAIL_USE_TLS"]) == (None, 25, False)
    assert len(config["SECRET_KEY"]) == 64
    assert not config["SESSION_COOKIE_SECURE"]


def test_empty_secrets_count_as_unset(tmp_path):
    config = build_config(str(tmp_path), environ={
        **PRODUCTION, "STRIPE_SECRET_KEY": "", "MAIL_PASSWORD": "", "REDIS_URL": ""})
    assert config["STRIPE_SECRET_KEY"] is config["MAIL_PASSWORD"] is config["REDIS_URL"] is None
    with pytest.raises(ConfigurationError, match="SECRET_KEY is not set"):
        build_config(str(tmp_path), environ={"SKILEEZ_ENV": "production", "SECRET_KEY": ""})


def test_overrides_win_and_what_follows_from_them_follows(tmp_path):
    config = build_config(str(tmp_path), {"REDIS_URL": None, "SQLALCHEMY_DATABASE_URI":
                                          "postgres://a@b/c"},
                          environ={**PRODUCTION, "REDIS_URL": "redis://r/0"})
    assert config["JOBS_BACKEND"] == "inprocess"
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://a@b/c"


def test_an_unknown_environment_name_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="SKILEEZ_ENV must be one of"):
        build_config(str(tmp_path), environ={"SKILEEZ_ENV": "staging"})
