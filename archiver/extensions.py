"""Extension singletons, bound to an app by create_app().

Only what services and models need (db, migrate, jwt, scheduler). The HTTP-only
pieces (flask-smorest's Api and Blueprint, the error envelope's schema) are
in ``archiver/api/openapi.py``, so importing a service does not load them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
#: The archive database's Alembic migrations live in the package, not beside the working directory,
#: so an installed or containerised service finds them wherever it is started.
MIGRATIONS_DIR = str(Path(__file__).resolve().parent / "migrations")
_made: dict[str, Any] = {}


def _make_migrate() -> Any:
    from flask_migrate import Migrate
    return Migrate(directory=MIGRATIONS_DIR)


def _make_scheduler() -> Any:
    from flask_apscheduler import APScheduler
    return APScheduler()


def _make_jwt() -> Any:
    from flask_jwt_extended import JWTManager
    return JWTManager()


_MAKERS = {"migrate": _make_migrate, "scheduler": _make_scheduler, "jwt": _make_jwt}


def __getattr__(name: str) -> Any:
    """``migrate`` (Flask-Migrate: ``flask db …``, init-db), ``scheduler`` (Flask-APScheduler) and
    ``jwt`` (Flask-JWT-Extended: the HTTP layer's tokens), each made on first use: commands that
    neither migrate, schedule nor serve import neither Alembic, APScheduler nor PyJWT."""
    if name not in _MAKERS:
        raise AttributeError(name)
    if name not in _made:
        _made[name] = _MAKERS[name]()
    return _made[name]
