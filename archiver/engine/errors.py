"""Engine failures with messages that are safe to store in a run record.

Every message here names tables, columns and error classes only — never SQL
text, bound values or connection strings — except :class:`InvalidPolicy`'s
date-column problems, which quote one offending stored value (cut short) so an
operator can see what is wrong. :func:`archiver.engine.failures.describe_error`
turns any exception into such a message.
"""
from __future__ import annotations


class EngineError(Exception):
    """An archival failure whose ``str()`` is short and safe to show."""


class InvalidPolicy(EngineError):
    """A policy this source table cannot run.

    ``problems`` maps policy fields to messages for the field (an API's 400
    details: they never repeat the request's own text back); ``str()`` is one
    sentence for a run record or a log, naming the table.
    """

    def __init__(self, problems: dict[str, list[str]], message: str | None = None) -> None:
        self.problems = {field: list(messages) for field, messages in problems.items() if messages}
        super().__init__(message or "; ".join(_labelled(field, m) for field, ms in self.problems.items() for m in ms))


def _labelled(field: str, message: str) -> str:
    return f"invalid custom_criteria: {message}" if field == "custom_criteria" else message


class TableNotFound(InvalidPolicy):
    def __init__(self, table_name: str) -> None:
        super().__init__({"table_name": ["Table not found in the source database"]},
                         f"source table '{table_name}' does not exist")


class NoPrimaryKey(InvalidPolicy):
    def __init__(self, table_name: str) -> None:
        super().__init__({"table_name": ["Table has no primary key; archiving needs one to track rows"]},
                         f"source table '{table_name}' has no primary key; it cannot be archived safely")


class ColumnNotFound(InvalidPolicy):
    def __init__(self, table_name: str, column: str) -> None:
        super().__init__({"date_column": [f"Column not found in table {table_name}"]},
                         f"column '{column}' does not exist in source table '{table_name}'")


class UnsupportedDateColumn(InvalidPolicy):
    def __init__(self, table_name: str, column: str, type_name: str, detail: str = "") -> None:
        message = (f"column '{column}' of '{table_name}' is {type_name}, not a date/time column; "
                   "expected DATE, DATETIME or TIMESTAMP")
        super().__init__({"date_column": [message + (f" ({detail})" if detail else "")]})


class NotADateValue(InvalidPolicy):
    def __init__(self, table_name: str, column: str, value: str, detail: str) -> None:
        super().__init__({"date_column": [f"column '{column}' of '{table_name}' holds {value}: not a date/time "
                                          f"column the engine can compare ({detail})"]})


class LeaseLost(EngineError):
    """The table lock is no longer ours; ``side`` is ``"archive"`` when the archive database connection
    holding it failed (rather than another runner taking it over)."""

    def __init__(self, name: str, why: str = "it was taken over by another runner", side: str | None = None) -> None:
        super().__init__(f"lost the table lock on '{name}' ({why}); stopped after the last committed batch")
        self.side = side


class DatabaseError(EngineError):
    """A DB-API failure on one side, described by class and error code only."""

    def __init__(self, side: str, reason: str) -> None:
        super().__init__(f"{side} database error: {reason}")
        self.side = side


class LockConflict(DatabaseError):
    """A lock wait, deadlock or statement timeout: the statement (maybe its transaction) was undone."""


class SchemaLockBusy(EngineError):
    """Another process held the lock on schema changes (``Backend.schema_lock``) for the whole wait."""
