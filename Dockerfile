# ProbeOps API image.
#
#   docker build -t probeops .
#   docker run --cap-add NET_RAW -p 5000:5000 -v probeops-instance:/app/instance probeops
#
# The entrypoint is start.sh: wait for the database, `flask db upgrade`, admin from ADMIN_*,
# mark stale jobs, then exec Gunicorn (gthread). docs/DOCKER_CONFIGURATION.md explains every line.
FROM python:3.11-slim-bookworm

# PYTHONDONTWRITEBYTECODE: /app is read-only for the service user, nothing to cache there.
# PROBEOPS_SKIP_DOTENV: the container's configuration comes from `environment:` / `env_file:`,
#   never from a .env that happens to be in /app (e.g. a bind-mounted source tree).
# FLASK_APP: start.sh exports it for its own commands; set here too so that
#   `docker compose exec api flask create-admin` finds the app.
# PROBEOPS_INSTANCE_PATH: the Flask instance folder (embedded SQLite database and the generated
#   development JWT secret); a volume, so both survive container replacement.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROBEOPS_SKIP_DOTENV=1 \
    FLASK_APP=main.py \
    PROBEOPS_INSTANCE_PATH=/app/instance \
    API_PORT=5000

# libcap2-bin provides setcap (see below). No compiler: every pinned requirement ships wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first (cached layer), installed system-wide: start.sh then finds flask, gunicorn,
# flask_smorest, dns and psycopg2 importable with the image's python3 and creates no venv.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Raw ICMP sockets (ping, traceroute -I, raw reader) need CAP_NET_RAW. The service runs as an
# unprivileged user, so the capability is attached to the interpreter file itself:
#   * setcap cannot be applied to a symlink (python3 -> python3.11), hence readlink -f;
#   * "+ep": permitted and effective, so an unmodified program (Python) has it on exec;
#   * the capability must still be in the container's bounding set. NET_RAW is in Docker's
#     default set and the compose files add it explicitly; if it is dropped (cap_drop: ALL
#     without cap_add: NET_RAW), the kernel refuses to exec this python at all (EPERM).
#   * with no-new-privileges the file capability is ignored and probes fall back to the
#     unprivileged ICMP datagram socket (net.ipv4.ping_group_range).
# The last command fails the build when the capability did not stick.
RUN groupadd --system probeops \
    && useradd --system --gid probeops --home-dir /app --no-create-home --shell /usr/sbin/nologin probeops \
    && setcap cap_net_raw+ep "$(readlink -f "$(command -v python3)")" \
    && getcap "$(readlink -f "$(command -v python3)")" | grep -q cap_net_raw \
    && chmod 0755 /app/start.sh \
    && mkdir -p /app/instance \
    && chown probeops:probeops /app/instance

# Created with the ownership above, so a fresh named volume is writable by the service user.
VOLUME ["/app/instance"]

USER probeops

EXPOSE 5000

# Liveness: GET /health answers 200. The slim image has no curl; urllib raises (exit 1) on any
# connection error or non-2xx status. start-period covers the database wait and migrations.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % (os.environ.get('API_PORT') or '5000'), timeout=4)"]

# start.sh execs Gunicorn, so Gunicorn is PID 1 and receives SIGTERM for a graceful stop.
ENTRYPOINT ["/app/start.sh"]
