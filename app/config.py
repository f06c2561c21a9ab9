"""Configuration, read once from the environment and typed.

Names are those of docs/configuration.md (a test keeps the two in step). Code reads
``current_app.config``; only this module reads ``os.environ``.
"""
import ipaddress
import os

DEFAULT_CORS_HEADERS = [
    "Content-Type", "Authorization", "X-API-Key", "X-Requested-With", "Accept", "Origin",
    "Access-Control-Request-Method", "Access-Control-Request-Headers", "ApiKey", "Api-Key", "X-Request-ID",
]
EXPOSED_HEADERS = [
    "Content-Type", "Authorization", "X-API-Key", "Retry-After", "X-Request-ID",
    "X-RateLimit-Limit-Day", "X-RateLimit-Remaining-Day", "X-RateLimit-Limit-Month",
    "X-RateLimit-Remaining-Month", "X-RateLimit-Reset", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
]


class ConfigError(RuntimeError):
    """The configuration is unsafe or invalid; the app refuses to start."""


def _env(name, default=None):
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _number(name, value, kind, what):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {what}, not {value!r}") from None


def _int(name, default):
    return _number(name, _env(name, default), int, "an integer")


def _float(name, default):
    return _number(name, _env(name, default), float, "a number")


def _bool(name, default):
    return str(_env(name, default)).lower() in ("1", "true", "yes", "on")


def _list(name, default=""):
    return [item.strip() for item in str(_env(name, default)).split(",") if item.strip()]


def _tier_quotas():
    """Per-tier probe quotas: (per day, per month); None means unlimited."""
    def quota(name, default):
        value = _env(name, default)
        if str(value).lower() in ("", "none", "unlimited", "-1"):
            return None
        return _number(name, value, int, "an integer")

    return {
        "Free": (quota("QUOTA_FREE_DAY", 100), quota("QUOTA_FREE_MONTH", 1000)),
        "Standard": (quota("QUOTA_STANDARD_DAY", 1000), quota("QUOTA_STANDARD_MONTH", 20000)),
        "Enterprise": (quota("QUOTA_ENTERPRISE_DAY", None), quota("QUOTA_ENTERPRISE_MONTH", None)),
    }


def _tier_concurrency():
    """How many probes one user of each tier may have running at once."""
    return {
        "Free": _int("CONCURRENT_PROBES_FREE", 2),
        "Standard": _int("CONCURRENT_PROBES_STANDARD", 5),
        "Enterprise": _int("CONCURRENT_PROBES_ENTERPRISE", 20),
    }


