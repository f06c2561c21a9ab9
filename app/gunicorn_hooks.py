"""Gunicorn settings module (``gunicorn -c python:app.gunicorn_hooks``), used by start.sh.

start.sh runs Gunicorn with ``--preload``: the app is imported once in the master and the
workers are forked from it, so starting or recycling a worker (``--max-requests``) costs a
fork instead of importing and building the whole app again, and the workers share the
master's memory pages until they write to them.

A forked worker must not use connections its parent opened: SQLAlchemy's pools are replaced
here (the SQLAlchemy docs' ``dispose(close=False)`` recipe); redis-py resets its own pool when
it sees a new process id.

Logs: the app writes its own access lines (it knows the route, user and request id), so start.sh
gives Gunicorn no ``--access-logfile``; Gunicorn's error log follows LOG_FORMAT through
``JsonAwareLogger`` (``logger_class`` below).
"""
import gc
import os

from gunicorn.glogging import Logger

from app import logging_setup


class JsonAwareLogger(Logger):
    """Gunicorn's logger whose error (and, if enabled, access) lines follow LOG_FORMAT."""

    def setup(self, cfg):
        super().setup(cfg)
        fmt = logging_setup.resolve_format(os.environ.get("LOG_FORMAT"), os.environ.get("APP_ENV", "development"))
        if fmt != "json":
            return
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(logging_setup.make_formatter(fmt))
                if not any(isinstance(f, logging_setup.RequestContextFilter) for f in handler.filters):
                    handler.addFilter(logging_setup.RequestContextFilter())


logger_class = JsonAwareLogger


def when_ready(server):
    """Move the preloaded app's objects out of the garbage collector's reach before any fork (the
    ``gc.freeze`` recipe of Python's gc docs): a worker's collections then never walk, and so
    never copy, the pages it shares with the master, which made each ``--max-requests`` recycle
    cost a fifth of the throughput (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    """A worker ended (killed, recycled, stopped): its in-flight gauges no longer count (its counters do)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    """Give the new worker its own database connection pools, tell the app its thread count, and
    start its job sweep."""
    import main
    from app.extensions import db
    from app.services import job_sweeper

    with main.app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)
    # each event stream holds one of these threads (app/api/measurements.py caps them below it)
    main.app.config["SERVER_THREADS"] = worker.cfg.threads
    # Also in a worker that never runs a probe (e.g. one restarted after a kill): overdue jobs end.
    job_sweeper.ensure_started(main.app)
