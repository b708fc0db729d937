"""/source: what the source database holds, for writing policies (admin)."""
from __future__ import annotations

from typing import Any

import marshmallow as ma

from ..services import tables as table_service
from .docs import error_responses
from .openapi import Blueprint
from .schemas.archives import NoQuerySchema
from .schemas.source import SourceTableListSchema
from .security import admin_required

blp = Blueprint("source", __name__, url_prefix="/source",
                description="The source database's tables, columns and keys (admin)")


@blp.route("/tables", methods=["GET"])
@admin_required
@blp.arguments(NoQuerySchema, location="query", unknown=ma.RAISE)
@blp.response(200, SourceTableListSchema)
@error_responses(blp, (400, 401, 403, 503))
def list_source_tables(_args: dict[str, Any]):
    """Every table of the source database: columns with types, primary key, a suggested date column
    (a DATE/DATETIME/TIMESTAMP column, `created_at` first), and whether it has a policy and archived rows."""
    return {"items": table_service.source_tables()}