class Config:
    """Settings shared by every environment; each value can be set from the environment."""

    APP_ENV = "development"
    VERSION = "1.0.0"
    DEBUG = False
    TESTING = False
    # json (one object a line) or text; unset: json in production, text elsewhere (app/logging_setup.py)
    LOG_FORMAT = _env("LOG_FORMAT")
    # GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>" when set (required in production).
    METRICS_TOKEN = _env("METRICS_TOKEN", "")

    SQLALCHEMY_DATABASE_URI = _env("DATABASE_URL")  # None -> SQLite file in the instance folder
    # Per worker. The transaction pool must cover requests queued on one user's row lock (the
    # quota/concurrency reservation) plus those writing results, or results wait behind the
    # queue: measured, 100 parallel pings of one user took 2.2x one alone with 4 + 6, 1.35x
    # with 10 + 20. The autocommit pool serves single-statement auth reads and needs few.
    # Worst case per worker: 10 + 10 + 2 + 4 = 26 connections.
    DB_POOL_SIZE = _int("DB_POOL_SIZE", 10)
    DB_MAX_OVERFLOW = _int("DB_MAX_OVERFLOW", 10)
    DB_AUTH_POOL_SIZE = _int("DB_AUTH_POOL_SIZE", 2)
    DB_AUTH_MAX_OVERFLOW = _int("DB_AUTH_MAX_OVERFLOW", 4)
    # Pre-ping costs a round trip on every checkout. Without it, a connection the server closed
    # (restart) is still replaced at checkout by a cheaper socket check (app/db/engine.py); only
    # a connection cut without a FIN, or over TLS, then fails its first statement (503).
    DB_POOL_PRE_PING = _bool("DB_POOL_PRE_PING", False)
    # Bounds that keep a hung or unreachable database from holding threads (app/db/engine.py):
    # connecting, each statement (server-side statement_timeout, and the same bound plus 0.5 s on
    # the client; 0 turns both off), waiting for a pooled connection, SQLite's lock wait, readiness.
    DB_CONNECT_TIMEOUT = _float("DB_CONNECT_TIMEOUT", 2.0)
    DB_STATEMENT_TIMEOUT = _float("DB_STATEMENT_TIMEOUT", 3.0)
    DB_POOL_TIMEOUT = _float("DB_POOL_TIMEOUT", 2.0)
    DB_SQLITE_BUSY_TIMEOUT = _float("DB_SQLITE_BUSY_TIMEOUT", 10.0)
    DB_READY_TIMEOUT = _float("DB_READY_TIMEOUT", 2.0)

    JWT_SECRET_KEY = _env("JWT_SECRET_KEY")
    JWT_EXPIRES_MINUTES = _int("JWT_EXPIRES_MINUTES", 60)
    BCRYPT_ROUNDS = _int("BCRYPT_ROUNDS", 12)
    PASSWORD_MIN_LENGTH = _int("PASSWORD_MIN_LENGTH", 12)
    PASSWORD_MAX_LENGTH = 128
    API_KEY_TOUCH_SECONDS = _int("API_KEY_TOUCH_SECONDS", 60)
    # Per-worker cache of the identifying lookup (app/auth/cache.py); capped at 1 s, 0 turns it off.
    AUTH_CACHE_SECONDS = _float("AUTH_CACHE_SECONDS", 0.5)
    # Sessions and keys (issue 11): a refresh token's lifetime; how long a rotated key's old secret works.
    REFRESH_TOKEN_DAYS = _int("REFRESH_TOKEN_DAYS", 30)
    API_KEY_ROTATION_GRACE_SECONDS = _int("API_KEY_ROTATION_GRACE_SECONDS", 86400)
    # Per-account login back-off (app/services/login_throttle.py), on top of RATELIMIT_AUTH per IP.
    LOGIN_FREE_FAILURES = _int("LOGIN_FREE_FAILURES", 5)
    LOGIN_BACKOFF_BASE_SECONDS = _int("LOGIN_BACKOFF_BASE_SECONDS", 1)
    LOGIN_BACKOFF_MAX_SECONDS = _int("LOGIN_BACKOFF_MAX_SECONDS", 300)
    LOGIN_FAILURE_WINDOW_SECONDS = _int("LOGIN_FAILURE_WINDOW_SECONDS", 900)
    LOGIN_KNOWN_ADDRESS_DAYS = _int("LOGIN_KNOWN_ADDRESS_DAYS", 30)

    # Addresses/CIDRs of the reverse proxies whose X-Forwarded-For/-Proto are believed (empty: none).
    TRUSTED_PROXIES = _env("TRUSTED_PROXIES", "")
    # The API's public URL for links in answers (history pagination); empty: links are relative.
    PUBLIC_BASE_URL = _env("PUBLIC_BASE_URL", "")
    # Strict-Transport-Security max-age, sent in production only (0: not sent).
    HSTS_MAX_AGE = _int("HSTS_MAX_AGE", 31536000)
    MAX_CONTENT_LENGTH = _int("MAX_CONTENT_LENGTH", 64 * 1024)
    # Server layer (app/server, docs/server.md): time allowed for a request's head and for its body,
    # bound on a thread's blocking socket I/O, largest request head.
    SERVER_HEADER_TIMEOUT = _float("SERVER_HEADER_TIMEOUT", 10.0)
    SERVER_BODY_TIMEOUT = _float("SERVER_BODY_TIMEOUT", 30.0)
    SERVER_IO_TIMEOUT = _float("SERVER_IO_TIMEOUT", 30.0)
    SERVER_MAX_HEADER_BYTES = _int("SERVER_MAX_HEADER_BYTES", 64 * 1024)

    RATELIMIT_ENABLED = _bool("RATELIMIT_ENABLED", True)
    RATELIMIT_DEFAULT = _env("RATELIMIT_DEFAULT", "50 per hour")
    RATELIMIT_AUTH = _env("RATELIMIT_AUTH", "10 per minute")
    RATELIMIT_STORAGE_URI = _env("RATELIMIT_STORAGE_URI", "memory://")
    # Redis down: count limits in each process's memory until it is back (docs/faults.md), and
    # never wait on it longer than REDIS_TIMEOUT seconds.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = _bool("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    REDIS_TIMEOUT = _float("REDIS_TIMEOUT", 1.0)

    CORS_ORIGINS = _list("CORS_ORIGINS", "*")
    CORS_ALLOW_CREDENTIALS = _bool("CORS_ALLOW_CREDENTIALS", False)

    TIER_QUOTAS = _tier_quotas()
    TIER_CONCURRENT_PROBES = _tier_concurrency()
    PROBE_MAX_CONCURRENT_PER_WORKER = _int("PROBE_MAX_CONCURRENT_PER_WORKER", 200)

    PROBE_ALLOWED_NETWORKS = _env("PROBE_ALLOWED_NETWORKS", "")
    PROBE_ALLOWED_DOMAINS = _env("PROBE_ALLOWED_DOMAINS", "")
    DNS_NAMESERVERS = _list("DNS_NAMESERVERS")
    WHOIS_ROOT_SERVER = _env("WHOIS_ROOT_SERVER", "whois.iana.org")
    RDAP_BOOTSTRAP_URL = _env("RDAP_BOOTSTRAP_URL", "")
    PING_MAX_COUNT = _int("PING_MAX_COUNT", 10)
    PING_INTERVAL = _float("PING_INTERVAL", 1.0)
    PING_TIMEOUT = _float("PING_TIMEOUT", 2.0)
    TRACEROUTE_MAX_HOPS = _int("TRACEROUTE_MAX_HOPS", 64)
    TRACEROUTE_PROBES_PER_HOP = _int("TRACEROUTE_PROBES_PER_HOP", 3)
    TRACEROUTE_HOP_TIMEOUT = _float("TRACEROUTE_HOP_TIMEOUT", 2.0)
    TRACEROUTE_TOTAL_TIMEOUT = _float("TRACEROUTE_TOTAL_TIMEOUT", 60.0)
    DNS_TIMEOUT = _float("DNS_TIMEOUT", 5.0)
    WHOIS_TIMEOUT = _float("WHOIS_TIMEOUT", 15.0)
    WHOIS_MAX_BYTES = _int("WHOIS_MAX_BYTES", 1_000_000)
    # Every job's deadline is its probe's bound (from the settings above) plus this margin; a
    # running job past its deadline is ended as failed by the sweep of a running server.
    PROBE_DEADLINE_MARGIN_SECONDS = _float("PROBE_DEADLINE_MARGIN_SECONDS", 15.0)
    JOB_SWEEP_SECONDS = _float("JOB_SWEEP_SECONDS", 5.0)  # 0: no sweep in this process
    # How long a caller waits for a finished probe's result to be stored while the database is
    # away; past that it gets 503 and the worker keeps the result and stores it later.
    PROBE_RESULT_WAIT_SECONDS = _float("PROBE_RESULT_WAIT_SECONDS", 3.0)
    # How often each worker hands freed heap memory back to the OS (glibc malloc_trim; 0: never).
    MEMORY_TRIM_SECONDS = _float("MEMORY_TRIM_SECONDS", 60.0)

    # Agents (docs/agents.md): unset = the embedded default (the API runs probes itself, location
    # `local`); redis:// or rediss:// = probes go through Celery to the agents online.
    CELERY_BROKER_URL = _env("CELERY_BROKER_URL", "")
    DEFAULT_LOCATION = _env("DEFAULT_LOCATION", "")  # agent for sync probes; empty: any online
    AGENT_OFFLINE_SECONDS = _float("AGENT_OFFLINE_SECONDS", 30.0)  # silent this long: offline
    BROKER_TIMEOUT = _float("BROKER_TIMEOUT", 1.0)  # the API's wait on the broker: then 503
    CENTRAL_WORKER_CONCURRENCY = _int("CENTRAL_WORKER_CONCURRENCY", 8)  # ./start.sh worker threads
    # The central worker's CPU priority (0-19): on a host they share, its work yields the CPU to
    # the API's requests. AGENT_NICE is the agent's (read by app/agent/settings.py, default 0).
    WORKER_NICE = _int("WORKER_NICE", 10)
    # The central worker stores the agents' results, so their probe counts live in its process:
    # it serves its own /metrics here (0: off). Loopback unless told otherwise.
    WORKER_METRICS_PORT = _int("WORKER_METRICS_PORT", 9101)
    WORKER_METRICS_BIND = _env("WORKER_METRICS_BIND", "127.0.0.1")
    # Measurements (POST /api/measurements): results per measurement at most, and the event streams.
    MEASUREMENT_MAX_PROBES = _int("MEASUREMENT_MAX_PROBES", 16)
    MEASUREMENT_STREAM_MAX_SECONDS = _float("MEASUREMENT_STREAM_MAX_SECONDS", 300.0)  # then it closes
    MEASUREMENT_STREAMS_PER_USER = _int("MEASUREMENT_STREAMS_PER_USER", 4)  # open at once (app.services.stream_slots)
    MEASUREMENT_STREAMS_PER_WORKER = _int("MEASUREMENT_STREAMS_PER_WORKER", 32)

    ADMIN_USERNAME = _env("ADMIN_USERNAME")
    ADMIN_EMAIL = _env("ADMIN_EMAIL")
    ADMIN_PASSWORD = _env("ADMIN_PASSWORD")

    STATS_FLUSH_SECONDS = _float("STATS_FLUSH_SECONDS", 5.0)

    # flask-smorest: OpenAPI document generated from the same schemas that validate input.
    API_TITLE = "ProbeOps API"
    API_VERSION = VERSION
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"


