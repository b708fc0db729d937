#!/usr/bin/env bash
# Set up everything and run the service locally: .venv, install, init-db, an admin to sign in
# with, and waitress with the scheduler on. Defaults: SQLite files in instance/ with demo data,
# http://127.0.0.1:8000 (console at /ui/). HOST/PORT choose the address (PORT=8080 scripts/run.sh);
# SOURCE_DATABASE_URL / ARCHIVE_DATABASE_URL point it at other databases: then no demo data is
# made there, but an admin is created in that archive database if it has none (its password is
# printed once and kept in instance/credentials-<database>.txt, readable by you only).
set -euo pipefail
. "$(dirname "$0")/_venv.sh" requirements.txt
export ARCHIVER_ENV="${ARCHIVER_ENV:-development}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
mkdir -p instance
# One credentials file per archive database, so another database never shows these passwords.
DB_KEY="$(printf '%s' "${ARCHIVE_DATABASE_URL:-sqlite:///instance/archive.db}" | sha256sum | cut -c1-12)"
CREDS="instance/credentials-$DB_KEY.txt"
flask --app archiver init-db
DEMO=""
if [ -z "${SOURCE_DATABASE_URL:-}" ] && [ -z "${ARCHIVE_DATABASE_URL:-}" ]; then
  DEMO="--demo"   # the local SQLite files: demo tables, users and policies on the first run
fi
OUT="$(flask --app archiver first-run $DEMO)"
echo "$OUT"
if printf "%s\n" "$OUT" | grep -qE "role=[a-z]+ .*password: "; then
  (umask 077 && printf "%s\n" "$OUT" | grep -E "role=[a-z]+ .*password: " > "$CREDS")
  echo "==> these passwords are shown once; a copy is in $CREDS"
elif [ -f "$CREDS" ]; then
  echo "==> accounts created for this database earlier (if a password was changed since, reset it with"
  echo "    scripts/archiver create-admin <name>):"
  cat "$CREDS"
fi
echo "==> archiver on http://$HOST:$PORT  (console: http://$HOST:$PORT/ui/  API docs: http://$HOST:$PORT/docs)"
# waitress with the app's 1 MiB body limit and JSON errors (archiver/serve.py)
exec python -m archiver.serve --host "$HOST" --port "$PORT" --threads "${WAITRESS_THREADS:-4}"
