"""Console, administrators only: policies (with a live preview), runs, users and their grants.

The same service calls as ``/config``, ``/runs`` and ``/users`` (same validation, same audit
records); a refused change re-renders its form with the reasons next to the fields.
"""
from __future__ import annotations

from typing import Any

from flask import jsonify, make_response, redirect, render_template, request
from flask_jwt_extended import get_current_user

from ...engine.criteria import CriteriaError
from ...engine.errors import DatabaseError, InvalidPolicy
from ...engine.policy import BATCH_MODES
from ...errors import Conflict, DomainError, InvalidInput, NotFound
from ...models import RunKind, RunStatus
from ...services import audit
from ...services import jobs as job_service
from ...services import policies as policy_service
from ...services import runs as run_service
from ...services import tables as table_service
from ...services import users as user_service
from ...services.users import ROLES
from ..schemas.policies import PolicySchema
from ..schemas.runs import RunSchema
from ..schemas.users import UserSchema
from ..security import current_actor
from . import NOTICES, auth, bp

_RUN = RunSchema()
_POLICY = PolicySchema()
_USER = UserSchema()


def _notice() -> str | None:
    return NOTICES.get(request.args.get("notice", ""))


# --- policies -----------------------------------------------------------------------------------

_INT_FIELDS = ("archive_after_days", "delete_after_days", "batch_size")
#: The policy form's throttle inputs: field, label, step (docs/operations.md "Throttles").
THROTTLE_LABELS = (
    ("sleep_ms", "Sleep between batches (ms)", "1"),
    ("sleep_ratio", "Sleep as a share of the last batch's time", "any"),
    ("max_run_seconds", "Stop a run after (seconds)", "1"),
    ("max_rows_per_run", "Stop a run after (rows)", "1"),
    ("max_replica_lag_seconds", "Pause while replica lag is over (seconds)", "any"),
    ("max_active_sessions", "Pause while active sessions are over", "1"),
    ("critical_active_sessions", "Stop the run when active sessions are over", "1"),
)


def _policy_fields(form) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Policy fields from the form (numbers parsed, blanks meaning "default"), and parse errors."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name in _INT_FIELDS:
        text = (form.get(name) or "").strip()
        if not text:
            if name == "batch_size":
                values[name] = None
            continue
        try:
            values[name] = int(text)
        except ValueError:
            errors[name] = ["Not a whole number."]
    for name, (kind, _low, _high) in policy_service.THROTTLE_FIELDS.items():
        text = (form.get(name) or "").strip()
        try:  # blank: the THROTTLE_* default; the ranges are the policy check's
            values[name] = kind(text) if text else None
        except ValueError:
            errors[name] = ["Not a whole number." if kind is int else "Not a number."]
    if (form.get("date_column") or "").strip():
        values["date_column"] = form["date_column"].strip()
    if "custom_criteria" in form:
        values["custom_criteria"] = form["custom_criteria"].strip() or None
    if form.get("batch_mode") in BATCH_MODES:
        values["batch_mode"] = form["batch_mode"]
    values["enabled"] = form.get("enabled") in ("on", "true", "1")
    return values, errors


def _source_table(name: str) -> dict[str, Any] | None:
    return next((t for t in table_service.source_tables() if t["name"] == name), None)


@bp.route("/policies")
@auth.page(admin=True)
def policies():
    items = [_POLICY.dump(p) for p in policy_service.list_policies()]
    try:
        without = [t for t in table_service.source_tables() if not t["has_policy"]]
        source_error = None
    except DomainError as exc:
        without, source_error = [], exc.message
    return render_template("console/policies.html", policies=items, without=without, source_error=source_error,
                           notice=_notice())


def _policy_form(table_name: str, values: dict[str, Any], *, existing: bool, errors: dict | None = None,
                 preview: dict | None = None, preview_error: str | None = None, status: int = 200):
    source = _source_table(table_name)
    page = render_template("console/policy_form.html", table_name=table_name, values=values, existing=existing,
                           errors=errors or {}, source=source, batch_modes=BATCH_MODES, preview=preview,
                           throttle_fields=THROTTLE_LABELS,
                           preview_error=preview_error, notice=_notice())
    return make_response(page, status)


@bp.route("/policies/new")
@auth.page(admin=True)
def policy_new():
    """Choose a source table, then fill in its policy."""
    table_name = request.args.get("table", "").strip()
    if not table_name:
        return redirect("/ui/policies")
    if policy_service.get_policy(table_name) is not None:
        return redirect(f"/ui/policies/{table_name}")
    source = _source_table(table_name)
    if source is None:
        raise NotFound(f"The source database has no table {table_name!r}")
    values = {**policy_service.DEFAULTS, "archive_after_days": 30, "delete_after_days": 365,
              "date_column": source["suggested_date_column"] or "created_at"}
    return _policy_form(table_name, values, existing=False)


