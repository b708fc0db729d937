#!/usr/bin/env bash
# Set up everything and run the service locally on the SQLite default:
# .venv, install, init-db, seed-demo on the first run, waitress on
# 127.0.0.1:8000 with the scheduler on. HOST/PORT override the address;
# SOURCE_DATABASE_URL / ARCHIVE_DATABASE_URL point it at other databases.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" requirements.txt
export ARCHIVER_ENV="${ARCHIVER_ENV:-development}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
CREDS=instance/demo-credentials.txt
mkdir -p instance
flask --app archiver init-db
if [ ! -f instance/.demo-seeded ]; then
  # First run: demo tables, users and policies. The passwords are printed once;
  # keep a private copy so later runs can show them again.
  (umask 077 && flask --app archiver seed-demo | tee "$CREDS")
  touch instance/.demo-seeded
elif [ -f "$CREDS" ]; then
  echo "==> demo users (created on the first run; see $CREDS):"
  grep "password:" "$CREDS" || true
fi
echo "==> archiver on http://$HOST:$PORT  (docs: http://$HOST:$PORT/docs)"
# waitress with the app's 1 MiB body limit and JSON errors (archiver/serve.py)
exec python -m archiver.serve --host "$HOST" --port "$PORT" --threads "${WAITRESS_THREADS:-4}"
