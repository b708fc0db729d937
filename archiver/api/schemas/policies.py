"""Archive policy bodies (POST /config) and their representation."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields
from marshmallow.validate import Length, OneOf, Range

from ...engine.policy import BATCH_MODES
from ...services import policies as rules
from .common import StrictFloat, UtcDateTime


class NamedChildSchema(ma.Schema):
    """A child table the policy names: it moves with its parent rows like an ON DELETE CASCADE child."""

    class Meta:
        unknown = ma.RAISE

    table = fields.String(required=True, validate=Length(1, rules.NAME_MAX_CHARS),
                          metadata={"description": "The child table", "example": "invoice_line"})
    columns = fields.List(fields.String(validate=Length(1, rules.NAME_MAX_CHARS)), required=True,
                          validate=Length(1, rules.CHILD_COLUMNS_MAX),
                          metadata={"description": "Its columns that hold the parent's key", "example": ["invoice_id"]})
    references = fields.List(fields.String(validate=Length(1, rules.NAME_MAX_CHARS)), required=True,
                             validate=Length(1, rules.CHILD_COLUMNS_MAX),
                             metadata={"description": "The parent's columns they match", "example": ["invoice_id"]})
    parent = fields.String(load_default=None, allow_none=True, validate=Length(1, rules.NAME_MAX_CHARS),
                           metadata={"description": "The parent table (default: the policy's table; or another "
                                                    "child, for a grandchild)"})


def _throttle_field(name: str, description: str) -> fields.Field:
    """A throttle field: null takes the service's THROTTLE_* default, 0 turns it off for this policy."""
    kind, low, high = rules.THROTTLE_FIELDS[name]
    options: dict = {"strict": True} if kind is int else {"allow_nan": False}
    cls = fields.Integer if kind is int else StrictFloat
    return cls(load_default=None, allow_none=True, validate=Range(low, high), **options,
               metadata={"description": f"{description}. Null: the THROTTLE_{name.upper()} setting; 0: off."})


class PolicyInSchema(ma.Schema):
    """The whole policy of one source table; unknown fields are rejected."""

    class Meta:
        unknown = ma.RAISE

    table_name = fields.String(required=True, validate=Length(1, rules.NAME_MAX_CHARS),
                               metadata={"description": "Source table (must exist and have a primary key)",
                                         "example": "orders"})
    date_column = fields.String(load_default=rules.DEFAULTS["date_column"],
                                validate=Length(1, rules.NAME_MAX_CHARS),
                                metadata={"description": "DATE/DATETIME/TIMESTAMP column compared with the "
                                                         "cut-off (TEXT with ISO-8601 dates on SQLite)"})
    archive_after_days = fields.Integer(required=True, strict=True,
                                        validate=Range(rules.ARCHIVE_AFTER_MIN, rules.MAX_DAYS),
                                        metadata={"description": "Archive rows whose date is older than this",
                                                  "example": 30})
    delete_after_days = fields.Integer(required=True, strict=True,
                                       validate=Range(rules.DELETE_AFTER_MIN, rules.MAX_DAYS),
                                       metadata={"description": "Purge archived rows this long after archiving",
                                                 "example": 365})
    custom_criteria = fields.String(load_default=None, allow_none=True,
                                    validate=Length(max=rules.CRITERIA_MAX_CHARS,
                                                    error=rules.CRITERIA_TOO_LONG),
                                    metadata={"description": "Extra SQL boolean filter over the table's columns; "
                                                             "it can only narrow the age filter",
                                              "example": "status = 'closed'"})
    batch_size = fields.Integer(load_default=rules.DEFAULTS["batch_size"], strict=True, allow_none=True,
                                validate=Range(rules.BATCH_SIZE_MIN, rules.BATCH_SIZE_MAX),
                                metadata={"description": "Rows per batch: the largest batch when batch_mode is "
                                                         "adaptive (null: the engine's ceiling, BATCH_MAX_ROWS), "
                                                         "every batch's size when fixed"})
    batch_mode = fields.String(load_default=rules.DEFAULTS["batch_mode"], validate=OneOf(BATCH_MODES),
                               metadata={"description": "adaptive (default): batches grow while they commit well "
                                                        "under BATCH_TARGET_MS and shrink on lock conflicts; "
                                                        "fixed: every batch is batch_size rows"})
    enabled = fields.Boolean(load_default=rules.DEFAULTS["enabled"])
    sleep_ms = _throttle_field("sleep_ms", "Sleep this long between batches (pt-archiver --sleep)")
    sleep_ratio = _throttle_field("sleep_ratio", "Also sleep this fraction of the last batch's duration "
                                                 "(pt-archiver --sleep-coef)")
    max_run_seconds = _throttle_field("max_run_seconds", "Stop cleanly between batches after this long; the "
                                                         "run is partial and says why (--run-time)")
    max_rows_per_run = _throttle_field("max_rows_per_run", "Stop cleanly between batches after this many rows")
    max_replica_lag_seconds = _throttle_field("max_replica_lag_seconds", "Pause while replication lag is over this "
                                                                         "(PostgreSQL, MariaDB/MySQL sources)")
    max_active_sessions = _throttle_field("max_active_sessions", "Pause while more sessions than this run a "
                                                                 "statement on the source (gh-ost --max-load)")
    critical_active_sessions = _throttle_field("critical_active_sessions", "Stop the run when more sessions than "
                                                                           "this run a statement (--critical-load)")
    children = fields.List(fields.Nested(NamedChildSchema), load_default=list,
                           validate=Length(max=rules.CHILDREN_MAX),
                           metadata={"description": "Child tables to move with each row, beyond those that reference "
                                                    "it with ON DELETE CASCADE (found by themselves)"})


