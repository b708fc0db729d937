# archiver: the API and its in-process scheduler, served by waitress on :8000.
# Build: docker build -t archiver .   Run with PostgreSQL: docker compose up (see README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARCHIVER_ENV=production \
    PORT=8000

WORKDIR /app

# An unprivileged user with a fixed uid/gid (works with runAsNonRoot policies).
RUN groupadd --system --gid 10001 archiver \
 && useradd --system --uid 10001 --gid archiver --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin archiver

# Dependencies first, so code changes do not reinstall them (all have manylinux wheels).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=root:root . .
# PYTHONDONTWRITEBYTECODE keeps the running container from writing .pyc files: compile them here,
# once, so every `flask --app archiver …` command starts without compiling the project.
RUN python -m compileall -q archiver config \
 && chmod 0755 scripts/docker-entrypoint.sh \
 && mkdir -p /app/instance \
 && chown archiver:archiver /app/instance

USER 10001:10001

EXPOSE 8000

# /health answers without touching a database; slim images have no curl, so use Python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

# SIGTERM (docker stop): the scheduler stops, running jobs finish their current batch and are recorded
# `interrupted` within SHUTDOWN_TIMEOUT_SECONDS (30 s); give it `docker stop -t 45` (compose: stop_grace_period).
STOPSIGNAL SIGTERM

# init-db (idempotent, waits for the database), optional seed-demo, then waitress on 0.0.0.0:$PORT.
CMD ["scripts/docker-entrypoint.sh"]
