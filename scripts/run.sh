#!/usr/bin/env bash
# Set up everything and run the service locally on the SQLite default:
# .venv, install, init-db, seed-demo on the first run, waitress on
# 127.0.0.1:8000 with the scheduler on.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" requirements.txt
export ARCHIVER_ENV="${ARCHIVER_ENV:-development}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
mkdir -p instance
flask --app archiver init-db
if [ ! -f instance/.demo-seeded ] && flask --app archiver --help 2>/dev/null | grep -q seed-demo; then
  flask --app archiver seed-demo | tee instance/demo-credentials.txt
  touch instance/.demo-seeded
elif [ -f instance/demo-credentials.txt ]; then
  cat instance/demo-credentials.txt
fi
echo "==> archiver on http://$HOST:$PORT  (docs: http://$HOST:$PORT/docs)"
exec waitress-serve --host "$HOST" --port "$PORT" --threads 8 --call archiver:create_app
