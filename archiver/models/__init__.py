"""ORM models of the archive database (the default bind)."""
from ._types import MAX_ID
from .policy import ArchivePolicy
from .run import FINAL_STATUSES, ArchiveRun, RunKind, RunStatus, ScheduleCheck
from .user import Role, TablePermission, User

__all__ = ["MAX_ID", "ArchivePolicy", "ArchiveRun", "FINAL_STATUSES", "RunKind", "RunStatus", "ScheduleCheck", "Role", "TablePermission", "User"]
