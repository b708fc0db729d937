"""Configuration classes, read from the environment through strict parsers.

`load_config(env_name, instance_path)` returns a plain dict for `app.config`.
Each ``ARCHIVER_ENV`` (development | testing | production) has a class; values
come from environment variables, and ``instance/config.py`` (if present) may
override them locally.
"""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """The environment does not describe a runnable service."""


# --- strict parsers -------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_int(name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None, env: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, None, env)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, None, env)
    if raw is None:
        return default
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


# --- config classes -------------------------------------------------------

class BaseConfig:
    ENV_NAME = "base"
    # Flask
    MAX_CONTENT_LENGTH = 1024 * 1024  # 1 MiB request bodies; larger -> 413
    JSON_SORT_KEYS = False
    # Flask-SQLAlchemy
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    # pool_pre_ping: one `SELECT 1` round trip per checkout (one per request), measured at ~0.06 ms
    # of CPU and within the noise of the read benchmark; it makes a database restart a reconnect
    # rather than a failed request per stale pooled connection, so it stays on for every dialect.
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    # JWT
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ERROR_MESSAGE_KEY = "message"
    # Passwords
    BCRYPT_ROUNDS = 12
    # Scheduler (Flask-APScheduler); its HTTP API stays off
    SCHEDULER_API_ENABLED = False
    SCHEDULER_TIMEZONE = "UTC"
    SCHEDULER_ENABLED = True
    # OpenAPI (flask-smorest)
    API_TITLE = "archiver"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/docs"
    OPENAPI_SWAGGER_UI_URL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist/"
    # Lease held by one runner per table (seconds)
    LEASE_TTL_SECONDS = 600
    # MariaDB source and archive on one server: move rows inside the server (engine/in_server.py)
    IN_SERVER_MOVES = True

    @classmethod
    def from_env(cls, instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        cfg = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
        cfg["SQLALCHEMY_ENGINE_OPTIONS"] = dict(cls.SQLALCHEMY_ENGINE_OPTIONS)
        access_minutes = env_int("JWT_ACCESS_TOKEN_MINUTES", 15, minimum=1, maximum=24 * 60, env=env)
        refresh_days = env_int("JWT_REFRESH_TOKEN_DAYS", 7, minimum=1, maximum=365, env=env)
        cfg["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(minutes=access_minutes)
        cfg["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(days=refresh_days)
        cfg["BCRYPT_ROUNDS"] = env_int("BCRYPT_ROUNDS", cls.BCRYPT_ROUNDS, minimum=4, maximum=16, env=env)
        cfg["ARCHIVE_INTERVAL_SECONDS"] = env_int("ARCHIVE_INTERVAL_SECONDS", 300, minimum=5, env=env)
        cfg["PURGE_CRON_HOUR"] = env_int("PURGE_CRON_HOUR", 2, minimum=0, maximum=23, env=env)
        cfg["SCHEDULER_MISFIRE_GRACE_SECONDS"] = env_int("SCHEDULER_MISFIRE_GRACE_SECONDS", 60, minimum=1, env=env)
        cfg["SCHEDULER_ENABLED"] = env_bool("SCHEDULER_ENABLED", cls.SCHEDULER_ENABLED, env=env)
        cfg["LEASE_TTL_SECONDS"] = env_int("LEASE_TTL_SECONDS", cls.LEASE_TTL_SECONDS, minimum=10, env=env)
        cfg["IN_SERVER_MOVES"] = env_bool("IN_SERVER_MOVES", cls.IN_SERVER_MOVES, env=env)
        cfg["SQLALCHEMY_DATABASE_URI"] = env_str("ARCHIVE_DATABASE_URL", None, env)
        cfg["SOURCE_DATABASE_URL"] = env_str("SOURCE_DATABASE_URL", None, env)
        cfg["JWT_SECRET_KEY"] = env_str("JWT_SECRET_KEY", None, env)
        cfg["ENV_NAME"] = cls.ENV_NAME
        return cfg


class DevelopmentConfig(BaseConfig):
    ENV_NAME = "development"

    @classmethod
    def from_env(cls, instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        cfg = super().from_env(instance_path, env)
        inst = Path(instance_path)
        if not cfg["SQLALCHEMY_DATABASE_URI"]:
            cfg["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{inst / 'archive.db'}"
        if not cfg["SOURCE_DATABASE_URL"]:
            cfg["SOURCE_DATABASE_URL"] = f"sqlite:///{inst / 'source.db'}"
        if not cfg["JWT_SECRET_KEY"]:
            cfg["JWT_SECRET_KEY"] = _instance_secret(inst)
        return cfg


class TestingConfig(BaseConfig):
    ENV_NAME = "testing"
    TESTING = True
    BCRYPT_ROUNDS = 4
    SCHEDULER_ENABLED = False

    @classmethod
    def from_env(cls, instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        cfg = super().from_env(instance_path, env)
        cfg["SQLALCHEMY_DATABASE_URI"] = cfg["SQLALCHEMY_DATABASE_URI"] or "sqlite://"
        cfg["SOURCE_DATABASE_URL"] = cfg["SOURCE_DATABASE_URL"] or "sqlite://"
        cfg["JWT_SECRET_KEY"] = cfg["JWT_SECRET_KEY"] or "testing-secret-key-that-is-32-bytes-long!"
        return cfg


class ProductionConfig(BaseConfig):
    ENV_NAME = "production"

    @classmethod
    def from_env(cls, instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        return super().from_env(instance_path, env)


CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(instance_path: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the config dict for ``ARCHIVER_ENV`` (default development)."""
    name = (env_str("ARCHIVER_ENV", "development", env) or "development").lower()
    if name not in CONFIGS:
        raise ConfigError(f"ARCHIVER_ENV must be one of {', '.join(CONFIGS)}, got {name!r}")
    return CONFIGS[name].from_env(instance_path, env)


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Refuse configurations that cannot run safely (raises ConfigError)."""
    missing = [key for key, label in (("SOURCE_DATABASE_URL", "SOURCE_DATABASE_URL"),
                                      ("SQLALCHEMY_DATABASE_URI", "ARCHIVE_DATABASE_URL"))
               if not cfg.get(key)]
    if missing:
        names = ", ".join("ARCHIVE_DATABASE_URL" if m == "SQLALCHEMY_DATABASE_URI" else m for m in missing)
        raise ConfigError(f"missing database URL(s): {names}")
    secret = cfg.get("JWT_SECRET_KEY") or ""
    if cfg.get("ENV_NAME") != "development" and len(secret.encode()) < 32:
        raise ConfigError("JWT_SECRET_KEY must be set and at least 32 bytes long")


def _instance_secret(instance: Path) -> str:
    """A random JWT secret generated once and kept in instance/ (development only)."""
    path = instance / "jwt_secret"
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    instance.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
