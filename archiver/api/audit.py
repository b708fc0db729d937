"""/audit: the audit trail (admin): who logged in, changed users, grants and policies, and read,
exported or restored archived rows."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import marshmallow as ma
import orjson
from flask import Response, stream_with_context

from ..services import audit as audit_service
from ..services.archives import neutralise
from ..services.source_db import archive_engine
from .docs import error_responses
from .openapi import Blueprint
from .schemas.audit import AuditExportQuerySchema, AuditFiltersSchema, AuditListQuerySchema, AuditPageSchema
from .security import admin_required, current_actor

blp = Blueprint("audit", __name__, url_prefix="/audit", description="Audit trail (admin)")

_FILTERS = tuple(AuditFiltersSchema().fields)
CSV_COLUMNS = ("id", "at", "action", "outcome", "actor_id", "actor", "address", "target", "details")


def _filters(args: dict[str, Any]) -> audit_service.AuditFilters:
    return audit_service.AuditFilters.from_mapping({k: args.get(k) for k in _FILTERS})


def _errors(*statuses: int):
    return error_responses(blp, statuses, {403: "Admin role required"})


@blp.route("/", strict_slashes=False, methods=["GET"])
@blp.response(200, AuditPageSchema)
@_errors(400, 401, 403)
@admin_required
@blp.arguments(AuditListQuerySchema, location="query", unknown=ma.RAISE)
def list_events(args: dict[str, Any]):
    """Audit events newest first, filtered; keyset-paginated with `before_id`."""
    items, next_before = audit_service.list_events(_filters(args), limit=args["limit"],
                                                   before_id=args.get("before_id"))
    return {"items": items, "next_before_id": next_before, "limit": args["limit"]}


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, (dict, list)):
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    return '"' + neutralise(text).replace('"', '""') + '"'


def _csv(chunks):
    yield (",".join(CSV_COLUMNS) + "\r\n").encode()
    for events in chunks:
        yield "".join(",".join(_csv_cell(e[c]) for c in CSV_COLUMNS) + "\r\n" for e in events).encode("utf-8")


def _jsonl(chunks):
    for events in chunks:
        yield b"".join(orjson.dumps(e) + b"\n" for e in events)


@blp.route("/export", methods=["GET"])
@blp.doc(responses={200: {"description": "Every matching event, oldest first, as an attachment (JSON Lines, or "
                                         "CSV with spreadsheet formulas neutralised)",
                          "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                      "text/csv": {"schema": {"type": "string"}}}}})
@_errors(400, 401, 403)
@admin_required
@blp.arguments(AuditExportQuerySchema, location="query", unknown=ma.RAISE)
def export_events(args: dict[str, Any]):
    """Stream the (filtered) audit trail as JSON Lines or CSV; the export itself is audited."""
    filters = _filters(args)
    audit_service.record_now(audit_service.AUDIT_EXPORT, current_actor(),
                             details={"format": args["format"], "filters": filters.as_details()})
    chunks = audit_service.iter_events(archive_engine(), filters)
    stream, mimetype = (_csv(chunks), "text/csv") if args["format"] == "csv" else (_jsonl(chunks),
                                                                                   "application/x-ndjson")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    resp = Response(stream_with_context(stream), mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{args["format"]}"'
    return resp
