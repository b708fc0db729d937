"""Archive policies: validation against the source schema, and create/update/list/get/delete.

A policy is checked against the *live* source database by the engine's one
policy check (:func:`archiver.engine.check.check_policy`, also run by preview
and at the start of every run): the table must exist and have a primary key,
the date column must exist and hold dates the engine compares correctly, and
``custom_criteria`` must compile for that table. Validation returns field
errors (``{"field": ["message", ...]}``), raised as ``InvalidInput`` so the
API can name the field, and the CLI can print them.
"""
from __future__ import annotations

from typing import Any, Mapping

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from config import SETTINGS_BY_NAME, THROTTLE_DEFAULTS, load_limits_problem

from ..engine.archive import MAX_SAMPLE_ROWS, plan_table, preview_archive
from ..engine.criteria import MAX_LENGTH as CRITERIA_MAX_LENGTH
from ..engine.errors import DatabaseError, InvalidPolicy
from ..engine.policy import BATCH_MODES, NamedChild, PolicySpec, utcnow
from ..engine.throttle import ThrottleSettings
from ..errors import Conflict, InvalidInput, NotFound, Unavailable
from ..extensions import db
from ..models import ArchivePolicy
from . import audit, source_db
from .audit import Actor

FieldErrors = dict[str, list[str]]

# Bounds, shared with the API schema so the OpenAPI document states them.
MAX_DAYS = 36500
ARCHIVE_AFTER_MIN = 0
DELETE_AFTER_MIN = 1
BATCH_SIZE_MIN = 1
BATCH_SIZE_MAX = 50000
CRITERIA_MAX_CHARS = CRITERIA_MAX_LENGTH  # one limit: the parser's
CRITERIA_TOO_LONG = f"custom_criteria is too long (max {CRITERIA_MAX_CHARS} characters)"
NAME_MAX_CHARS = 255
CHILDREN_MAX = 20          # child relations a policy may name
CHILD_COLUMNS_MAX = 16     # columns of one relation
CHILD_FIELDS = ("table", "columns", "references", "parent")

DEFAULTS: dict[str, Any] = {
    "date_column": "created_at",
    "custom_criteria": None,
    "batch_size": None,
    "enabled": True,
    "children": [],
    "batch_mode": "adaptive",
    # Throttles: None takes the service's THROTTLE_* setting; 0 is off for this policy.
    **{name: None for name in THROTTLE_DEFAULTS},
}
#: A throttle field's type and bounds: its THROTTLE_* setting's (config/).
THROTTLE_FIELDS: dict[str, tuple[type, float, float]] = {
    name: (SETTINGS_BY_NAME[setting].type, SETTINGS_BY_NAME[setting].minimum, SETTINGS_BY_NAME[setting].maximum)
    for name, setting in THROTTLE_DEFAULTS.items()}
REQUIRED = ("table_name", "archive_after_days", "delete_after_days")
FIELDS = REQUIRED + tuple(DEFAULTS)