@bp.route("/policies/<string:table_name>", methods=["GET"])
@auth.page(admin=True)
def policy_edit(table_name: str):
    policy = policy_service.require_policy(table_name)
    return _policy_form(table_name, _POLICY.dump(policy), existing=True)


def _preview(table_name: str, fields: dict[str, Any]) -> tuple[dict | None, str | None, dict]:
    """(preview, error sentence, field errors) of the policy the form describes (nothing saved)."""
    try:
        return policy_service.preview_policy(table_name, fields, sample_rows=5), None, {}
    except InvalidInput as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        return None, exc.message if not details else "The policy is not valid yet: see the fields.", details
    except (InvalidPolicy, CriteriaError) as exc:
        return None, str(exc)[:500], getattr(exc, "problems", {}) or {}
    except (DatabaseError, DomainError) as exc:
        return None, getattr(exc, "message", None) or "The source database did not answer.", {}


@bp.route("/policies/<string:table_name>", methods=["POST"])
@auth.page(admin=True)
def policy_save(table_name: str):
    """Save (create or change) the policy, or show its preview (the form's Preview button)."""
    existing = policy_service.get_policy(table_name) is not None
    fields, errors = _policy_fields(request.form)
    shown = {**(_POLICY.dump(policy_service.get_policy(table_name)) if existing else policy_service.DEFAULTS),
             **fields}
    if errors:
        return _policy_form(table_name, shown, existing=existing, errors=errors, status=400)
    if request.form.get("action") == "preview":
        preview, problem, field_errors = _preview(table_name, fields)
        return _policy_form(table_name, shown, existing=existing, errors=field_errors, preview=preview,
                            preview_error=problem, status=200 if preview else 400)
    try:
        if existing:
            policy_service.update_policy(table_name, fields, actor=current_actor())
        else:
            policy_service.create_or_update({"table_name": table_name, **fields}, actor=current_actor())
    except InvalidInput as exc:
        details = exc.details if isinstance(exc.details, dict) else {"_": [exc.message]}
        return _policy_form(table_name, shown, existing=existing, errors=details, status=400)
    return redirect(f"/ui/policies/{table_name}?notice={'saved' if existing else 'created'}", code=303)


@bp.route("/policies/<string:table_name>/preview", methods=["POST"])
@auth.page(admin=True)
def policy_preview(table_name: str):
    """The live preview (the console script posts the form here as the admin types): an HTML fragment."""
    fields, errors = _policy_fields(request.form)
    preview, problem, field_errors = (None, "Fix the fields first.", errors) if errors else _preview(table_name, fields)
    return render_template("console/_preview.html", preview=preview, preview_error=problem,
                           field_errors=field_errors)


@bp.route("/policies/<string:table_name>/enabled", methods=["POST"])
@auth.page(admin=True)
def policy_toggle(table_name: str):
    enabled = request.form.get("enabled") == "true"
    policy_service.update_policy(table_name, {"enabled": enabled}, actor=current_actor())
    back = request.form.get("back") == "list"
    target = "/ui/policies" if back else f"/ui/policies/{table_name}"
    return redirect(f"{target}?notice={'enabled' if enabled else 'disabled'}", code=303)


@bp.route("/policies/<string:table_name>/delete", methods=["POST"])
@auth.page(admin=True)
def policy_delete(table_name: str):
    policy_service.delete_policy(table_name, actor=current_actor())
    return redirect("/ui/policies?notice=deleted", code=303)


# --- runs ---------------------------------------------------------------------------------------

@bp.route("/runs")
@auth.page(admin=True)
def runs():
    args = request.args
    kind = args.get("kind") if args.get("kind") in {k.value for k in RunKind} else None
    status = args.get("status") if args.get("status") in {s.value for s in RunStatus} else None
    table_name = (args.get("table_name") or "").strip()[:255] or None
    before = args.get("before_id", "")
    before_id = int(before) if before.isdigit() and 0 < int(before) < 2**63 else None
    items, next_before = run_service.list_runs(table_name=table_name, kind=kind, status=status, limit=50,
                                               before_id=before_id)
    filters = {k: v for k, v in (("table_name", table_name), ("kind", kind), ("status", status)) if v}
    runnable = [p.table_name for p in policy_service.list_policies() if p.enabled]
    return render_template("console/runs.html", runs=[_RUN.dump(r) for r in items], next_before=next_before,
                           filters=filters, kinds=[k.value for k in RunKind], statuses=[s.value for s in RunStatus],
                           first=before_id is not None, runnable=runnable, notice=_notice())


#: What the console may start (POST /runs takes the same kinds).
STARTABLE_KINDS = (RunKind.ARCHIVE.value, RunKind.PURGE.value)


