"""/archives routes: browse, export and restore archived rows (per-table RBAC).

Admins see every table; a user only the tables granted. A table nobody has
a policy or archived rows for is a 404 for admins and a 403 for users (users
never learn which tables exist). Restore is admin-only.
"""
from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, stream_with_context

from ..engine.restore import ArchiveFilters
from ..errors import Forbidden
from ..services import archives
from .openapi import Blueprint
from .schemas.archives import (ArchiveExportQuerySchema, ArchiveFiltersSchema, ArchiveListQuerySchema,
                               ArchivedRowDetailSchema, ArchivedRowPageSchema, ArchiveTableListSchema, NoQuerySchema,
                               RestoreBodySchema, RestoreResultSchema)
from .docs import error_responses
from .security import (admin_required, current_actor, is_admin, login_required, permitted_tables,
                       require_table_access)

blp = Blueprint("archives", __name__, url_prefix="/archives",
                description="Archived rows: browse, export and restore")

_FILTER_FIELDS = tuple(ArchiveFiltersSchema().fields)
# A schema instance, not the class: webargs would build (deep-copy the fields of) a new schema per
# request for a class. Loading keeps no state on the schema, so one instance serves every thread.
_LIST_QUERY = ArchiveListQuerySchema()


def _filters(args: dict[str, Any]) -> ArchiveFilters:
    return ArchiveFilters.from_mapping({k: args.get(k) for k in _FILTER_FIELDS})


def _json(body: bytes) -> Response:
    return Response(body, mimetype="application/json")


def _errors(*statuses: int):
    return error_responses(blp, statuses)


@blp.route("/", strict_slashes=False, methods=["GET"])
@login_required
@blp.arguments(NoQuerySchema, location="query", unknown=ma.RAISE)
@blp.response(200, ArchiveTableListSchema)
@_errors(400, 401)
def list_tables(_args: dict[str, Any]):
    """Archived tables the caller may see, with row counts, date ranges and policy.

    Admins: every table with a policy or archived rows. Users: their granted
    tables (zero counts where nothing is archived yet).
    """
    granted = None if is_admin() else permitted_tables()
    return {"items": archives.table_summaries(granted)}


@blp.route("/<string:table_name>", methods=["GET"])
@login_required
@blp.arguments(_LIST_QUERY, location="query", unknown=ma.RAISE)
@blp.response(200, ArchivedRowPageSchema)
@_errors(400, 401, 403, 404)
def list_rows(args: dict[str, Any], table_name: str):
    """Archived rows of one table, newest first, keyset-paginated and filterable.

    Follow ``next_cursor`` (opaque, bound to the table, order and filters)
    until it is null. ``*_from`` bounds are inclusive, ``*_to`` exclusive.
    """
    require_table_access(table_name)
    body = archives.list_rows_json(table_name, _filters(args), actor=current_actor(), order=args["order"],
                                   limit=args["limit"], cursor=args.get("cursor"), must_exist=is_admin(),
                                   sort=args["sort"])
    return _json(body)


@blp.route("/<string:table_name>/<id:row_id>", methods=["GET"])
@login_required
@blp.arguments(NoQuerySchema, location="query", unknown=ma.RAISE)
@blp.response(200, ArchivedRowDetailSchema)
@_errors(400, 401, 403, 404)
def get_row(_args: dict[str, Any], table_name: str, row_id: int):
    """One archived row; 404 if it does not exist or belongs to another table."""
    require_table_access(table_name)
    return _json(archives.get_row_json(table_name, row_id, None if is_admin() else permitted_tables(),
                                       actor=current_actor()))


@blp.route("/<string:table_name>/export", methods=["GET"])
@login_required
@blp.arguments(ArchiveExportQuerySchema, location="query", unknown=ma.RAISE)
@blp.doc(responses={200: {
    "description": "The archive streamed as an attachment (JSON Lines: one row object per line; "
                   "CSV: id, source_pk, row_date, archived_at, then payload.<column>; "
                   "NULL is an unquoted empty field, every value is quoted; a value starting with "
                   "=, +, -, @, tab or CR gets a leading ' unless raw=true)",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}}}}})
@_errors(400, 401, 403, 404)
def export_rows(args: dict[str, Any], table_name: str):
    """Stream the whole (filtered) archive of a table as JSON Lines or CSV.

    CSV cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`,
    tab or CR) get a leading `'`; admins may ask for `raw=true` to get every value exactly.
    JSON Lines is always exact. Every export is audited.
    """
    require_table_access(table_name)
    admin = is_admin()
    if args["raw"] and not admin:
        raise Forbidden("raw=true (CSV without formula neutralisation) is for admins only")
    stream = archives.export_rows(table_name, _filters(args), actor=current_actor(), fmt=args["format"],
                                  order=args["order"], raw=args["raw"], must_exist=admin)
    resp = Response(stream_with_context(stream.chunks), mimetype=stream.mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{stream.filename}"'
    return resp


@blp.route("/<string:table_name>/restore", methods=["POST"])
@admin_required
@blp.arguments(RestoreBodySchema)
@blp.response(200, RestoreResultSchema)
@_errors(400, 401, 403, 404, 409, 413)
def restore_rows(body: dict[str, Any], table_name: str):
    """Put archived rows back into the source table (admin).

    Rows are inserted into the source and committed, then removed from the
    archive. A row whose key already exists in the source is a conflict and
    stays archived; the source row is never overwritten. Recorded as a run.
    """
    selection = archives.selection_from_request(body)
    actor = current_actor()
    return archives.restore(table_name, selection, actor.username, actor=actor)
