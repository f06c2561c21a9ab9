"""Log lines for machines (JSON, one object a line) or people (text), with each request's context.

``LOG_FORMAT=json|text`` (json by default in production, text elsewhere). The app's loggers write
to stderr, its access lines (logger ``probeops.access``, one per answered request) to stdout;
Gunicorn's error log uses the same formatter (``app.gunicorn_hooks.JsonAwareLogger``). Flask is imported only
when it is already loaded, so Gunicorn's master and the agent can use this module without it.
"""
import logging
import sys
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("json", "text")
ACCESS_LOGGER = "probeops.access"
# Every JSON line has these keys (null when the line is not about a request, or not yet known).
CONTEXT_FIELDS = ("request_id", "user_id", "auth_method", "route", "status", "duration_ms")
BASE_FIELDS = ("time", "level", "logger", "message")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class LogFormatError(ValueError):
    """LOG_FORMAT is not one of FORMATS."""


def resolve_format(value, app_env):
    """``json`` or ``text``: the given LOG_FORMAT, or json in production and text elsewhere."""
    value = (value or "").strip().lower()
    if not value:
        return "json" if app_env == "production" else "text"
    if value not in FORMATS:
        raise LogFormatError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def request_context():
    """The current request's id, user id, auth method and route template (all None outside one)."""
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return {}
    g, request = flask.g._get_current_object(), flask.request._get_current_object()  # one proxy lookup each
    user = g.get("current_user")
    rule = request.url_rule
    return {"request_id": g.get("request_id"), "user_id": getattr(user, "id", None),
            "auth_method": g.get("auth_method"), "route": rule.rule if rule is not None else None}


class RequestContextFilter(logging.Filter):
    """Stamps each record with the CONTEXT_FIELDS (a field the caller passed in ``extra`` wins)."""

    def filter(self, record):
        context = request_context()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, context.get(name))
        return True


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: BASE_FIELDS, CONTEXT_FIELDS, then any ``extra`` fields."""

    def add_fields(self, log_data, record, message_dict):
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        for name in CONTEXT_FIELDS:
            log_data[name] = getattr(record, name, None)
        super().add_fields(log_data, record, message_dict)


class TextFormatter(logging.Formatter):
    """The text format; records from outside a request show ``[-]`` for the request id."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record):
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


def make_formatter(fmt):
    """The formatter for ``fmt`` (``json`` or ``text``)."""
    if fmt == "json":
        return JsonLineFormatter(reserved_attrs=_reserved_attrs())
    return TextFormatter()


def _reserved_attrs():
    """LogRecord attributes never copied into a JSON line (the base and context fields are set apart)."""
    from pythonjsonlogger.core import RESERVED_ATTRS

    return [*RESERVED_ATTRS, *CONTEXT_FIELDS, "request_id"]


class StdStreamHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout``/``sys.stderr`` is at the time of each record (not at setup)."""

    def __init__(self, name):
        self.stream_name = name
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self.stream_name)

    @stream.setter
    def stream(self, _value):
        pass  # always the current sys stream


def _handler(stream_name, fmt):
    handler = StdStreamHandler(stream_name)
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(RequestContextFilter())
    handler._probeops = True  # ours: replaced, never stacked, when configure() runs again
    return handler


def _replace_handler(logger, handler):
    for old in [h for h in logger.handlers if getattr(h, "_probeops", False)]:
        logger.removeHandler(old)
    logger.addHandler(handler)


def configure(fmt, level=logging.INFO):
    """Install the handlers: app loggers to stderr, access lines to stdout (idempotent)."""
    # Neither format shows the caller's file and line: skip looking them up for every record (the
    # logging HOWTO's "Optimization" section; the costly part, a walk of the stack). Thread and
    # process stay: Gunicorn's own text format shows "[%(process)d]", which fails on a record
    # without one ("--- Logging error ---" for each of its lines).
    logging._srcfile = None
    _replace_handler(logging.getLogger(), _handler("stderr", fmt))
    logging.getLogger("probeops").setLevel(level)
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO)
    access.propagate = False  # its own stream; not again on the root's
    _replace_handler(access, _handler("stdout", fmt))


def configure_from_env(environ=None):
    """For processes without Flask (the agent, the central worker): LOG_FORMAT and APP_ENV from the
    environment; returns the format used."""
    import os

    environ = os.environ if environ is None else environ
    fmt = resolve_format(environ.get("LOG_FORMAT"), environ.get("APP_ENV", "development"))
    configure(fmt)
    return fmt


def init_app(app):
    """Resolve LOG_FORMAT for the app's environment and configure logging once per app."""
    from app.config import ConfigError

    try:
        app.config["LOG_FORMAT"] = resolve_format(app.config.get("LOG_FORMAT"), app.config["APP_ENV"])
    except LogFormatError as exc:
        raise ConfigError(str(exc)) from None
    configure(app.config["LOG_FORMAT"])


def access_line(method, path, status, duration_ms, **fields):
    """Write one access line (the request's context comes from the filter)."""
    logging.getLogger(ACCESS_LOGGER).info(
        "%s %s %s %.1fms", method, path, status, duration_ms,
        extra={"method": method, "path": path, "status": status, "duration_ms": round(duration_ms, 2), **fields})

