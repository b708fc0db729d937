"""config/: one table of settings; instance/config.py parsed and validated like the environment."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from archiver import register_config
from archiver.extensions import db
from archiver.services import database, users
from config import SETTINGS, ConfigError, load_config, read_instance_file, validate_config
from tests.conftest import PASSWORD, make_app

ROOT = Path(__file__).resolve().parent.parent
URLS = {"SOURCE_DATABASE_URL": "sqlite://", "ARCHIVE_DATABASE_URL": "sqlite://"}
PRODUCTION = {"ARCHIVER_ENV": "production", "JWT_SECRET_KEY": "p" * 40, **URLS}


def write_instance(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.py").write_text(text)
    return tmp_path


def app_config(tmp_path: Path, monkeypatch, env: dict[str, str], test_config=None) -> dict:
    """What create_app's register_config makes of ``env`` and tmp_path/config.py."""
    for s in SETTINGS:
        monkeypatch.delenv(s.name, raising=False)
    monkeypatch.delenv("ARCHIVER_ENV", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = Flask("archiver", instance_path=str(tmp_path), instance_relative_config=True)
    register_config(app, test_config)
    return app.config


def refused(tmp_path, monkeypatch, capsys, env, test_config=None) -> str:
    with pytest.raises(SystemExit) as exc:
        app_config(tmp_path, monkeypatch, env, test_config)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("archiver: configuration error: ")
    return err.strip()


# --- the table ---------------------------------------------------------------

def test_every_setting_gets_its_default_from_the_table(tmp_path, monkeypatch):
    cfg = app_config(tmp_path, monkeypatch, PRODUCTION)
    assert cfg["ARCHIVE_INTERVAL_SECONDS"] == 300 and cfg["PURGE_CRON_HOUR"] == 2
    assert cfg["SCHEDULER_MISFIRE_GRACE_SECONDS"] == 60 and cfg["LOCK_STALE_SECONDS"] == 30
    assert cfg["LOCK_HEARTBEAT_SECONDS"] == 5 and cfg["READY_TIMEOUT_SECONDS"] == 2
    assert cfg["BCRYPT_ROUNDS"] == 12 and cfg["IN_SERVER_MOVES"] is True and cfg["SCHEDULER_ENABLED"] is True
    assert cfg["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(minutes=15)
    assert cfg["JWT_REFRESH_TOKEN_EXPIRES"] == timedelta(days=7)
    for s in SETTINGS:
        assert s.config_key in cfg


def test_testing_has_its_own_defaults(tmp_path, monkeypatch):
    cfg = app_config(tmp_path, monkeypatch, {"ARCHIVER_ENV": "testing"})
    assert cfg["BCRYPT_ROUNDS"] == 4 and cfg["SCHEDULER_ENABLED"] is False
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "sqlite://" and cfg["TESTING"] is True


def test_every_setting_is_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Configuration"):readme.index("## API")]
    for s in SETTINGS:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{s.name}`")), None)
        assert row is not None, f"{s.name} is not documented"
        if s.default is not None and not s.by_env:
            shown = str(s.default).lower() if isinstance(s.default, bool) else str(s.default)
            assert f"`{shown}`" in row, f"README's default for {s.name} differs from config/"


def test_bad_environment_values_name_the_variable():
    for env, pattern in ((({"ARCHIVE_INTERVAL_SECONDS": "soon"}), r"ARCHIVE_INTERVAL_SECONDS must be an integer"),
                         ({"PURGE_CRON_HOUR": "24"}, r"PURGE_CRON_HOUR must be <= 23, got 24"),
                         ({"LOCK_STALE_SECONDS": "2"}, r"LOCK_STALE_SECONDS must be >= 3"),
                         ({"IN_SERVER_MOVES": "maybe"}, r"IN_SERVER_MOVES must be a boolean")):
        with pytest.raises(ConfigError, match=pattern):
            load_config("/nonexistent", {"ARCHIVER_ENV": "testing", **env})


# --- instance/config.py --------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ('ARCHIVE_INTERVAL_SECONDS = "300"\n',
     "ARCHIVE_INTERVAL_SECONDS (instance/config.py) must be an integer, got '300' (str)"),
    ("ARCHIVE_INTERVAL_SECONDS = 1\n", "ARCHIVE_INTERVAL_SECONDS (instance/config.py) must be >= 5, got 1"),
    ("PURGE_CRON_HOUR = 25\n", "PURGE_CRON_HOUR (instance/config.py) must be <= 23, got 25"),
    ("BCRYPT_ROUNDS = True\n", "BCRYPT_ROUNDS (instance/config.py) must be an integer, got True (bool)"),
    ('IN_SERVER_MOVES = "no"\n', "IN_SERVER_MOVES (instance/config.py) must be a boolean (True/False), got 'no'"),
    ('JWT_SECRET_KEY = "x"\n', "JWT_SECRET_KEY must be set and at least 32 bytes long"),
    ("SOURCE_DATABASE_URL = 42\n", "SOURCE_DATABASE_URL (instance/config.py) must be a string, got 42 (int)"),
    ("import datetime\nJWT_ACCESS_TOKEN_EXPIRES = datetime.timedelta(days=30)\n",
     "JWT_ACCESS_TOKEN_EXPIRES (instance/config.py): set JWT_ACCESS_TOKEN_MINUTES instead"),
    ('SQLALCHEMY_DATABASE_URI = "sqlite://"\n',
     "SQLALCHEMY_DATABASE_URI (instance/config.py): set ARCHIVE_DATABASE_URL instead"),
    ('ARCHIVER_ENV = "staging"\n', "ARCHIVER_ENV must be one of development, testing, production"),
    ("ARCHIVE_INTERVAL_SECONDS = (\n", "config.py could not be loaded: SyntaxError"),
])
def test_a_bad_instance_file_is_refused_like_a_bad_environment(tmp_path, monkeypatch, capsys, text, message):
    write_instance(tmp_path, text)
    assert message in refused(tmp_path, monkeypatch, capsys, PRODUCTION)


def test_a_short_secret_in_the_instance_file_is_refused_outside_development(tmp_path, monkeypatch, capsys):
    write_instance(tmp_path, 'JWT_SECRET_KEY = "0123456789"\n')
    assert refused(tmp_path, monkeypatch, capsys, {**PRODUCTION, "ARCHIVER_ENV": "testing"}).endswith(
        "JWT_SECRET_KEY must be set and at least 32 bytes long")
    # Development accepts any secret (the short one is used as given).
    cfg = app_config(tmp_path, monkeypatch, {**URLS, "ARCHIVER_ENV": "development"})
    assert cfg["JWT_SECRET_KEY"] == "0123456789"


def test_good_instance_values_are_applied(tmp_path, monkeypatch):
    write_instance(tmp_path, "ARCHIVE_INTERVAL_SECONDS = 120\nJWT_ACCESS_TOKEN_MINUTES = 30\n"
                             "IN_SERVER_MOVES = False\nSECRET_KEY = 'cursor-signing-key'\n"
                             "ARCHIVE_DATABASE_URL = 'sqlite:////tmp/elsewhere.db'\nlower_case = 'ignored'\n")
    cfg = app_config(tmp_path, monkeypatch, PRODUCTION)
    assert cfg["ARCHIVE_INTERVAL_SECONDS"] == 120
    assert cfg["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(minutes=30)
    assert cfg["IN_SERVER_MOVES"] is False
    assert cfg["SQLALCHEMY_DATABASE_URI"] == "sqlite:////tmp/elsewhere.db"
    assert cfg["SECRET_KEY"] == "cursor-signing-key"  # another Flask setting passes as it is
    assert "lower_case" not in cfg


def test_instance_file_overrides_the_environment_and_create_app_overrides_both(tmp_path, monkeypatch):
    write_instance(tmp_path, "ARCHIVE_INTERVAL_SECONDS = 120\nPURGE_CRON_HOUR = 4\n")
    env = {**PRODUCTION, "ARCHIVE_INTERVAL_SECONDS": "600", "PURGE_CRON_HOUR": "5", "LOCK_STALE_SECONDS": "90"}
    cfg = app_config(tmp_path, monkeypatch, env, {"PURGE_CRON_HOUR": 6})
    assert cfg["ARCHIVE_INTERVAL_SECONDS"] == 120  # instance beats environment
    assert cfg["PURGE_CRON_HOUR"] == 6  # create_app's test_config beats the instance file
    assert cfg["LOCK_STALE_SECONDS"] == 90  # the environment still sets what the file does not


def test_a_bad_environment_value_is_refused_even_when_the_instance_file_overrides_it(tmp_path, monkeypatch,
                                                                                    capsys):
    write_instance(tmp_path, "ARCHIVE_INTERVAL_SECONDS = 120\n")
    err = refused(tmp_path, monkeypatch, capsys, {**PRODUCTION, "ARCHIVE_INTERVAL_SECONDS": "soon"})
    assert err.endswith("ARCHIVE_INTERVAL_SECONDS must be an integer, got 'soon'")


def test_create_app_overrides_are_checked_too(tmp_path, monkeypatch, capsys):
    err = refused(tmp_path, monkeypatch, capsys, PRODUCTION, {"LOCK_STALE_SECONDS": "600"})
    assert "LOCK_STALE_SECONDS (create_app overrides) must be an integer" in err


def test_read_instance_file_keeps_upper_case_names_only(tmp_path):
    assert read_instance_file(str(tmp_path)) == {}
    write_instance(tmp_path, "import os\nX = 1\ny = 2\n")
    assert read_instance_file(str(tmp_path)) == {"X": 1}


def test_validate_config_on_the_loaded_instance_values():
    cfg = load_config("/nonexistent", {"ARCHIVER_ENV": "production", **URLS},
                      instance={"JWT_SECRET_KEY": "s" * 32})
    validate_config(cfg)
    assert cfg["ENV_NAME"] == "production"


# --- services read the configured value -----------------------------------------

def test_services_use_the_configured_bcrypt_cost(databases):
    app = make_app(databases, BCRYPT_ROUNDS=5)
    with app.app_context():
        database.init_db()
        user = users.create_user("costly", PASSWORD)
        assert re.match(r"\$2[aby]\$05\$", user.password_hash)
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
