"""Process lifecycle flags shared by the server layer and the app (no Flask imports).

The server layer calls ``begin_shutdown()`` when the worker is told to stop (SIGTERM); readiness
then answers 503 so a balancer moves on while in-flight requests finish.
"""
import threading

_shutting_down = threading.Event()


def begin_shutdown():
    """Mark this process as draining: no new work, readiness 503."""
    _shutting_down.set()


def is_shutting_down():
    """True once ``begin_shutdown()`` was called in this process."""
    return _shutting_down.is_set()
