#!/usr/bin/env bash
# Set up .venv with the dev requirements and run the whole test suite.
# Every database test runs on SQLite; set TEST_POSTGRES_URL (a database the
# tests may create schemas in) to run them again on PostgreSQL, and
# TEST_MARIADB_URL (a MariaDB server the tests may create databases on) to run
# them again on MariaDB. With CI=true a test whose database is missing or
# unreachable fails instead of skipping (see .ci/run).
# Extra arguments go to pytest, e.g. scripts/test.sh -k auth
set -euo pipefail
. "$(dirname "$0")/_venv.sh" requirements-dev.txt
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  echo "==> TEST_POSTGRES_URL not set: no PostgreSQL run (see README \"Tests\" and .ci/run)"
fi
if [ -z "${TEST_MARIADB_URL:-}" ]; then
  echo "==> TEST_MARIADB_URL not set: no MariaDB run of the database tests (see README \"Tests\" and .ci/run)"
fi
exec python -m pytest "$@"
