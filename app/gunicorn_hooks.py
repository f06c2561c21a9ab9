"""Gunicorn settings module (``gunicorn -c python:app.gunicorn_hooks``), used by start.sh.

start.sh runs Gunicorn with ``--preload``: the app is imported once in the master and the
workers are forked from it, so starting or recycling a worker (``--max-requests``) costs a
fork instead of importing and building the whole app again, and the workers share the
master's memory pages until they write to them.

A forked worker must not use connections its parent opened: SQLAlchemy's pools are replaced
here (the SQLAlchemy docs' ``dispose(close=False)`` recipe); redis-py resets its own pool when
it sees a new process id.
"""


def post_fork(server, worker):
    """Give the new worker its own database connection pools, and start its job sweep."""
    import main
    from app.extensions import db
    from app.services import job_sweeper

    with main.app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)
    # Also in a worker that never runs a probe (e.g. one restarted after a kill): overdue jobs end.
    job_sweeper.ensure_started(main.app)