class DevelopmentConfig(Config):
    """The embedded default: SQLite, a generated JWT secret kept in the instance folder."""

    APP_ENV = "development"


class TestingConfig(Config):
    """Tests: cheap bcrypt, generous limits unless a test sets its own."""

    APP_ENV = "testing"
    TESTING = True
    BCRYPT_ROUNDS = 4
    RATELIMIT_DEFAULT = "100000 per hour"
    RATELIMIT_AUTH = "100000 per hour"
    JWT_SECRET_KEY = "testing-secret-testing-secret-testing-secret-0123"
    JOB_SWEEP_SECONDS = 0.0  # one app per test: tests that need the sweep call it or set this


class ProductionConfig(Config):
    """Production: refuses to start without a strong secret or with unsafe CORS."""

    APP_ENV = "production"


CONFIGS = {"development": DevelopmentConfig, "testing": TestingConfig, "production": ProductionConfig}


def normalize_database_url(url):
    """Use psycopg2 for ``postgres://`` / ``postgresql://`` URLs (SQLAlchemy 2.1 would pick psycopg 3)."""
    for scheme in ("postgres://", "postgresql://"):
        if url and url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


# Each probe setting, and the engine's hard bounds it must stay within (app/probes/limits.py).
def _probe_bounds():
    from app.probes import limits as L

    return {
        "PING_MAX_COUNT": (L.PING_COUNT_MIN, L.PING_COUNT_MAX),
        "PING_INTERVAL": (L.PING_INTERVAL_MIN, L.PING_INTERVAL_MAX),
        "PING_TIMEOUT": (L.PING_TIMEOUT_MIN, L.PING_TIMEOUT_MAX),
        "TRACEROUTE_MAX_HOPS": (L.TRACE_MAX_HOPS_MIN, L.TRACE_MAX_HOPS_MAX),
        "TRACEROUTE_PROBES_PER_HOP": (L.TRACE_PROBES_MIN, L.TRACE_PROBES_MAX),
        "TRACEROUTE_HOP_TIMEOUT": (L.TRACE_TIMEOUT_MIN, L.TRACE_TIMEOUT_MAX),
        "TRACEROUTE_TOTAL_TIMEOUT": (L.TRACE_TOTAL_MIN, L.TRACE_TOTAL_MAX),
        "DNS_TIMEOUT": (L.DNS_TIMEOUT_MIN, L.DNS_TIMEOUT_MAX),
        "WHOIS_TIMEOUT": (L.WHOIS_TIMEOUT_MIN, L.WHOIS_TIMEOUT_MAX),
        "WHOIS_MAX_BYTES": (L.WHOIS_MAX_BYTES_MIN, L.WHOIS_MAX_BYTES_MAX),
    }


