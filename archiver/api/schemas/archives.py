"""Request and response schemas of the /archives routes."""
from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from ...models import MAX_ID
from .common import UtcDateTime

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
MAX_RESTORE_IDS = 10_000

class ArchiveFiltersSchema(ma.Schema):
    """Filters shared by listing, export and restore. ``*_from`` inclusive, ``*_to`` exclusive."""

    archived_from = UtcDateTime(metadata={"description": "archived_at >= this (ISO 8601; naive = UTC)"})
    archived_to = UtcDateTime(metadata={"description": "archived_at < this"})
    row_date_from = UtcDateTime(metadata={"description": "row_date >= this"})
    row_date_to = UtcDateTime(metadata={"description": "row_date < this"})
    source_pk = fields.String(validate=validate.Length(min=1, max=512),
                              metadata={"description": 'Exact source primary key: 42, or ["eu",42]'})
    where = fields.String(validate=validate.Length(max=2000), metadata={
        "description": "Condition on the archived row's columns, in the custom_criteria language: "
                       "equality and ranges (`status = 'closed' AND amount >= 100`, "
                       "`created_at BETWEEN '2024-01-01' AND '2024-02-01'`), IN, LIKE, IS NULL",
        "example": "status = 'closed'"})

    @ma.validates_schema
    def _ranges(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = {}
        for lo, hi in (("archived_from", "archived_to"), ("row_date_from", "row_date_to")):
            if data.get(lo) is not None and data.get(hi) is not None and data[lo] > data[hi]:
                errors[lo] = [f"Must not be after {hi}."]
        if errors:
            raise ma.ValidationError(errors)


class ArchiveListQuerySchema(ArchiveFiltersSchema):
    limit = fields.Integer(load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE),
                           metadata={"description": f"Page size, 1..{MAX_PAGE_SIZE}"})
    cursor = fields.String(validate=validate.Length(min=1, max=1024),
                           metadata={"description": "next_cursor of the previous page"})
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]),
                          metadata={"description": "desc (newest first, default) or asc"})
    sort = fields.String(load_default="id", validate=validate.OneOf(["id", "row_date"]),
                         metadata={"description": "id (archive order, default) or row_date (the policy's date "
                                                  "column; rows without one come last)"})


class ArchiveExportQuerySchema(ArchiveFiltersSchema):
    format = fields.String(load_default="jsonl", validate=validate.OneOf(["jsonl", "csv"]),
                           metadata={"description": "jsonl (lossless) or csv (payload flattened into columns)"})
    order = fields.String(load_default="asc", validate=validate.OneOf(["asc", "desc"]))
    raw = fields.Boolean(load_default=False,
                         metadata={"description": "CSV: write values exactly, without neutralising spreadsheet "
                                                  "formulas (admins only; 403 otherwise)"})


class NoQuerySchema(ma.Schema):
    """No query parameters are accepted."""


class RestoreBodySchema(ma.Schema):
    ids = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
                      validate=validate.Length(min=1, max=MAX_RESTORE_IDS),
                      metadata={"description": f"Archive row ids (at most {MAX_RESTORE_IDS})"})
    filters = fields.Nested(ArchiveFiltersSchema, metadata={"description": "Same filters as the listing"})
    all = fields.Boolean(load_default=False,
                         metadata={"description": "Restore every archived row of the table (nothing else given)"})

    @ma.validates_schema
    def _selection(self, data: dict[str, Any], **kwargs: Any) -> None:
        has_filters = bool({k: v for k, v in (data.get("filters") or {}).items() if v is not None})
        has_ids = data.get("ids") is not None
        if data.get("all"):
            if has_ids or "filters" in data:
                raise ma.ValidationError('"all" cannot be combined with "ids" or "filters".', "all")
        elif not has_ids and not has_filters:
            raise ma.ValidationError('Give "ids", non-empty "filters", or "all": true.', "_schema")


# --- responses (documentation; rows are serialised with orjson) -------------

class PolicySummarySchema(ma.Schema):
    date_column = fields.String()
    archive_after_days = fields.Integer()
    delete_after_days = fields.Integer()
    enabled = fields.Boolean()


class ArchiveTableSchema(ma.Schema):
    table_name = fields.String()
    row_count = fields.Integer()
    oldest_archived_at = UtcDateTime(allow_none=True)
    newest_archived_at = UtcDateTime(allow_none=True)
    oldest_row_date = UtcDateTime(allow_none=True)
    newest_row_date = UtcDateTime(allow_none=True)
    policy = fields.Nested(PolicySummarySchema, allow_none=True)


class ArchiveTableListSchema(ma.Schema):
    items = fields.List(fields.Nested(ArchiveTableSchema))


class ArchivedRowSchema(ma.Schema):
    id = fields.Integer()
    source_pk = fields.String(metadata={"description": 'Canonical source key: "42" or "[\\"eu\\",42]"'})
    row_date = UtcDateTime(allow_none=True)
    archived_at = UtcDateTime()
    payload = fields.Dict(metadata={"description": "The archived row, JSON-encoded per column"})


class ObjectRowSchema(ma.Schema):
    table_name = fields.String()
    id = fields.Integer()
    source_pk = fields.String()
    depth = fields.Integer(metadata={"description": "0 for the row the others moved with, 1 for its children, ..."})


class ArchivedObjectSchema(ma.Schema):
    root_id = fields.Integer(allow_none=True, metadata={"description": "The archived row this one moved with "
                                                                       "(null: it moved by its own table's policy)"})
    rows = fields.List(fields.Nested(ObjectRowSchema), metadata={
        "description": "The other archived rows of its object, in tables the caller may read (first 1000)"})
    hidden_rows = fields.Integer(metadata={"description": "Rows of the object in tables the caller may not read"})
    truncated = fields.Boolean()


class ArchivedRowDetailSchema(ArchivedRowSchema):
    depth = fields.Integer()
    object = fields.Nested(ArchivedObjectSchema, metadata={
        "description": "The rows archived together with this one (a parent row and its child-table rows)"})


class ArchivedRowPageSchema(ma.Schema):
    items = fields.List(fields.Nested(ArchivedRowSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "Pass as ?cursor= for the next page; "
                                                                          "null on the last page"})


class RestoreResultSchema(ma.Schema):
    run_id = fields.Integer()
    status = fields.String(metadata={"description": "succeeded, or partial when rows were left in the archive"})
    restored = fields.Integer()
    already_present = fields.Integer(metadata={"description": "identical row already in the source; "
                                                              "archive copy removed"})
    conflict_count = fields.Integer()
    conflicts = fields.List(fields.String(), metadata={"description": "source_pk of rows whose key exists in the "
                                                                      "source (first 100); left in the archive"})
    failed_count = fields.Integer()
    failed = fields.List(fields.String(), metadata={"description": "source_pk of rows that could not be inserted "
                                                                   "(first 100); left in the archive"})
    not_found = fields.List(fields.Integer(), metadata={"description": "requested ids not archived for this table "
                                                                    "(or not matching the filters)"})
    children = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "rows of child tables restored with them (parents first), by table"})
    conflict_tables = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "rows whose key exists in the source with other values, by table: their whole object "
                       "stays archived"})
