"""No log line carries what a database error quotes: parameters, values, rows.

SQLAlchemy's error text lists the statement parameters (an email, a bcrypt hash, an API key
digest) unless ``hide_parameters`` is set, and PostgreSQL's own text can quote values
("Key (email)=(...) already exists", "invalid input syntax ...: "<input>""). Every engine hides
parameters, and a log record factory rewrites any record whose exception chain (or arguments)
holds a database error: the traceback keeps its frames, and each database error is described
by its class, SQLSTATE, constraint and SQL text (placeholders only).
"""
import logging
import sqlite3
import traceback

import psycopg2
import sqlalchemy.exc as sa_exc

DB_ERRORS = (sa_exc.StatementError, psycopg2.Error, sqlite3.Error)
# PostgreSQL SQLSTATE classes whose primary message never quotes a value (connection, resources,
# operator intervention, transaction rollback, object state, system): worth keeping in a log.
PG_SAFE_CLASSES = ("08", "40", "53", "55", "57", "58", "XX")


def describe(exc):
    """A database error as a log may show it."""
    parts = [f"{type(exc).__module__}.{type(exc).__qualname__}"]
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if orig is not exc:
        parts.append(f"from {type(orig).__module__}.{type(orig).__qualname__}")
    if isinstance(orig, psycopg2.Error):
        code = orig.pgcode or ""
        diag = orig.diag
        if code:
            parts.append(f"sqlstate {code}")
        if diag.constraint_name:
            parts.append(f"constraint {diag.constraint_name}")
        if not code:  # raised by libpq itself (connection refused, closed, timed out): no values in it
            parts.append(str(orig).strip().partition("\n")[0][:200])
        elif code[:2] in PG_SAFE_CLASSES and diag.message_primary:
            parts.append(diag.message_primary[:200])
    elif isinstance(orig, sqlite3.Error):  # SQLite's messages name columns, never values
        parts.append(str(orig)[:200])
    statement = getattr(exc, "statement", None)
    if statement:
        parts.append("statement: " + " ".join(statement.split())[:500])
    return "; ".join(parts)


def _chain(exc):
    seen, chain = set(), []
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    return chain


def holds_database_error(exc):
    return any(isinstance(e, DB_ERRORS) for e in _chain(exc))


def format_exception(exc):
    """The traceback of ``exc`` and its causes, each database error described by ``describe``."""
    blocks = []
    for e in reversed(_chain(exc)):
        text = describe(e) if isinstance(e, DB_ERRORS) else f"{type(e).__module__}.{type(e).__qualname__}: {e}"
        blocks.append("Traceback (most recent call last):\n" + "".join(traceback.format_tb(e.__traceback__)) + text)
    return "\n\nThe above exception led to the following:\n\n".join(blocks)


def _safe_arg(value):
    return describe(value) if isinstance(value, DB_ERRORS) else value


def _make_factory(previous):
    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and holds_database_error(exc):
            record.exc_text = format_exception(exc)
            record.exc_info = None
        if isinstance(record.args, tuple) and any(isinstance(a, DB_ERRORS) for a in record.args):
            record.args = tuple(_safe_arg(a) for a in record.args)
        elif isinstance(record.args, dict) and any(isinstance(a, DB_ERRORS) for a in record.args.values()):
            record.args = {k: _safe_arg(v) for k, v in record.args.items()}
        return record

    factory.probeops_safe = True
    return factory


def install():
    """Install the record factory once per process (it wraps whatever factory was there)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "probeops_safe", False):
        logging.setLogRecordFactory(_make_factory(current))