class _PolicyFieldsSchema(PolicyInSchema):
    """Some fields of a policy (its table comes from the path); omitted fields are left as they are."""

    class Meta:
        unknown = ma.RAISE
        exclude = ("table_name",)

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)


class PolicyPatchSchema(_PolicyFieldsSchema):
    """The fields of a policy to change (PATCH); the others keep their stored values."""

    @ma.validates_schema
    def _not_empty(self, data, **kwargs) -> None:
        if not data:
            raise ma.ValidationError("Give at least one field to change.", "_schema")


class PolicyPreviewSchema(_PolicyFieldsSchema):
    """Optional: policy fields to try before saving them (over the stored policy, if any), and how
    many sample rows to return."""

    sample_rows = fields.Integer(strict=True, validate=Range(0, 50),
                                 metadata={"description": "Qualifying rows to return as samples (default 5)"})


class PolicyListSchema(ma.Schema):
    items = fields.List(fields.Nested(lambda: PolicySchema()))


class ThrottlesSchema(ma.Schema):
    """A policy's throttle fields as stored (null: the THROTTLE_* setting; 0: off), shown by
    GET /config and the preview."""

    sleep_ms = fields.Integer(allow_none=True)
    sleep_ratio = fields.Float(allow_none=True)
    max_run_seconds = fields.Integer(allow_none=True)
    max_rows_per_run = fields.Integer(allow_none=True)
    max_replica_lag_seconds = fields.Float(allow_none=True)
    max_active_sessions = fields.Integer(allow_none=True)
    critical_active_sessions = fields.Integer(allow_none=True)


class PolicySchema(ThrottlesSchema):
    """A stored policy."""

    id = fields.Integer(dump_only=True)
    table_name = fields.String()
    date_column = fields.String()
    archive_after_days = fields.Integer()
    delete_after_days = fields.Integer()
    custom_criteria = fields.String(allow_none=True)
    batch_size = fields.Integer(allow_none=True)
    batch_mode = fields.String()
    enabled = fields.Boolean()
    children = fields.Method("_children", metadata={"description": "Child tables the policy names"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    updated_by = fields.String(allow_none=True, metadata={"description": "Username of the last change "
                                                                         "(shown to admins only)"})

    def _children(self, policy) -> list:
        return list(policy.children or [])
