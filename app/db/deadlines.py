"""Client-side time bounds for PostgreSQL, so a hung server cannot hold a thread for ever.

A stopped server (``kill -STOP``) or a half-dead host leaves the kernel ACKing what we send:
libpq then waits without bound, the server's own ``statement_timeout`` cannot fire, and TCP
keepalives or ``tcp_user_timeout`` see nothing wrong. psycopg2's wait callback turns every libpq
wait (connecting, sending, reading a result) into a ``poll()`` that we bound: past the deadline
psycopg2 closes the connection and raises ``OperationalError``, which SQLAlchemy treats as a
disconnect (the connection is discarded and the pool invalidated).

Only connections of a class made by ``bounded_connection_class`` are bounded; any other psycopg2
connection in the process (tools, tests) waits as psycopg2 always does.
"""
import select
import time

import psycopg2
import psycopg2.extensions as ext

TIMED_OUT = "timed out waiting for the database server"


def bounded_connection_class(connect_timeout, query_timeout):
    """A psycopg2 connection class whose connect and each round trip end after the given seconds
    (``None``: no bound)."""
    return type("BoundedConnection", (ext.connection,),
                {"connect_timeout": connect_timeout, "query_timeout": query_timeout})


def _wait(conn):
    """psycopg2 wait callback: wait for libpq like psycopg2 does, within the connection's bound."""
    if conn.status == ext.STATUS_SETUP:
        timeout = getattr(conn, "connect_timeout", None)
    else:
        timeout = getattr(conn, "query_timeout", None)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        poller = select.poll()  # libpq may change sockets while connecting (several hosts)
        poller.register(conn.fileno(), select.POLLIN if state == ext.POLL_READ else select.POLLOUT)
        if deadline is None:
            poller.poll()
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise psycopg2.OperationalError(TIMED_OUT)


def install():
    """Make psycopg2 wait through ``_wait`` (process-wide; unbounded for other connection classes)."""
    current = ext.get_wait_callback()
    if current is None:
        ext.set_wait_callback(_wait)
    elif current is not _wait:
        raise RuntimeError("another psycopg2 wait callback is installed; database time bounds cannot apply")
