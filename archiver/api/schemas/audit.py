"""Schemas of the /audit routes."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ...models import MAX_ID
from ...services.audit import ACTIONS, MAX_PAGE_SIZE, OUTCOMES
from .common import UtcDateTime


class AuditFiltersSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    action = fields.String(validate=validate.Length(1, 40), metadata={
        "description": "An action (`archive.export`), or a prefix ending in `.` (`auth.`). Actions: "
                       + ", ".join(ACTIONS)})
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))
    actor = fields.String(validate=validate.Length(1, 64), metadata={"description": "Username of the actor"})
    actor_id = fields.Integer(validate=validate.Range(1, MAX_ID))
    target = fields.String(validate=validate.Length(1, 255),
                           metadata={"description": "What was acted on: a table name, or `user:<id>`"})
    at_from = UtcDateTime(metadata={"description": "Events at or after this instant (ISO 8601; naive = UTC)"})
    at_to = UtcDateTime(metadata={"description": "Events before this instant"})

    @ma.validates_schema
    def _range(self, data, **kwargs):
        if data.get("at_from") and data.get("at_to") and data["at_from"] > data["at_to"]:
            raise ma.ValidationError("Must not be after at_to.", "at_from")


class AuditListQuerySchema(AuditFiltersSchema):
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_PAGE_SIZE),
                           metadata={"description": f"Page size (1-{MAX_PAGE_SIZE})"})
    before_id = fields.Integer(validate=validate.Range(1, MAX_ID), metadata={
        "description": "Keyset cursor: only events with a smaller id (the previous page's next_before_id)"})


class AuditExportQuerySchema(AuditFiltersSchema):
    format = fields.String(load_default="jsonl", validate=validate.OneOf(["jsonl", "csv"]))


class AuditEventSchema(ma.Schema):
    id = fields.Integer()
    at = UtcDateTime()
    action = fields.String()
    outcome = fields.String(metadata={"enum": list(OUTCOMES)})
    actor_id = fields.Integer(allow_none=True)
    actor = fields.String(allow_none=True, metadata={"description": "Username, or cli / scheduler / system; "
                                                                    "null for an anonymous attempt"})
    address = fields.String(allow_none=True, metadata={"description": "Client address"})
    target = fields.String(allow_none=True)
    details = fields.Raw(allow_none=True, metadata={"description": "What else is known: filters and row counts of a "
                                                                   "read, before/after of a change, ..."})


class AuditPageSchema(ma.Schema):
    items = fields.List(fields.Nested(AuditEventSchema))
    next_before_id = fields.Integer(allow_none=True)
    limit = fields.Integer()
