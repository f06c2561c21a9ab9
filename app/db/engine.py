"""Database engines: pool options, time bounds, and recovery from faults of the database.

- Every engine hides statement parameters from its error text (``hide_parameters``).
- PostgreSQL: connect, statement and pool-wait bounds (server-side ``statement_timeout`` and a
  client-side bound, see app.db.deadlines; TCP keepalives for a peer that vanished), so a hung
  server answers 503 in seconds instead of holding every thread.
- A pooled PostgreSQL connection the server has closed (restart, terminated backend) is noticed
  at checkout without a round trip (its socket is readable while idle) and replaced, so the first
  requests after a restart do not fail. ``DB_POOL_PRE_PING`` still adds a full ping per checkout.
- SQLite: WAL, busy timeout; a connection that failed with "readonly" / "disk I/O error" is
  discarded with the whole pool, since one opened during a read-only fault stays read-only.
- Every failure that means "unavailable" feeds app.db.faults (503, logged once per outage).
"""
import math
import select
import socket

import sqlalchemy.exc as sa_exc
from sqlalchemy import event

from app.db import deadlines, faults, log_safety

CLIENT_GRACE_SECONDS = 0.5  # the client-side bound waits this much past the server's statement_timeout


def engine_options(config):
    """SQLAlchemy engine options for the configured database."""
    uri = config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite"):
        return {"hide_parameters": True, "connect_args": {"timeout": config["DB_SQLITE_BUSY_TIMEOUT"]}}
    return {"hide_parameters": True, "pool_pre_ping": config["DB_POOL_PRE_PING"], "pool_size": config["DB_POOL_SIZE"],
            "max_overflow": config["DB_MAX_OVERFLOW"], "pool_recycle": 1800,
            "pool_timeout": config["DB_POOL_TIMEOUT"], "connect_args": postgres_connect_args(config)}


def postgres_connect_args(config):
    """libpq settings: bounded connect and statements, keepalives, and the client-side bound."""
    connect = config["DB_CONNECT_TIMEOUT"]
    statement = config["DB_STATEMENT_TIMEOUT"]
    args = {"connect_timeout": max(1, math.ceil(connect)), "keepalives": 1, "keepalives_idle": 10,
            "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 10_000}
    query_bound = None
    if statement > 0:
        args["options"] = f"-c statement_timeout={int(statement * 1000)}"
        query_bound = statement + CLIENT_GRACE_SECONDS
    args["connection_factory"] = deadlines.bounded_connection_class(connect, query_bound)
    return args


def instrument(engine, config):
    """Attach the fault handling (and SQLite's pragmas) to an engine built from ``engine_options``."""
    log_safety.install()
    name = engine.dialect.name
    if name == "sqlite":
        _sqlite_pragmas(engine, config)
    elif name == "postgresql":
        deadlines.install()
        event.listen(engine, "do_connect", _refuse_while_failing_fast)
        event.listen(engine, "checkout", _check_pooled_connection)
    event.listen(engine, "handle_error", _on_error)
    event.listen(engine, "after_cursor_execute", _on_success)


def _sqlite_pragmas(engine, config):
    busy_ms = int(config["DB_SQLITE_BUSY_TIMEOUT"] * 1000)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _refuse_while_failing_fast(_dialect, _record, _cargs, _cparams):
    faults.refuse_if_failing_fast()


def _check_pooled_connection(dbapi_connection, _record, _proxy):
    """Refuse to wait on a known outage; replace a connection the server has closed while it was idle."""
    faults.refuse_if_failing_fast()
    if dbapi_connection.closed or _closed_by_server(dbapi_connection):
        # The pool reconnects this record and checks out again.
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


def _closed_by_server(dbapi_connection):
    """True when an idle connection's socket holds the end of the stream or the server's error
    (the FATAL "terminating connection" a shutdown sends). Idle, a healthy connection has
    nothing to read, so this costs one ``poll()``; only a readable socket is looked at further."""
    fd = dbapi_connection.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    events = poller.poll(0)
    if not events:
        return False
    if events[0][1] & (select.POLLHUP | select.POLLERR):
        return True
    if dbapi_connection.info.ssl_in_use:
        return False  # TLS records cannot be judged from outside; DB_POOL_PRE_PING covers TLS
    sock = socket.socket(fileno=fd)
    try:
        first = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.detach()  # the descriptor stays libpq's
    return first in (b"", b"E")  # end of stream, or an ErrorResponse nobody asked for


def _on_error(context):
    if context.is_pre_ping:
        return  # the pool replaces the connection; nobody sees this error
    exc = context.original_exception
    if faults.is_failing_fast(exc):
        return
    reason = faults.database_failure(exc)
    if reason is None:
        return
    if faults.sqlite_connection_needs_reopen(exc):
        context.is_disconnect = True  # discard the pool: its connections may have opened read-only
    # Fail fast only when the server cannot be reached or does not answer: a connection it closed
    # (restart, terminated backend) is replaced by the next checkout without failing anyone else.
    postgres = context.dialect is not None and context.dialect.name == "postgresql"
    unreachable = context.connection is None or str(getattr(exc, "orig", exc)) == deadlines.TIMED_OUT
    faults.DATABASE.failed(reason, trip=postgres and unreachable)


def _on_success(*_args):
    faults.DATABASE.succeeded()
