"""ORM models of the archive database (the default bind)."""
from ._types import MAX_ID
from .audit import AuditEvent
from .policy import ArchivePolicy
from .run import FINAL_STATUSES, ArchiveRun, RunKind, RunStatus, ScheduleCheck
from .token import TokenFamily
from .user import Role, TablePermission, User

__all__ = ["MAX_ID", "ArchivePolicy", "ArchiveRun", "AuditEvent", "FINAL_STATUSES", "RunKind", "RunStatus", "Role",
           "ScheduleCheck", "TablePermission", "TokenFamily", "User"]
