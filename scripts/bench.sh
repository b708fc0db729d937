#!/usr/bin/env bash
# Archival benchmark (see README "Benchmark"): sets up .venv, installs the
# bench-only tools when missing (percona-toolkit for pt-archiver, wrk for the
# read benchmark; needs root + apt-get, otherwise those parts are skipped with
# a note), then runs the bench package (python -m bench) with the given options, e.g.
#   scripts/bench.sh --rows 1000000 --out docs/benchmarks.md
#   scripts/bench.sh --rows 100000 --backends sqlite --skip-baselines
# Needs PostgreSQL (BENCH_PG_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
# and MariaDB (BENCH_MARIADB_URL, default mysql+pymysql://root@127.0.0.1:3306/) for
# those backends; it creates and drops databases named bench_* on them.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" requirements.txt

missing=()
command -v pt-archiver >/dev/null 2>&1 || missing+=(percona-toolkit)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || echo "==> could not install ${missing[*]}: the pt-archiver / read benchmarks will say n/a" >&2
    fi
  else
    echo "==> ${missing[*]} missing and not root: the pt-archiver / read benchmarks will say n/a" >&2
  fi
fi
exec python -m bench "$@"
