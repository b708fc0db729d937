"""ORM models of the archive database (the default bind)."""
from .policy import ArchivePolicy
from .run import ArchiveRun, RunKind, RunStatus
from .user import Role, TablePermission, User

__all__ = ["ArchivePolicy", "ArchiveRun", "RunKind", "RunStatus", "Role", "TablePermission", "User"]
