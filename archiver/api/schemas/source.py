"""GET /source/tables."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields


class SourceColumnSchema(ma.Schema):
    name = fields.String()
    type = fields.String(metadata={"description": "The column's type as the database declares it", "example": "TIMESTAMP"})
    nullable = fields.Boolean()
    primary_key = fields.Boolean()


class SourceTableSchema(ma.Schema):
    name = fields.String()
    columns = fields.List(fields.Nested(SourceColumnSchema))
    primary_key = fields.List(fields.String(), metadata={"description": "Empty: no primary key (no policy possible)"})
    suggested_date_column = fields.String(allow_none=True, metadata={
        "description": "A DATE/DATETIME/TIMESTAMP column a policy would likely use (SQLite: a TEXT column "
                       "with a date-like name); null if none"})
    has_policy = fields.Boolean()
    archived_rows = fields.Integer()


class SourceTableListSchema(ma.Schema):
    items = fields.List(fields.Nested(SourceTableSchema))
