from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._types import BigIntPK, utcnow


class Role(str, enum.Enum):
    ADMIN = "admin"
    USER = "user"


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default=Role.USER.value)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow,
                                                 onupdate=utcnow)
    # Every token carries the version it was issued under (claim ``ver``); bumping it (password
    # change or reset, deactivation, role change) makes all older tokens invalid at once. Last, as
    # migration 0003 added it.
    token_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))

    permissions: Mapped[list["TablePermission"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin",
        order_by="TablePermission.table_name")

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    @property
    def table_names(self) -> list[str]:
        return [p.table_name for p in self.permissions]

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username} {self.role}>"


class TablePermission(db.Model):
    __tablename__ = "table_permissions"
    __table_args__ = (UniqueConstraint("user_id", "table_name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    table_name: Mapped[str] = mapped_column(String(255), nullable=False)

    user: Mapped[User] = relationship(back_populates="permissions")
