"""ORM models of the archive database (the default bind)."""
from ._types import MAX_ID
from .policy import ArchivePolicy
from .run import ArchiveRun, RunKind, RunStatus
from .user import Role, TablePermission, User

__all__ = ["MAX_ID", "ArchivePolicy", "ArchiveRun", "RunKind", "RunStatus", "Role", "TablePermission", "User"]