def with_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the optional fields filled in; blank criteria become None."""
    values = {**DEFAULTS, **data}
    criteria = values.get("custom_criteria")
    if isinstance(criteria, str) and not criteria.strip():
        values["custom_criteria"] = None
    return values


def _int_error(value: Any, low: int, high: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "Not a valid integer."
    if not low <= value <= high:
        return f"Must be greater than or equal to {low} and less than or equal to {high}."
    return None


def _number_error(value: Any, kind: type, low: float, high: float) -> str | None:
    if kind is int:
        return _int_error(value, int(low), int(high))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "Not a valid number."
    if not low <= value <= high:
        return f"Must be greater than or equal to {low:g} and less than or equal to {high:g}."
    return None


def _check_shape(values: Mapping[str, Any]) -> FieldErrors:
    """Types, ranges, lengths and unknown fields (no database access)."""
    errors: FieldErrors = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    for field in values:
        if field not in FIELDS:
            add(field, "Unknown field.")
    for field in REQUIRED:
        if values.get(field) is None:
            add(field, "Missing data for required field.")
    for field in ("table_name", "date_column"):
        value = values.get(field)
        if value is None or field in errors:
            continue
        if not isinstance(value, str):
            add(field, "Not a valid string.")
        elif not 1 <= len(value) <= NAME_MAX_CHARS:
            add(field, f"Length must be between 1 and {NAME_MAX_CHARS}.")
    for field, low, high in (("archive_after_days", ARCHIVE_AFTER_MIN, MAX_DAYS),
                             ("delete_after_days", DELETE_AFTER_MIN, MAX_DAYS),
                             ("batch_size", BATCH_SIZE_MIN, BATCH_SIZE_MAX)):
        if field == "batch_size" and values.get(field) is None and field not in errors:
            continue  # none: adaptive batches up to the engine's own ceiling
        value = values.get(field)
        if value is None or field in errors:
            continue
        problem = _int_error(value, low, high)
        if problem:
            add(field, problem)
    criteria = values.get("custom_criteria")
    if criteria is not None:
        if not isinstance(criteria, str):
            add("custom_criteria", "Not a valid string.")
        elif len(criteria) > CRITERIA_MAX_CHARS:
            add("custom_criteria", CRITERIA_TOO_LONG)
    if not isinstance(values.get("enabled"), bool):
        add("enabled", "Not a valid boolean.")
    for message in _children_shape(values.get("children")):
        add("children", message)
    mode = values.get("batch_mode")
    if mode not in BATCH_MODES:
        add("batch_mode", f"Must be one of: {', '.join(BATCH_MODES)}.")
    elif mode == "fixed" and values.get("batch_size") is None:
        add("batch_size", "A fixed batch_mode needs a batch_size.")
    for name, (kind, low, high) in THROTTLE_FIELDS.items():
        value = values.get(name)
        if value is not None and (problem := _number_error(value, kind, low, high)):
            add(name, problem)
    if not ({"max_active_sessions", "critical_active_sessions"} & set(errors)):
        problem = load_limits_problem(values.get("max_active_sessions"), values.get("critical_active_sessions"))
        if problem:
            add("critical_active_sessions", problem[0].upper() + problem[1:] + ".")
    return errors


def _children_shape(children: Any) -> list[str]:
    """What is wrong with the shape of ``children`` (a list of relations), before the source is read."""
    if not isinstance(children, list):
        return ["Not a valid list."]
    if len(children) > CHILDREN_MAX:
        return [f"At most {CHILDREN_MAX} child relations."]
    problems = []

    def names(value: Any) -> bool:
        return (isinstance(value, list) and 1 <= len(value) <= CHILD_COLUMNS_MAX
                and all(isinstance(v, str) and 1 <= len(v) <= NAME_MAX_CHARS for v in value))

    for i, child in enumerate(children, 1):
        if not isinstance(child, dict):
            problems.append(f"child {i}: not an object")
            continue
        unknown = sorted(set(child) - set(CHILD_FIELDS))
        if unknown:
            problems.append(f"child {i}: unknown field(s) {', '.join(map(repr, unknown))}")
        for key in ("table", "parent"):
            value = child.get(key)
            if (key == "table" or value is not None) and not (
                    isinstance(value, str) and 1 <= len(value) <= NAME_MAX_CHARS):
                problems.append(f"child {i}: {key} must be a table name")
        for key in ("columns", "references"):
            if not names(child.get(key)):
                problems.append(f"child {i}: {key} must be a list of 1 to {CHILD_COLUMNS_MAX} column names")
    return problems


def throttle_settings(values: Mapping[str, Any], defaults: Mapping[str, Any] | None = None,
                      check_seconds: float = 1.0) -> ThrottleSettings:
    """The engine's throttle for a policy's fields: an empty field takes ``defaults[field]`` (the
    THROTTLE_* settings, see :func:`throttle_defaults`; none given: off), and 0 is off."""
    def value(name: str) -> Any:
        own = values.get(name)
        return own if own is not None else (defaults or {}).get(name)

    def limit(name: str) -> Any:
        return value(name) or None  # 0: no limit

    return ThrottleSettings(sleep_ms=int(value("sleep_ms") or 0), sleep_ratio=float(value("sleep_ratio") or 0),
                            max_run_seconds=limit("max_run_seconds"), max_rows_per_run=limit("max_rows_per_run"),
                            max_replica_lag_seconds=limit("max_replica_lag_seconds"),
                            max_active_sessions=limit("max_active_sessions"),
                            critical_active_sessions=limit("critical_active_sessions"), check_seconds=check_seconds)


def to_spec(values: Mapping[str, Any], throttle_defaults: Mapping[str, Any] | None = None,
            check_seconds: float = 1.0) -> PolicySpec:
    """The engine's immutable view of a policy's fields (a stored row's, or a checked request's);
    its empty throttle fields take ``throttle_defaults`` (none: the policy's own limits only)."""
    children = tuple(NamedChild(c["table"], tuple(c["columns"]), tuple(c["references"]), c.get("parent"))
                     for c in values.get("children") or ())
    return PolicySpec(table_name=values["table_name"], date_column=values["date_column"],
                      archive_after_days=values["archive_after_days"], delete_after_days=values["delete_after_days"],
                      custom_criteria=values["custom_criteria"], batch_size=values["batch_size"], children=children,
                      batch_mode=values["batch_mode"],
                      throttle=throttle_settings(values, throttle_defaults, check_seconds))


def policy_spec(policy: ArchivePolicy, throttle_defaults: Mapping[str, Any] | None = None,
                check_seconds: float = 1.0) -> PolicySpec:
    """The engine's view of a stored policy (see :func:`to_spec`)."""
    return to_spec({field: getattr(policy, field) for field in FIELDS}, throttle_defaults, check_seconds)


def _check_against_source(values: Mapping[str, Any]) -> FieldErrors:
    """The engine's one policy check (table, key, date column and its values, criteria) on the source."""
    try:
        plan_table(source_db.source_engine(), to_spec(values), utcnow())
    except InvalidPolicy as exc:
        return exc.problems
    except DatabaseError:
        raise Unavailable("Source database unreachable") from None
    return {}


def validate_policy(data: Mapping[str, Any]) -> FieldErrors:
    """Field errors for a policy (defaults applied first); empty when it is valid."""
    values = with_defaults(data)
    errors = _check_shape(values)
    if errors:
        return errors
    return _check_against_source(values)


def get_policy(table_name: str) -> ArchivePolicy | None:
    return db.session.execute(
        sa.select(ArchivePolicy).where(ArchivePolicy.table_name == table_name)).scalar_one_or_none()


def require_policy(table_name: str) -> ArchivePolicy:
    """The policy for ``table_name``; NotFound if there is none."""
    policy = get_policy(table_name)
    if policy is None:
        raise NotFound(f"No policy for table {table_name}")
    return policy


def list_policies() -> list[ArchivePolicy]:
    return list(db.session.execute(sa.select(ArchivePolicy).order_by(ArchivePolicy.table_name)).scalars())


def snapshot(policy: ArchivePolicy | None) -> dict[str, Any] | None:
    """The policy's fields as they are now (for the audit trail's before/after)."""
    if policy is None:
        return None
    return {field: getattr(policy, field) for field in FIELDS}


def create_or_update(data: Mapping[str, Any], updated_by: str | None = None, *,
                     actor: Actor | None = None) -> tuple[ArchivePolicy, bool]:
    """Validate and store the whole policy for ``data["table_name"]``.

    The body replaces the policy: omitted optional fields take their defaults.
    Returns ``(policy, created)``; raises ``InvalidInput`` with field errors. Audited with the
    policy before and after, in the same transaction. ``updated_by`` defaults to the actor's name.
    """
    actor = actor or (Actor.system(updated_by) if updated_by else audit.SYSTEM)
    updated_by = updated_by if updated_by is not None else actor.username
    values = with_defaults(data)
    errors = validate_policy(values)
    if errors:
        raise InvalidInput(details=errors)
    for attempt in range(2):
        policy = get_policy(values["table_name"])
        created = policy is None
        before = snapshot(policy)
        if created:
            policy = ArchivePolicy(table_name=values["table_name"])
            db.session.add(policy)
        for field in FIELDS[1:]:
            setattr(policy, field, values[field])
        policy.children = values["children"] or None
        policy.updated_by = updated_by
        after = snapshot(policy)
        if before != after:
            audit.record(audit.POLICY_CREATE if created else audit.POLICY_UPDATE, actor,
                         target=values["table_name"], details={"before": before, "after": after})
        try:
            db.session.commit()
        except IntegrityError:
            # A concurrent request created the same table's policy: update it instead.
            db.session.rollback()
            if attempt:
                raise Conflict("The policy was changed concurrently; try again") from None
            continue
        return policy, created
    raise AssertionError("unreachable")  # pragma: no cover


def delete_policy(table_name: str, *, actor: Actor = audit.SYSTEM) -> None:
    """Remove the policy (archived rows stay); NotFound if there is none. Audited with the policy removed."""
    policy = require_policy(table_name)
    audit.record(audit.POLICY_DELETE, actor, target=table_name, details={"before": snapshot(policy)})
    db.session.delete(policy)
    db.session.commit()


def _stored(policy: ArchivePolicy) -> dict[str, Any]:
    """A stored policy's fields as a request would give them (no children: an empty list)."""
    values = snapshot(policy) or {}
    values["children"] = list(values.get("children") or [])
    if values.get("batch_mode") is None:
        values["batch_mode"] = DEFAULTS["batch_mode"]
    return values


def update_policy(table_name: str, changes: Mapping[str, Any], *, actor: Actor = audit.SYSTEM) -> ArchivePolicy:
    """Change some fields of ``table_name``'s policy (PATCH): the others keep their stored values.

    NotFound without a policy; the merged policy is validated like a whole one (InvalidInput) and
    audited with before and after.
    """
    policy = require_policy(table_name)
    if "table_name" in changes and changes["table_name"] != table_name:
        raise InvalidInput(details={"table_name": ["The table of a policy cannot be changed."]})
    merged = {**_stored(policy), **changes, "table_name": policy.table_name}
    updated, _created = create_or_update(merged, actor=actor)
    return updated


#: Sample rows a preview returns unless asked otherwise.
DEFAULT_SAMPLE_ROWS = 5


def preview_policy(table_name: str, changes: Mapping[str, Any] | None = None, *,
                   sample_rows: int = DEFAULT_SAMPLE_ROWS) -> dict[str, Any]:
    """What an archive run of ``table_name`` would move now, for its stored policy with ``changes``
    applied — or, for a table without a policy, for the policy ``changes`` describe (nothing is
    saved, nothing moves): the count, the cutoff, ``samples`` (the first qualifying rows as they
    would be archived), child tables that would move along and references holding rows back.

    NotFound when the table has no policy and no ``changes`` were given; InvalidInput when the
    previewed policy is not valid (the same field errors as saving it).
    """
    changes = dict(changes or {})
    policy = get_policy(table_name)
    if policy is None and not changes:
        raise NotFound(f"No policy for table {table_name}")
    base = _stored(policy) if policy is not None else {"delete_after_days": 365}
    values = with_defaults({**base, **changes, "table_name": table_name})
    errors = _check_shape(values)
    if errors:
        raise InvalidInput(details=errors)
    enabled = values["enabled"]
    db.session.rollback()
    spec = to_spec(values)
    try:
        found = preview_archive(source_db.source_engine(), spec, now=utcnow(),
                                sample_rows=max(0, min(sample_rows, MAX_SAMPLE_ROWS)))
    except InvalidPolicy as exc:
        if changes:  # a policy being edited: name the fields, as saving it would
            raise InvalidInput(details=exc.problems) from None
        raise
    return {"table_name": spec.table_name, "would_archive": found.would_archive, "cutoff": found.cutoff,
            "date_column": spec.date_column, "archive_after_days": spec.archive_after_days,
            "custom_criteria": spec.custom_criteria, "batch_size": spec.batch_size,
            "batch_mode": spec.batch_mode, **{name: values[name] for name in THROTTLE_FIELDS},
            "enabled": enabled, "saved": policy is not None and not changes,
            "moves_with": found.moves_with, "held_by": found.held_by, "samples": found.samples}
