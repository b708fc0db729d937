"""The archival benchmark (run it with ``scripts/bench.sh`` or ``python -m bench``).

It measures what a user gets: for each backend and data set, a policy made
through ``POST /config`` with the default fields, then the whole
``flask --app archiver archive-now --table …`` process, wall clock, start-up
included; next to each database's own limit (PostgreSQL COPY pipeline, SQLite
ATTACH pipeline) and to pt-archiver on MariaDB, in the same run.

Modules:
  cli       options, the run, the printed tables (``python -m bench``)
  servers   bench databases on PostgreSQL / MariaDB and SQLite files: build, copy, drop
  datasets  the ``events`` and ``orders`` + ``order_items`` data sets, and the ground-truth check
  limits    the reference pipelines (COPY, ATTACH, pt-archiver)
  project   the project as a user runs it (policy via the API, the flask process, the run record)
  worker    the project's job in a warm process (``python -m bench.worker``: tuned table, profiles)
  proc      child processes: wall clock and peak RSS
  report    result rows and the markdown tables
  reads     archive reads under waitress + wrk, and purge
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
