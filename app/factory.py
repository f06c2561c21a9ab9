"""ProbeOps application factory: `create_app()` (imported through `app`, lazily)."""
import os

from flask import Flask

from app import config as settings
from app import errors, hooks, logging_setup
from app.db import faults
from app.db.engine import engine_options, instrument
from app.extensions import cors, db, limiter, migrate, openapi
from app.json_input import ApiRequest, JSONProvider
from app.proxies import TrustedProxies, check_public_base_url, parse_trusted_proxies


class ProbeOpsFlask(Flask):
    """Flask whose request bodies are read by the bounded JSON parser (app.json_input)."""

    request_class = ApiRequest
    json_provider_class = JSONProvider

    def ensure_sync(self, func):
        """Flask's answer for ``func``, remembered: Flask asks it of every hook and view on every
        request (about ten times), and the ``inspect`` check behind it is a few µs each time."""
        cache = self.__dict__.setdefault("_sync_functions", {})
        try:
            return cache[func]
        except KeyError:
            cache[func] = answer = super().ensure_sync(func)
            return answer
        except TypeError:  # unhashable: ask every time
            return super().ensure_sync(func)


def create_app(overrides=None):
    """Build the app for APP_ENV (or ``overrides["APP_ENV"]``), with optional config overrides."""
    overrides = dict(overrides or {})
    env = overrides.get("APP_ENV") or os.environ.get("APP_ENV", "development")
    if env not in settings.CONFIGS:
        raise settings.ConfigError(f"APP_ENV must be one of {', '.join(settings.CONFIGS)}, not {env!r}")
    app = ProbeOpsFlask("app", instance_path=os.environ.get("PROBEOPS_INSTANCE_PATH") or None)
    app.config.from_object(settings.CONFIGS[env])
    app.config.update(overrides)
    configure(app)
    register_extensions(app)
    register_blueprints(app)
    errors.init_app(app)
    register_commands(app)
    return app


def configure(app):
    """Fill in derived settings and refuse unsafe ones."""
    settings.check_probe_settings(app.config)
    if app.config["APP_ENV"] == "production":
        settings.check_production(app.config)
    elif not app.config.get("JWT_SECRET_KEY"):
        from app.secrets_store import load_or_create_secret

        app.config["JWT_SECRET_KEY"] = load_or_create_secret(app.instance_path)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "probeops.db")
    app.config["SQLALCHEMY_DATABASE_URI"] = settings.normalize_database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)
    # A second engine whose connections are in autocommit mode, for the single-statement reads
    # and writes of the auth hot path: no transaction to open, end or switch per request.
    auth_options = engine_options(app.config)
    if "pool_size" in auth_options:
        auth_options.update(pool_size=app.config["DB_AUTH_POOL_SIZE"], max_overflow=app.config["DB_AUTH_MAX_OVERFLOW"])
    app.config["SQLALCHEMY_BINDS"] = {"autocommit": {
        "url": app.config["SQLALCHEMY_DATABASE_URI"], **auth_options, "isolation_level": "AUTOCOMMIT"}}
    app.config["RATELIMIT_HEADERS_ENABLED"] = False  # the contract's X-RateLimit-* are the quota's
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", faults.storage_options(app.config))
    app.json.sort_keys = False
    app.config["PUBLIC_BASE_URL"] = check_public_base_url(app.config["PUBLIC_BASE_URL"])
    proxies = parse_trusted_proxies(app.config["TRUSTED_PROXIES"])
    if proxies:  # only from these peers: anyone else could pick their IP with X-Forwarded-For
        app.wsgi_app = TrustedProxies(app.wsgi_app, proxies)
    logging_setup.init_app(app)  # LOG_FORMAT: JSON lines or text (app/logging_setup.py)


def register_extensions(app):
    """Bind the extensions; the identity hook runs before the limiter so it can key on users."""
    from app.utils.converters import IdConverter

    app.url_map.converters["id"] = IdConverter
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"))
    openapi.init_app(app)
    cors.init_app(app, resources={r"/*": {"origins": app.config["CORS_ORIGINS"]}},
                  methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                  allow_headers=settings.DEFAULT_CORS_HEADERS, expose_headers=settings.EXPOSED_HEADERS,
                  supports_credentials=app.config["CORS_ALLOW_CREDENTIALS"], max_age=3600,
                  send_wildcard=hooks.cors_sends_wildcard(app.config), vary_header=False)  # hooks add Vary
    hooks.init_app(app)
    limiter.init_app(app)
    hooks.init_after_limiter(app)
    with app.app_context():
        for engine in db.engines.values():
            instrument(engine, app.config)


def register_blueprints(app):
    """One blueprint per resource."""
    from app.api import admin, api_keys, measurements, probes, system, users

    app.register_blueprint(system.blp)
    for module in (users, api_keys, probes, measurements, admin):
        openapi.register_blueprint(module.blp)


def register_commands(app):
    """``flask create-admin``, ``flask mark-stale-jobs``."""
    from app import cli

    cli.init_app(app)
