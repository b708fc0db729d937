"""ORM models of the archive database (the default bind)."""
from ._types import MAX_ID
from .audit import AuditEvent
from .policy import ArchivePolicy
from .run import ArchiveRun, RunKind, RunStatus
from .token import TokenFamily
from .user import Role, TablePermission, User

__all__ = ["MAX_ID", "ArchivePolicy", "ArchiveRun", "AuditEvent", "RunKind", "RunStatus", "Role", "TablePermission",
           "TokenFamily", "User"]
