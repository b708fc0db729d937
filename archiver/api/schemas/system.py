"""Health, readiness and scheduler responses."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields
from marshmallow.validate import Range


class HealthSchema(ma.Schema):
    status = fields.String(metadata={"example": "ok"})


class ReadySchema(ma.Schema):
    status = fields.String(metadata={"example": "ready"})
    databases = fields.Dict(keys=fields.String(), values=fields.String(),
                            metadata={"example": {"archive": "ok", "source": "ok"}})


class SchedulerJobSchema(ma.Schema):
    id = fields.String()
    name = fields.String()
    trigger = fields.String(metadata={"example": "interval[0:05:00]"})
    next_run_time = fields.String(allow_none=True, metadata={"description": "ISO-8601, null while not scheduled"})
    max_instances = fields.Integer()
    coalesce = fields.Boolean()
    misfire_grace_time = fields.Integer(allow_none=True)


class TestRunSchema(ma.Schema):
    job_id = fields.String()
    scheduled_for = fields.String(allow_none=True)
    ran_at = fields.String()
    archive_db = fields.String(metadata={"description": "`ok` if the job reached the archive database"})


class TestRunsSchema(ma.Schema):
    runs = fields.List(fields.Nested(TestRunSchema), metadata={"description": "Newest last (last 20, this process)"})


class ScheduleCheckSchema(ma.Schema):
    table_name = fields.String()
    kind = fields.String(metadata={"description": "archive | purge"})
    checked_at = fields.String(metadata={"description": "ISO-8601: the scheduler's last look at the table"})
    outcome = fields.String(metadata={"description": "nothing to move | held by … | run started"})
    run_id = fields.Integer(allow_none=True, metadata={"description": "The last run the scheduler started"})


class SchedulerStatusSchema(ma.Schema):
    running = fields.Boolean()
    state = fields.String(metadata={"description": "running | paused | stopped"})
    timezone = fields.String(allow_none=True)
    jobs = fields.List(fields.Nested(SchedulerJobSchema))
    test_runs = fields.List(fields.Nested(TestRunSchema))
    checks = fields.List(fields.Nested(ScheduleCheckSchema), metadata={
        "description": "Per table and kind: the scheduler's last check (ticks that move nothing record no run)"})


class TestJobRequestSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    delay_seconds = fields.Integer(load_default=3, strict=True, validate=Range(1, 60),
                                   metadata={"description": "Run the test job this many seconds from now"})


class TestJobScheduledSchema(ma.Schema):
    job_id = fields.String()
    run_at = fields.String()
    delay_seconds = fields.Integer()
