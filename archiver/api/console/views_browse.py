"""Console: the archived tables a person may read, a table page by page, one row, export, restore.

Every read goes through the same service calls as ``GET /archives/…`` (so it is audited the same
way) after the same check: admins read every table, others only the tables granted to them; a
table page of any other table is a 403 page whether reached by a link or a typed URL.
"""
from __future__ import annotations

from typing import Any

import marshmallow as ma
import orjson
from flask import Response, make_response, render_template, request, stream_with_context

from ...engine.restore import ArchiveFilters, RestoreSelection
from ...errors import InvalidInput
from ...services import archives
from ...services import policies as policy_service
from ..schemas.archives import ArchiveExportQuerySchema, ArchiveListQuerySchema
from ..security import current_actor, is_admin, permitted_tables, require_table_access
from . import NOTICES, auth, bp

_LIST = ArchiveListQuerySchema()
_EXPORT = ArchiveExportQuerySchema()
FILTER_FIELDS = ArchiveFilters.FIELDS
PAGE_SIZES = (25, 50, 100, 200)
#: Payload columns shown in a table page (the row page shows all of them).
SHOWN_COLUMNS = 6


def _args(schema: ma.Schema, extra_allowed: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The query's values (blank ones dropped) loaded by an API schema: (values, field errors)."""
    raw = {k: v for k, v in request.args.items() if v.strip() and k not in extra_allowed}
    try:
        return schema.load(raw, unknown=ma.EXCLUDE), {}
    except ma.ValidationError as exc:
        good = {k: v for k, v in raw.items() if k not in exc.messages}
        try:
            values = schema.load(good, unknown=ma.EXCLUDE)
        except ma.ValidationError:
            values = schema.load({}, unknown=ma.EXCLUDE)
        return values, exc.messages  # type: ignore[return-value]


def _filters(values: dict[str, Any]) -> ArchiveFilters:
    return ArchiveFilters.from_mapping({k: values.get(k) for k in FILTER_FIELDS})


@bp.route("/")
@auth.page()
def index():
    """The archived tables the caller may read, with counts and dates."""
    granted = None if is_admin() else permitted_tables()
    return render_template("console/tables.html", tables=archives.table_summaries(granted),
                           notice=NOTICES.get(request.args.get("notice", "")))


@bp.route("/tables/<string:table_name>")
@auth.page()
def table(table_name: str):
    """One table page by page (keyset, next and previous), filtered and sorted."""
    require_table_access(table_name)
    values, errors = _args(_LIST, ("dir",))
    filters = _filters(values)
    order, sort, limit = values["order"], values["sort"], values["limit"]
    cursor = values.get("cursor") if not errors else None
    backwards = request.args.get("dir") == "prev" and cursor is not None
    reverse = "asc" if order == "desc" else "desc"
    items: list[dict[str, Any]] = []
    more_before = more_after = False
    status = 200
    try:
        body = orjson.loads(archives.list_rows_json(
            table_name, filters, actor=current_actor(), order=reverse if backwards else order, limit=limit,
            cursor=cursor, must_exist=is_admin(), sort=sort))
    except InvalidInput as exc:  # the where filter or the cursor refused: show the form with the reason
        errors = exc.details or {"_": [exc.message]}
        body = {"items": [], "next_cursor": None}
    items = body["items"]
    if backwards:
        items.reverse()
        more_before, more_after = body["next_cursor"] is not None, True
    else:
        more_before, more_after = cursor is not None, body["next_cursor"] is not None
    if errors:
        status = 400
    base = {k: request.args[k] for k in (*FILTER_FIELDS, "order", "sort", "limit") if request.args.get(k, "").strip()}
    prev_url = next_url = None
    if items and more_before:
        prev_url = _url(table_name, base, cursor=archives.position_cursor(table_name, filters, reverse, sort, items[0]),
                        dir="prev")
    if items and more_after:
        next_url = _url(table_name, base, cursor=archives.position_cursor(table_name, filters, order, sort, items[-1]))
    columns: list[str] = []
    for item in items:
        for key in item["payload"]:
            if key not in columns:
                columns.append(key)
    policy = policy_service.get_policy(table_name)
    types = _column_types(table_name) if values.get("where") or errors.get("where") else None
    page = render_template(
        "console/table.html", table_name=table_name, items=items, columns=columns[:SHOWN_COLUMNS],
        hidden_columns=max(0, len(columns) - SHOWN_COLUMNS), values=request.args, errors=errors, order=order,
        sort=sort, limit=limit, page_sizes=PAGE_SIZES, prev_url=prev_url, next_url=next_url,
        first_url=_url(table_name, base) if cursor else None, date_column=policy.date_column if policy else None,
        export_csv=_url(table_name, base, path="export", format="csv"),
        export_jsonl=_url(table_name, base, path="export", format="jsonl"),
        sort_url=_url(table_name, {**base, "sort": "row_date", "order": "asc" if (sort == "row_date" and order == "desc")
                                   else "desc"}),
        column_hint=types, display=display)
    return make_response(page, status)


def _url(table_name: str, params: dict[str, Any], path: str = "", **more: Any) -> str:
    from urllib.parse import quote, urlencode
    query = urlencode({**params, **more})
    tail = f"/{path}" if path else ""
    return f"/ui/tables/{quote(table_name, safe='')}{tail}" + (f"?{query}" if query else "")


def _column_types(table_name: str) -> list[tuple[str, str]]:
    return [(name, _type_label(t)) for name, t in archives.payload_columns(table_name).items()]


def _type_label(col_type: Any) -> str:
    try:
        return str(col_type.compile())
    except Exception:  # noqa: BLE001 - a type without a generic rendering
        return type(col_type).__name__.upper()


def display(value: Any) -> dict[str, str]:
    """How a payload value is shown: its text and a CSS class for its JSON kind (NULL stands out)."""
    if value is None:
        return {"text": "NULL", "kind": "null"}
    if isinstance(value, bool):
        return {"text": "true" if value else "false", "kind": "bool"}
    if isinstance(value, (int, float)):
        return {"text": repr(value) if isinstance(value, float) else str(value), "kind": "number"}
    if isinstance(value, (dict, list)):
        return {"text": orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), "kind": "json"}
    return {"text": str(value), "kind": "text"}


