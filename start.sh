#!/usr/bin/env bash
# Start the ProbeOps API under Gunicorn.
#
#   ./start.sh            # embedded default: SQLite in ./instance, generated dev secret
#   ./start.sh agent      # one probe agent (Celery; needs CELERY_BROKER_URL and AGENT_*, no database)
#   ./start.sh worker     # the central worker: stores the agents' results, ends overdue ones
#
# Steps: Python environment -> wait for the database -> migrations -> admin from ADMIN_* ->
# stale jobs marked failed -> exec Gunicorn (buffered gthread workers, CPU-scaled). docs/START_SCRIPT.md
# explains every variable and why the worker model is what it is.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '[start.sh] %s\n' "$*" >&2; }

# Optional .env (KEY=value lines) for runs outside docker-compose.
if [ -f .env ] && [ -z "${PROBEOPS_SKIP_DOTENV:-}" ]; then
  log "loading .env"
  set -a; . ./.env; set +a
fi

# 1. Python environment: use the current one if it has our packages, else ./.venv.
if ! python3 -c 'import flask, gunicorn, flask_smorest, dns, psycopg2, celery' 2>/dev/null; then
  if [ ! -x .venv/bin/python ]; then
    log "creating virtualenv in .venv"
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  . .venv/bin/activate
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat .venv/.requirements.sha256 2>/dev/null || true)" != "$want" ]; then
    log "installing requirements.txt into .venv"
    python -m pip install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > .venv/.requirements.sha256
  fi
fi
export FLASK_APP=main.py

# Roles (docs/agents.md): the API (no argument), an agent, or the central worker.
ROLE=${1:-api}
case "$ROLE" in
  api) ;;
  agent|worker)
    if [ -z "${CELERY_BROKER_URL:-}" ]; then
      log "./start.sh $ROLE needs CELERY_BROKER_URL (redis://... or rediss://...)"; exit 2
    fi ;;
  *) log "unknown role '$ROLE': ./start.sh [agent|worker]"; exit 2 ;;
esac
if [ "$ROLE" = agent ]; then
  # An agent needs the broker and nothing else: no database, no migrations, no admin.
  unset DATABASE_URL
  log "agent ${AGENT_NAME:-$(hostname -s)}: probes from here, results back through the broker"
  exec python3 -m app.agent
fi

# 2. Wait for the database (PostgreSQL may still be starting under docker-compose).
DB_WAIT_SECONDS=${DB_WAIT_SECONDS:-60}
if [ -n "${DATABASE_URL:-}" ]; then
  log "waiting up to ${DB_WAIT_SECONDS}s for the database"
  python3 - "$DB_WAIT_SECONDS" <<'PY'
import os, sys, time
import sqlalchemy as sa
from app.config import normalize_database_url
deadline = time.monotonic() + float(sys.argv[1])
engine = sa.create_engine(normalize_database_url(os.environ["DATABASE_URL"]))
while True:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        break
    except Exception as exc:
        if time.monotonic() > deadline:
            sys.exit(f"[start.sh] database not reachable: {type(exc).__name__}")
        time.sleep(1)
PY
fi

if [ "$ROLE" = worker ]; then
  # Migrations are the API's to run; the worker writes rows of the schema the API put there.
  log "central worker: stores results from ${CELERY_BROKER_URL%%://*}:// and ends overdue jobs"
  exec python3 -m app.worker
fi

# 3. Schema, admin, leftovers of a crash (only jobs past their deadline: another live instance
#    may be running the others). Migrations are the only way the schema changes.
log "applying migrations"
DB_STATEMENT_TIMEOUT=0 flask db upgrade  # a migration may rightly run longer than a request's bound
flask ensure-admin
flask mark-stale-jobs

# 4. Workers. gthread: each worker serves THREADS requests at once, so slow probes
#    (seconds of waiting on sockets) don't block fast requests. Our subclass of it
#    (app.server.worker.BufferedThreadWorker, docs/server.md) reads each request whole, with
#    deadlines, before a thread sees it: slow or idle clients cost no thread.
CORES=$(nproc 2>/dev/null || echo 1)
WORKERS=${WORKERS:-$((2 * CORES + 1))}
THREADS=${THREADS:-32}
STORAGE=${RATELIMIT_STORAGE_URI:-memory://}
if [[ "$STORAGE" == memory://* ]] && [ "$WORKERS" -gt 1 ]; then
  # memory:// counts per process: N workers would let N times the limit through.
  THREADS=$((WORKERS * THREADS))
  [ "$THREADS" -gt 256 ] && THREADS=256
  log "RATELIMIT_STORAGE_URI is memory:// (per process): running 1 worker with ${THREADS} threads instead of ${WORKERS} workers so rate limits stay exact; set RATELIMIT_STORAGE_URI=redis://... to run ${WORKERS} workers"
  WORKERS=1
  if [ "${MAX_REQUESTS:-1000}" != "0" ]; then
    # A recycled worker would start with empty in-memory counters and reopen every limit.
    log "memory:// rate limits: worker recycling (--max-requests) is off, or a recycle would reset the limits"
    MAX_REQUESTS=0
  fi
fi

# Metrics (docs/operations.md, "Metrics"): every worker writes its values to files in one
# directory and /metrics adds them up. A private one unless given; a given one is cleared of a
# previous run's files (stale in-flight gauges and counters of processes long gone).
if [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  PROMETHEUS_MULTIPROC_DIR=$(mktemp -d -t probeops-metrics.XXXXXX)
else
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -type f -delete
fi
export PROMETHEUS_MULTIPROC_DIR

log "gunicorn: ${WORKERS} worker(s) x ${THREADS} threads (buffered gthread) on ${CORES} core(s), port ${API_PORT:-5000}"
exec gunicorn \
  --config python:app.gunicorn_hooks \
  --preload \
  --worker-class app.server.worker.BufferedThreadWorker \
  --workers "$WORKERS" \
  --threads "$THREADS" \
  --worker-connections "${WORKER_CONNECTIONS:-1000}" \
  --no-control-socket \
  --bind "${BIND_ADDRESS:-0.0.0.0}:${API_PORT:-5000}" \
  --timeout "${WORKER_TIMEOUT:-120}" \
  --graceful-timeout "${GRACEFUL_TIMEOUT:-30}" \
  --keep-alive "${KEEPALIVE:-5}" \
  --max-requests "${MAX_REQUESTS:-1000}" \
  --max-requests-jitter "${MAX_REQUESTS_JITTER:-50}" \
  --log-level "${LOG_LEVEL:-info}" \
  --error-logfile - \
  --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
  main:app
