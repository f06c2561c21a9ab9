"""Recording the SQL statements an app runs (for tests that count a hot path's round trips)."""
import contextlib

import sqlalchemy as sa


@contextlib.contextmanager
def recorded_statements():
    """A list that receives every statement run on the current app's engines while the block runs."""
    from app.extensions import db

    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engines = list(db.engines.values())
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", record)
