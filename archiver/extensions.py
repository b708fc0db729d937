"""Extension singletons, bound to an app by create_app().

Only what services and models need (db, migrate, jwt, scheduler). The HTTP-only
pieces (flask-smorest's Api and Blueprint, the error envelope's schema) are
in ``archiver/api/openapi.py``, so importing a service does not load them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
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
# The archive database's Alembic migrations (`flask --app archiver db …`, init-db). They live in the
# package, not beside the working directory, so an installed or containerised service finds them
# wherever it is started.
migrate = Migrate(directory=str(Path(__file__).resolve().parent / "migrations"))
jwt = JWTManager()
_scheduler: Any = None


def __getattr__(name: str) -> Any:
    """``scheduler``, the Flask-APScheduler singleton, made on first use (commands that never
    schedule anything do not import APScheduler)."""
    global _scheduler
    if name != "scheduler":
        raise AttributeError(name)
    if _scheduler is None:
        from flask_apscheduler import APScheduler
        _scheduler = APScheduler()
    return _scheduler