@bp.route("/tables/<string:table_name>/rows/<id:row_id>")
@auth.page()
def row(table_name: str, row_id: int):
    """One archived row as a record: each column with its type and value as stored, and the rows that
    moved with it."""
    require_table_access(table_name)
    readable = None if is_admin() else permitted_tables()
    item = orjson.loads(archives.get_row_json(table_name, row_id, readable, actor=current_actor()))
    types = dict(_column_types(table_name))
    fields = [{"name": k, "type": types.get(k) or _json_kind(v), "value": display(v)}
              for k, v in item["payload"].items()]
    policy = policy_service.get_policy(table_name) if is_admin() else None
    return render_template("console/row.html", table_name=table_name, item=item, fields=fields, policy=policy,
                           readable=readable, notice=NOTICES.get(request.args.get("notice", "")))


def _json_kind(value: Any) -> str:
    if value is None:
        return "—"
    return {bool: "JSON boolean", int: "JSON number", float: "JSON number", str: "JSON text",
            dict: "JSON object", list: "JSON array"}.get(type(value), "JSON")


@bp.route("/tables/<string:table_name>/export")
@auth.page()
def export(table_name: str):
    """The current filter's rows as CSV (formulas neutralised) or JSON Lines, streamed."""
    require_table_access(table_name)
    values, errors = _args(_EXPORT)
    if errors:
        raise InvalidInput(details=errors)
    stream = archives.export_rows(table_name, _filters(values), actor=current_actor(), fmt=values["format"],
                                  order=values["order"], raw=False, must_exist=is_admin())
    resp = Response(stream_with_context(stream.chunks), mimetype=stream.mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{stream.filename}"'
    return resp


@bp.route("/tables/<string:table_name>/rows/<id:row_id>/restore", methods=["POST"])
@auth.page(admin=True)
def restore(table_name: str, row_id: int):
    """Put one archived row (with the rows that moved with it) back into the source table."""
    actor = current_actor()
    result = archives.restore(table_name, RestoreSelection(ids=(row_id,)), actor.username, actor=actor)
    policy = policy_service.get_policy(table_name)
    return render_template("console/restored.html", table_name=table_name, row_id=row_id, result=result,
                           policy=policy)
