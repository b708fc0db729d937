# Sourced by the scripts: make .venv with the pinned requirements (idempotent).
# Usage: . scripts/_venv.sh [requirements file]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "archiver needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "==> creating virtualenv in .venv"
  "$PY" -m venv "$ROOT/.venv"
fi
STAMP="$ROOT/.venv/.installed-$(basename "$REQ")"
if [ ! -f "$STAMP" ] || [ "$ROOT/$REQ" -nt "$STAMP" ] || [ "$ROOT/requirements.txt" -nt "$STAMP" ]; then
  echo "==> installing $REQ"
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$REQ"
  touch "$STAMP"
fi
# Byte-compile the project (incremental): start-up reads .pyc files even where
# PYTHONDONTWRITEBYTECODE is set (as in the container), instead of compiling every module each run.
"$ROOT/.venv/bin/python" -m compileall -q "$ROOT/archiver" "$ROOT/config" >/dev/null 2>&1 || true
export PATH="$ROOT/.venv/bin:$PATH"
cd "$ROOT"
