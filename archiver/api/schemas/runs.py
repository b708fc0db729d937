"""Run history (GET /runs) and the archive preview (POST /config/{table}/preview)."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields
from marshmallow.validate import Length, OneOf, Range

from ...models import MAX_ID, RunKind, RunStatus
from ...services.runs import MAX_PAGE_SIZE
from .common import UtcDateTime
from .policies import ThrottlesSchema


class RunListArgsSchema(ma.Schema):
    """Filters and keyset pagination for GET /runs (newest first)."""

    class Meta:
        unknown = ma.RAISE

    table_name = fields.String(validate=Length(1, 255), metadata={"description": "Only runs of this table"})
    kind = fields.String(validate=OneOf([k.value for k in RunKind]))
    status = fields.String(validate=OneOf([s.value for s in RunStatus]))
    limit = fields.Integer(load_default=50, validate=Range(1, MAX_PAGE_SIZE),
                           metadata={"description": f"Page size (1-{MAX_PAGE_SIZE})"})
    before_id = fields.Integer(validate=Range(1, MAX_ID), metadata={
        "description": "Keyset cursor: only runs with a smaller id (pass the previous page's next_before_id)"})


class RunSchema(ma.Schema):
    """One archive, purge or restore run of one table."""

    id = fields.Integer()
    kind = fields.String(metadata={"enum": [k.value for k in RunKind]})
    table_name = fields.String()
    trigger = fields.String(metadata={"description": "scheduler, cli or api:<username>"})
    status = fields.String(metadata={"enum": [s.value for s in RunStatus],
                                     "description": "running | succeeded | failed | partial (restore: rows left "
                                                    "in place) | skipped (another run held the table) | cancelled "
                                                    "(POST /runs/{id}/cancel) | interrupted (SIGTERM/SIGINT) | "
                                                    "abandoned (its process died; finished_at is when that was "
                                                    "detected)"})
    dry_run = fields.Boolean()
    started_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)
    duration_seconds = fields.Method("_duration", allow_none=True)
    rows_read = fields.Integer()
    rows_written = fields.Integer(metadata={"description": "Rows written to the archive (archive) or source (restore)"})
    rows_deleted = fields.Integer(metadata={"description": "Source rows (archive) or archived rows (purge/restore) "
                                                           "deleted"})
    rows_conflict = fields.Integer()
    batches = fields.Integer()
    rows_skipped = fields.Integer(metadata={"description": "Rows left in the source because a row that stays still "
                                                           "references them (tried again next run)"})
    details = fields.Dict(allow_none=True, metadata={"description": "children: rows of child tables that moved "
                                                                    "with them, by table; skipped: rows held back, "
                                                                    "by reference"})
    error = fields.String(allow_none=True, metadata={"description": "Short reason when failed or skipped"})
    rows_total = fields.Integer(allow_none=True, metadata={
        "description": "Rows that qualified when the run started (the ETA counts down from it)"})
    rate = fields.Float(allow_none=True, metadata={"description": "Rows per second (recent, while running)"})
    progress_at = UtcDateTime(allow_none=True, metadata={"description": "When the counters were last written "
                                                                            "(after each committed batch)"})
    percent = fields.Method("_percent", allow_none=True)
    eta_seconds = fields.Method("_eta", allow_none=True, metadata={
        "description": "Running: seconds left at the current rate (null when unknown)"})
    host = fields.String(allow_none=True, metadata={"description": "Host of the process running it"})
    pid = fields.Integer(allow_none=True, metadata={"description": "Process id running it"})
    cancel_requested_at = UtcDateTime(allow_none=True)
    cancel_requested_by = fields.String(allow_none=True)
    url = fields.Method("_url")

    def _duration(self, run) -> float | None:
        if run.finished_at is None or run.started_at is None:
            return None
        return round((run.finished_at - run.started_at).total_seconds(), 3)

    @staticmethod
    def _done(run) -> int:
        return (run.rows_deleted or 0) + (run.rows_skipped or 0)

    def _percent(self, run) -> float | None:
        if not run.rows_total:
            return 100.0 if run.rows_total == 0 else None
        return round(min(100.0, 100.0 * self._done(run) / run.rows_total), 1)

    def _eta(self, run) -> float | None:
        if run.status != RunStatus.RUNNING.value or run.rows_total is None:
            return None
        left = max(0, run.rows_total - self._done(run))
        if left == 0:
            return 0.0
        return round(left / run.rate, 1) if run.rate else None

    def _url(self, run) -> str:
        return f"/runs/{run.id}"


class StartRunSchema(ma.Schema):
    """POST /runs: start a run of one table in the background."""

    class Meta:
        unknown = ma.RAISE

    table_name = fields.String(required=True, validate=Length(1, 255))
    kind = fields.String(load_default=RunKind.ARCHIVE.value,
                         validate=OneOf([RunKind.ARCHIVE.value, RunKind.PURGE.value]))
    dry_run = fields.Boolean(load_default=False)


class RunStartedSchema(ma.Schema):
    run_id = fields.Integer()
    url = fields.String(metadata={"example": "/runs/42"})
    status = fields.String()
    table_name = fields.String()
    kind = fields.String()
    dry_run = fields.Boolean()


class RunPageSchema(ma.Schema):
    items = fields.List(fields.Nested(RunSchema))
    next_before_id = fields.Integer(allow_none=True, metadata={"description": "Cursor of the next page, or null"})
    limit = fields.Integer()


class MovesWithSchema(ma.Schema):
    table = fields.String()
    via = fields.List(fields.String(), metadata={"description": "The relations its rows are found by"})
    rows = fields.Integer()


class HeldBySchema(ma.Schema):
    reference = fields.String(metadata={"example": "invoices(order_id) → orders(id) ON DELETE NO ACTION"})
    rule = fields.String(metadata={"description": "RESTRICT, NO ACTION, SET NULL or SET DEFAULT"})
    rows = fields.Integer(metadata={"description": "Rows of the object the reference holds"})


class PreviewSchema(ThrottlesSchema):
    """What an archive run would move now (nothing is moved)."""

    table_name = fields.String()
    would_archive = fields.Integer(metadata={"description": "Rows that qualify right now"})
    cutoff = UtcDateTime(metadata={"description": "Rows dated strictly before this instant (UTC) qualify"})
    date_column = fields.String()
    archive_after_days = fields.Integer()
    custom_criteria = fields.String(allow_none=True)
    batch_size = fields.Integer(allow_none=True)
    batch_mode = fields.String()
    enabled = fields.Boolean()
    moves_with = fields.List(fields.Nested(MovesWithSchema), metadata={
        "description": "Child tables whose rows would move with the qualifying rows"})
    held_by = fields.List(fields.Nested(HeldBySchema), metadata={
        "description": "References that hold rows back: a referenced row stays, with its whole object"})
    samples = fields.List(fields.Dict(), metadata={
        "description": "The first qualifying rows by primary key, as they would be archived (payload form)"})
    saved = fields.Boolean(metadata={"description": "true: the stored policy as it is; false: the policy with "
                                                    "the fields sent (not saved)"})
