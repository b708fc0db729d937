#!/usr/bin/env bash
# Set up .venv with the dev requirements and run the whole test suite.
# Every database test runs on SQLite; set TEST_POSTGRES_URL (a database the
# tests may create schemas in) to run them again on PostgreSQL.
# Extra arguments go to pytest, e.g. scripts/test.sh -k auth
set -euo pipefail
. "$(dirname "$0")/_venv.sh" requirements-dev.txt
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  echo "==> TEST_POSTGRES_URL not set: running the SQLite half only (see .ci/run for PostgreSQL)"
fi
exec python -m pytest "$@"