def check_probe_settings(config):
    """Refuse at start probe bounds the engines would reject and malformed PROBE_ALLOWED_NETWORKS / _DOMAINS."""
    from app.probes.targets import parse_domains, parse_networks

    for name, (low, high) in _probe_bounds().items():
        if not low <= config[name] <= high:
            raise ConfigError(f"{name}={config[name]} is outside what the probe engine allows ({low}..{high})")
    try:
        parse_networks(config.get("PROBE_ALLOWED_NETWORKS") or "")
    except ValueError as exc:
        raise ConfigError(f"PROBE_ALLOWED_NETWORKS: {exc}") from exc
    try:
        parse_domains(config.get("PROBE_ALLOWED_DOMAINS") or "")
    except ValueError as exc:
        raise ConfigError(f"PROBE_ALLOWED_DOMAINS: {exc}") from exc
    for server in config.get("DNS_NAMESERVERS") or []:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ConfigError(f"DNS_NAMESERVERS: {server!r} is not an IP address") from None


def check_production(config):
    """Refuse to start in production with a missing or weak secret (app/secret_strength.py), or open CORS
    with credentials."""
    from app.secret_strength import secret_problem

    problem = secret_problem(config.get("JWT_SECRET_KEY"))
    if problem:
        raise ConfigError(problem)
    if "*" in config.get("CORS_ORIGINS", []) and config.get("CORS_ALLOW_CREDENTIALS"):
        raise ConfigError("CORS_ORIGINS='*' together with CORS_ALLOW_CREDENTIALS is refused in production")
    if not config.get("METRICS_TOKEN"):
        raise ConfigError("METRICS_TOKEN is required in production: /metrics would be open to anyone")
