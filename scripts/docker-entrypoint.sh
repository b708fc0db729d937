#!/bin/sh
# Container start: create or upgrade the archive schema (idempotent), optionally seed the
# demo data, then serve the app with waitress on 0.0.0.0:$PORT. The scheduler
# starts inside the waitress process (not in these flask CLI commands).
set -eu

PORT="${PORT:-8000}"
THREADS="${WAITRESS_THREADS:-4}"
TRIES="${DB_WAIT_SECONDS:-60}"

# init-db creates the archive schema or upgrades it to the newest migration.
# The database may still be starting (compose waits for its healthcheck, other
# orchestrators may not): retry init-db for up to DB_WAIT_SECONDS. Exit status 3
# means it refused a database it does not recognise (and changed nothing):
# retrying cannot help, so stop at once.
n=0
until flask --app archiver init-db; do
  rc=$?
  if [ "$rc" -eq 3 ]; then
    echo "archiver: init-db refused the archive database (see above); not starting" >&2
    exit 3
  fi
  n=$((n + 1))
  if [ "$n" -ge "$TRIES" ]; then
    echo "archiver: init-db failed for ${TRIES}s; giving up" >&2
    exit 1
  fi
  echo "archiver: database not ready, retrying in 1s ($n/$TRIES)" >&2
  sleep 1
done

case "${SEED_DEMO:-0}" in
  1|true|yes|on) flask --app archiver seed-demo ;;
esac

# waitress with the app's 1 MiB body limit and JSON errors (archiver/serve.py)
exec python -m archiver.serve --host 0.0.0.0 --port "$PORT" --threads "$THREADS"
