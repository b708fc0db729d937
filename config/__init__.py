"""Configuration: one table of settings, read strictly from the environment and instance/config.py.

Every tunable setting is declared once in :data:`SETTINGS` (name, type,
default, bounds, per-environment defaults). Values come, highest first, from
the overrides given to ``create_app`` (tests), ``instance/config.py``, the
environment, then the default. Environment text is parsed (``"300"``,
``"true"``); a value in ``instance/config.py`` must already have the type
(``300``, ``True``); both then go through the same bounds checks, and
:func:`validate_config` checks the result as a whole. Any failure is a
:class:`ConfigError`, which ``create_app`` reports in one line before exiting 2.

Fixed settings (Flask, JWT algorithm, OpenAPI) are plain class attributes of
:class:`BaseConfig`; ``instance/config.py`` may still override those, and any
other Flask setting, as it is.
"""
from __future__ import annotations

import os
import secrets
import types
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

INSTANCE_FILE = "config.py"


class ConfigError(ValueError):
    """The environment (or instance/config.py) does not describe a runnable service."""


# --- strict parsers (environment text) --------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _parse_int(label: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{label} must be an integer, got {raw!r}") from None


def _parse_bool(label: str, raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{label} must be a boolean (true/false), got {raw!r}")


def _parse_float(label: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{label} must be a number, got {raw!r}")
    return value


_PARSERS: dict[type, Callable[[str, str], Any]] = {int: _parse_int, bool: _parse_bool, float: _parse_float,
                                                   str: lambda label, raw: raw}
_TYPE_NAMES = {int: "an integer", bool: "a boolean (True/False)", float: "a number", str: "a string"}


# --- the settings ------------------------------------------------------------

Default = Any  # a value, or a callable taking the instance folder (Path) and returning one


@dataclass(frozen=True)
class Setting:
    """One tunable setting: its name (environment variable and instance/config.py name) and rules."""

    name: str
    type: type
    default: Default = None  # None: no value unless given (validate_config decides if that is fatal)
    minimum: float | None = None
    maximum: float | None = None
    by_env: Mapping[str, Default] = field(default_factory=dict)  # ARCHIVER_ENV -> default there
    key: str | None = None  # app.config key, when it is not ``name``
    convert: Callable[[Any], Any] | None = None  # value -> app.config value
    validate: Callable[[Any], str | None] | None = None  # value -> why it is refused, or None

    @property
    def config_key(self) -> str:
        return self.key or self.name

    def from_text(self, raw: str, where: str = "") -> Any:
        """Parse environment text (already stripped, non-empty) and check bounds."""
        return self.check(_PARSERS[self.type](self.name + where, raw), where)

    def from_value(self, value: Any, where: str = "") -> Any:
        """Check a Python value (instance/config.py, create_app overrides): type, then bounds."""
        if self.type is str and isinstance(value, str):
            return self.check(value.strip(), where)
        if self.type is float and type(value) in (int, float):
            return self.check(float(value), where)
        if type(value) is not self.type:  # noqa: E721 - exact: True is not an integer here
            raise ConfigError(f"{self.name}{where} must be {_TYPE_NAMES[self.type]}, "
                              f"got {value!r} ({type(value).__name__})")
        return self.check(value, where)

    def check(self, value: Any, where: str = "") -> Any:
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{self.name}{where} must be >= {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{self.name}{where} must be <= {self.maximum}, got {value}")
        if self.validate is not None and (problem := self.validate(value)) is not None:
            raise ConfigError(f"{self.name}{where} {problem}, got {value!r}")
        return value

    def default_for(self, env_name: str, instance: Path) -> Any:
        default = self.by_env.get(env_name, self.default)
        return default(instance) if callable(default) else default


def _instance_secret(instance: Path) -> str:
    """A random JWT secret generated once and kept in instance/ (development only)."""
    path = instance / "jwt_secret"
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


TESTING_JWT_SECRET = "testing-secret-key-that-is-32-bytes-long!"


def _rate_limits(value: str) -> str | None:
    """Rate strings of the ``limits`` library: ``5/minute;20/hour`` (``limits`` parses them)."""
    from limits import parse_many

    try:
        parsed = parse_many(value)
    except ValueError:
        parsed = []
    if not parsed:
        return "must be rate limits such as '5/minute;20/hour'"
    return None


def _limits_storage(value: str) -> str | None:
    """A storage URI that the ``limits`` library knows (memory://, redis://, memcached://, ...)."""
    from limits.storage import SCHEMES

    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in SCHEMES or scheme.startswith("async+"):
        return "must be a rate-limit storage URI (memory://, redis://host:6379/0, memcached://host:11211, ...)"
    return None

def _one_of(*choices: str) -> Callable[[str], str | None]:
    """A text setting that must be one of ``choices`` (ignoring case)."""
    def check(value: str) -> str | None:
        if value.upper() not in {c.upper() for c in choices}:
            return f"must be one of {', '.join(choices)}"
        return None
    return check


#: Every tunable setting, once. README's Configuration section documents the same table.
SETTINGS: tuple[Setting, ...] = (
    Setting("SOURCE_DATABASE_URL", str,
            by_env={"development": lambda inst: f"sqlite:///{inst / 'source.db'}", "testing": "sqlite://"}),
    Setting("ARCHIVE_DATABASE_URL", str, key="SQLALCHEMY_DATABASE_URI",
            by_env={"development": lambda inst: f"sqlite:///{inst / 'archive.db'}", "testing": "sqlite://"}),
    Setting("JWT_SECRET_KEY", str, by_env={"development": _instance_secret, "testing": TESTING_JWT_SECRET}),
    Setting("JWT_ACCESS_TOKEN_MINUTES", int, 15, minimum=1, maximum=24 * 60,
            key="JWT_ACCESS_TOKEN_EXPIRES", convert=lambda minutes: timedelta(minutes=minutes)),
    Setting("JWT_REFRESH_TOKEN_DAYS", int, 7, minimum=1, maximum=365,
            key="JWT_REFRESH_TOKEN_EXPIRES", convert=lambda days: timedelta(days=days)),
    Setting("BCRYPT_ROUNDS", int, 12, minimum=4, maximum=16, by_env={"testing": 4}),
    Setting("SCHEDULER_ENABLED", bool, True, by_env={"testing": False}),
    Setting("ARCHIVE_INTERVAL_SECONDS", int, 300, minimum=5),
    Setting("PURGE_CRON_HOUR", int, 2, minimum=0, maximum=23),
    Setting("SCHEDULER_MISFIRE_GRACE_SECONDS", int, 60, minimum=1),
    # The per-table lock (engine/lease.py). The holder renews its heartbeat every
    # LOCK_HEARTBEAT_SECONDS. SQLite leases: another runner takes the table over once the heartbeat is
    # older than LOCK_STALE_SECONDS (at once when the holder's pid is gone on the same host); advisory
    # locks (PostgreSQL, MariaDB): the server ends a lock's session idle that long.
    Setting("LOCK_HEARTBEAT_SECONDS", int, 5, minimum=1, maximum=300),
    Setting("LOCK_STALE_SECONDS", int, 30, minimum=3, maximum=3600),
    # Every database connection (engine/backends/*: configure_engine). 0 turns a timeout off.
    Setting("DB_CONNECT_TIMEOUT_SECONDS", int, 10, minimum=1, maximum=600),
    Setting("DB_STATEMENT_TIMEOUT_SECONDS", int, 300, minimum=0, maximum=86400),
    Setting("DB_LOCK_TIMEOUT_SECONDS", int, 30, minimum=1, maximum=3600),
    Setting("DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", int, 60, minimum=0, maximum=86400),
    Setting("DB_NETWORK_TIMEOUT_SECONDS", int, 30, minimum=2, maximum=3600),
    # GET /ready answers within this bound (one probe at a time, never more than one waiting thread).
    Setting("READY_TIMEOUT_SECONDS", int, 2, minimum=1, maximum=60),
    # SIGTERM/SIGINT to the serving process: how long running jobs get to finish their current batch.
    Setting("SHUTDOWN_TIMEOUT_SECONDS", int, 30, minimum=1, maximum=3600),
    # MariaDB source and archive on one server: move rows inside the server (engine/in_server.py)
    Setting("IN_SERVER_MOVES", bool, True),
    # Adaptive batches (engine/sizing.py): the time a batch aims at (its rows stay locked that long),
    # the largest batch in rows, and in megabytes of payload held in memory.
    Setting("BATCH_TARGET_MS", int, 1000, minimum=50, maximum=60_000),
    Setting("BATCH_MAX_ROWS", int, 50_000, minimum=100, maximum=1_000_000),
    Setting("BATCH_MAX_MB", int, 32, minimum=1, maximum=1024),
    # Throttles (engine/throttle.py, docs/operations.md): the default of every policy whose own field
    # is empty (null); 0 is off. A policy's field has the same bounds (services/policies.py).
    Setting("THROTTLE_SLEEP_MS", int, 0, minimum=0, maximum=600_000),
    Setting("THROTTLE_SLEEP_RATIO", float, 0.0, minimum=0, maximum=100),
    Setting("THROTTLE_MAX_RUN_SECONDS", int, 0, minimum=0, maximum=7 * 86400),
    Setting("THROTTLE_MAX_ROWS_PER_RUN", int, 0, minimum=0, maximum=10**12),
    Setting("THROTTLE_MAX_REPLICA_LAG_SECONDS", float, 0.0, minimum=0, maximum=86400),
    Setting("THROTTLE_MAX_ACTIVE_SESSIONS", int, 0, minimum=0, maximum=100_000),
    Setting("THROTTLE_CRITICAL_ACTIVE_SESSIONS", int, 0, minimum=0, maximum=100_000),
    # How often the replica lag and load are read while all is well, and again while paused.
    Setting("THROTTLE_CHECK_MS", int, 1000, minimum=10, maximum=60_000),
    # A replica whose lag the throttle reads (PostgreSQL: now() - pg_last_xact_replay_timestamp();
    # MariaDB/MySQL: Seconds_Behind_Master). Unset: the source itself (PostgreSQL: pg_stat_replication).
    Setting("REPLICA_DATABASE_URL", str),
    # --- security (README "Security") ---
    Setting("SIGNUP_ENABLED", bool, False, by_env={"development": True}),
    Setting("RATELIMIT_ENABLED", bool, True),
    Setting("RATELIMIT_STORAGE_URI", str, "memory://", validate=_limits_storage),
    Setting("RATELIMIT_KEY_PREFIX", str, "archiver"),
    Setting("RATELIMIT_LOGIN_PER_USERNAME", str, "5/minute;20/hour", validate=_rate_limits),
    Setting("RATELIMIT_LOGIN_PER_ADDRESS", str, "30/minute", validate=_rate_limits),
    Setting("RATELIMIT_SIGNUP_PER_ADDRESS", str, "10/hour", validate=_rate_limits),
    Setting("PASSWORD_CHECK_CONCURRENCY", int, 2, minimum=1, maximum=64),
    Setting("AUDIT_RETENTION_DAYS", int, 365, minimum=0, maximum=36500),
    Setting("AUDIT_SYNC_READS", bool, False),
    Setting("TRUSTED_PROXY_HOPS", int, 0, minimum=0, maximum=5),
    # --- monitoring (docs/operations.md): GET /metrics (Prometheus text; 404 when off), behind a bearer
    # token when METRICS_TOKEN is set; one log line per request and per run, as JSON or text.
    Setting("METRICS_ENABLED", bool, False),
    Setting("METRICS_TOKEN", str),
    Setting("LOG_FORMAT", str, "text", convert=str.lower, validate=_one_of("text", "json")),
    Setting("LOG_LEVEL", str, "INFO", convert=str.upper,
            validate=_one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    # --- the console (/ui/): its login cookies carry the Secure flag (sent over HTTPS only)
    Setting("CONSOLE_COOKIE_SECURE", bool, True, by_env={"development": False, "testing": False},
            key="JWT_COOKIE_SECURE"),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}
#: app.config keys derived from a setting: set the setting instead (so it is validated).
DERIVED_KEYS = {s.config_key: s.name for s in SETTINGS if s.key}


# --- config classes (fixed settings) ------------------------------------------

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
    # The API reads bearer tokens from the Authorization header only; the console (/ui/) reads the
    # same tokens from cookies (api/console/auth.py asks for that location explicitly), so no API
    # route ever accepts a cookie. Console cookies: HttpOnly, SameSite=Strict, sent to /ui/ only, and
    # every state-changing request must echo the token's CSRF value (form field or X-CSRF-TOKEN).
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_COOKIE_SAMESITE = "Strict"
    JWT_COOKIE_CSRF_PROTECT = True
    JWT_CSRF_CHECK_FORM = True
    JWT_ACCESS_COOKIE_NAME = "archiver_access"
    JWT_REFRESH_COOKIE_NAME = "archiver_refresh"
    JWT_ACCESS_CSRF_COOKIE_NAME = "archiver_csrf_access"
    JWT_REFRESH_CSRF_COOKIE_NAME = "archiver_csrf_refresh"
    JWT_ACCESS_COOKIE_PATH = "/ui/"
    JWT_REFRESH_COOKIE_PATH = "/ui/"
    JWT_ACCESS_CSRF_COOKIE_PATH = "/ui/"
    JWT_REFRESH_CSRF_COOKIE_PATH = "/ui/"
    JWT_ERROR_MESSAGE_KEY = "message"
    # Rate limits (api/ratelimit.py; the limits themselves are SETTINGS): a sliding window, so "5 per minute" means
    # any 60 seconds; if the shared storage (Redis) is unreachable, limit per process in memory.
    RATELIMIT_STRATEGY = "moving-window"
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    # Scheduler (Flask-APScheduler); its HTTP API stays off
    SCHEDULER_API_ENABLED = False
    SCHEDULER_TIMEZONE = "UTC"
    # OpenAPI (flask-smorest)
    API_TITLE = "archiver"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    # /docs is served by api/docs_ui.py from Swagger UI files shipped with flask-swagger-ui (no CDN:
    # the page's Content-Security-Policy allows only this origin).

    @classmethod
    def fixed(cls) -> dict[str, Any]:
        cfg = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
        cfg["SQLALCHEMY_ENGINE_OPTIONS"] = dict(cls.SQLALCHEMY_ENGINE_OPTIONS)
        return cfg


class DevelopmentConfig(BaseConfig):
    ENV_NAME = "development"


class TestingConfig(BaseConfig):
    ENV_NAME = "testing"
    TESTING = True


class ProductionConfig(BaseConfig):
    ENV_NAME = "production"


CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


# --- loading -------------------------------------------------------------------

def read_instance_file(instance_path: str) -> dict[str, Any]:
    """The upper-case names set by ``instance/config.py`` (empty if there is no such file).

    The file is executed like Flask's ``from_pyfile``; a file that fails to run is a ConfigError.
    """
    path = Path(instance_path) / INSTANCE_FILE
    if not path.is_file():
        return {}
    module = types.ModuleType("config")
    module.__file__ = str(path)
    try:
        exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)  # noqa: S102 - the operator's own file
    except Exception as exc:  # noqa: BLE001 - any failure in the file is a configuration error
        raise ConfigError(f"{path} could not be loaded: {type(exc).__name__}: {exc}") from None
    return {k: v for k, v in vars(module).items() if k.isupper()}


def _given(value: Any) -> bool:
    """None and blank text mean "not set here", in every source."""
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def load_config(instance_path: str, env: Mapping[str, str] | None = None, *,
                instance: Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the dict for ``app.config``.

    ``env`` defaults to ``os.environ``; ``instance`` is what :func:`read_instance_file`
    returned; ``overrides`` are create_app's ``test_config``. For each setting the
    first source that gives it wins: overrides, instance, environment, default.
    Names not in :data:`SETTINGS` pass from ``instance`` and ``overrides`` into
    the result as they are (other Flask settings).
    """
    env = os.environ if env is None else env
    layers = [(dict(overrides or {}), " (create_app overrides)"),
              (dict(instance or {}), f" (instance/{INSTANCE_FILE})")]
    for values, where in layers:
        derived = sorted(values.keys() & DERIVED_KEYS.keys())
        if derived:
            raise ConfigError(f"{derived[0]}{where}: set {DERIVED_KEYS[derived[0]]} instead")

    name = None
    for values, where in layers:
        if _given(values.get("ARCHIVER_ENV")):
            name = str(values["ARCHIVER_ENV"]).strip().lower()
            break
    name = name or (env_str("ARCHIVER_ENV", "development", env) or "development").lower()
    if name not in CONFIGS:
        raise ConfigError(f"ARCHIVER_ENV must be one of {', '.join(CONFIGS)}, got {name!r}")

    cfg = CONFIGS[name].fixed()
    for values, _ in reversed(layers):  # other Flask settings: overrides beat the instance file
        cfg.update({k: v for k, v in values.items() if k not in SETTINGS_BY_NAME and k != "ARCHIVER_ENV"})
    instance_dir = Path(instance_path)
    for setting in SETTINGS:
        value = _resolve(setting, layers, env)
        if value is None:
            value = setting.default_for(name, instance_dir)
        if value is not None and setting.convert is not None:
            value = setting.convert(value)
        cfg[setting.config_key] = value
    cfg["ENV_NAME"] = name
    return cfg


def _resolve(setting: Setting, layers: list[tuple[dict[str, Any], str]], env: Mapping[str, str]) -> Any:
    """The value of the first source that gives one; every source is checked, used or not."""
    raw = env_str(setting.name, None, env)
    found = [setting.from_value(values[setting.name], where)
             for values, where in layers if _given(values.get(setting.name))]
    if raw is not None:
        found.append(setting.from_text(raw))
    return found[0] if found else None


def load_limits_problem(high: int | None, critical: int | None) -> str | None:
    """Why a critical load (stops a run) at or under the pausing load is refused, or None (0 or None: off).
    The one rule for the THROTTLE_* settings and a policy's own fields alike."""
    if high and critical and critical <= high:
        return (f"must be more than max_active_sessions (the critical load stops the run, the other "
                f"pauses it), got {critical} <= {high}")
    return None


#: A policy's throttle field -> the setting that is its default (and whose bounds it shares).
THROTTLE_DEFAULTS = {field: f"THROTTLE_{field.upper()}" for field in (
    "sleep_ms", "sleep_ratio", "max_run_seconds", "max_rows_per_run", "max_replica_lag_seconds",
    "max_active_sessions", "critical_active_sessions")}


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
    problem = load_limits_problem(cfg.get("THROTTLE_MAX_ACTIVE_SESSIONS"), cfg.get("THROTTLE_CRITICAL_ACTIVE_SESSIONS"))
    if problem:
        raise ConfigError(f"THROTTLE_CRITICAL_ACTIVE_SESSIONS {problem}")