@bp.route("/runs", methods=["POST"])
@auth.page(admin=True)
def run_start():
    """Start an archive or purge run (or dry run) of one table in the background, as POST /runs does;
    a table another run holds is a 409 page naming that run."""
    form = request.form
    kind = form.get("kind", RunKind.ARCHIVE.value)
    table_name = (form.get("table_name") or "").strip()
    if kind not in STARTABLE_KINDS or not table_name:
        raise InvalidInput(details={"kind" if kind not in STARTABLE_KINDS else "table_name": ["Choose one."]})
    dry_run = form.get("dry_run") in ("on", "true", "1")
    actor = current_actor()
    run_id = job_service.start_background(kind, table_name, dry_run=dry_run,
                                          trigger=run_service.trigger_for_user(actor.username))
    audit.record_run_started(actor, run_id, kind, table_name, options={"dry_run": dry_run})
    return redirect(f"/ui/runs/{run_id}", code=303)


@bp.route("/runs/<id:run_id>/cancel", methods=["POST"])
@auth.page(admin=True)
def run_cancel(run_id: int):
    """Stop a running run after its current batch (``cancelled``), as POST /runs/{id}/cancel does."""
    actor = current_actor()
    found = job_service.request_cancel(run_id, actor.username)
    audit.record_run_cancelled(actor, run_id, found.kind, found.table_name)
    return redirect(f"/ui/runs/{run_id}", code=303)


@bp.route("/runs/<id:run_id>")
@auth.page(admin=True)
def run(run_id: int):
    found = run_service.get_run(run_id)
    if found is None:
        raise NotFound("No run with this id")
    data = _RUN.dump(found)
    if request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json":
        return jsonify(data)  # the console script's progress poll
    return render_template("console/run.html", run=data, notice=_notice())


# --- users --------------------------------------------------------------------------------------

@bp.route("/users")
@auth.page(admin=True)
def users():
    page_arg = request.args.get("page", "1")
    page = int(page_arg) if page_arg.isdigit() and 0 < int(page_arg) <= 1_000_000 else 1
    listing = user_service.list_users(page=page, per_page=50)
    return render_template("console/users.html", users=[_USER.dump(u) for u in listing.items], page=page,
                           total=listing.total, per_page=listing.per_page, tables=table_service.known_table_names(),
                           roles=ROLES, values={}, errors={}, notice=_notice())


@bp.route("/users", methods=["POST"])
@auth.page(admin=True)
def user_create():
    form = request.form
    values = {"username": form.get("username", "").strip(), "role": form.get("role", "user"),
              "permissions": form.getlist("permissions")}
    try:
        user = user_service.create_user(values["username"], form.get("password", ""), values["role"],
                                        values["permissions"], actor=current_actor())
    except (InvalidInput, Conflict) as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        errors = {k: v for k, v in details.items()} or {"_": [exc.message]}
        if isinstance(exc, Conflict):
            errors = {"username": [exc.message]}
        listing = user_service.list_users(page=1, per_page=50)
        page = render_template("console/users.html", users=[_USER.dump(u) for u in listing.items], page=1,
                               total=listing.total, per_page=listing.per_page,
                               tables=table_service.known_table_names(), roles=ROLES, values=values,
                               errors=_flat(errors), notice=None)
        return make_response(page, 400)
    return redirect(f"/ui/users/{user.id}?notice=created", code=303)


def _flat(errors: dict[str, Any]) -> dict[str, list[str]]:
    """Field errors as lists of sentences (grant errors come by list index)."""
    out: dict[str, list[str]] = {}
    for field, messages in errors.items():
        if isinstance(messages, dict):
            out[field] = [m for ms in messages.values() for m in (ms if isinstance(ms, list) else [ms])]
        elif isinstance(messages, list):
            out[field] = [str(m) for m in messages]
        else:
            out[field] = [str(messages)]
    return out


def _user_page(user_id: int, errors: dict | None = None, status: int = 200):
    user = user_service.get_user(user_id)
    data = _USER.dump(user)
    tables = sorted(set(table_service.known_table_names()) | set(data["permissions"]))
    page = render_template("console/user.html", user=data, tables=tables, roles=ROLES, errors=errors or {},
                           notice=_notice(), myself=user.id == get_current_user().id)
    return make_response(page, status)


@bp.route("/users/<id:user_id>")
@auth.page(admin=True)
def user(user_id: int):
    return _user_page(user_id)


@bp.route("/users/<id:user_id>", methods=["POST"])
@auth.page(admin=True)
def user_update(user_id: int):
    """The user page's forms: grants (``what=grants``) or role and active flag (``what=account``)."""
    form = request.form
    try:
        if form.get("what") == "grants":
            user_service.set_permissions(user_id, form.getlist("permissions"), actor=current_actor())
        else:
            role = form.get("role") if form.get("role") in ROLES else None
            user_service.update_user(current_actor(), user_id, role=role, active=form.get("active") == "on")
    except (InvalidInput, Conflict) as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        return _user_page(user_id, _flat(details) if details and not isinstance(exc, Conflict) else {"_": [exc.message]},
                          status=400 if isinstance(exc, InvalidInput) else 409)
    return redirect(f"/ui/users/{user_id}?notice=saved", code=303)
