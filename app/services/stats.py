"""Request counters for /api/admin/status, shared by every worker through the database.

Each worker adds up its requests in memory and flushes them into ``request_stats`` (an
atomic upsert of increments) every STATS_FLUSH_SECONDS, so the figures cover all workers
without one database write per request.
"""
import logging
import threading
import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.db.models import RequestStat
from app.extensions import db
from app.utils.clock import start_of_month, utcnow

log = logging.getLogger("probeops")


class RequestCounter:
    """Per-process buffer of (day -> [count, total_ms]) with periodic flushing."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending = {}
        self._last_flush = time.monotonic()

    def record(self, elapsed_ms, flush_every):
        """Count one request; flush when the buffer is older than ``flush_every`` seconds."""
        day = utcnow().date()
        with self._lock:
            entry = self._pending.setdefault(day, [0, 0.0])
            entry[0] += 1
            entry[1] += elapsed_ms
            due = time.monotonic() - self._last_flush >= flush_every
        if due:
            self.flush()

    def flush(self):
        """Write the buffered counts as increments; on failure keep them for next time."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not pending:
            return
        try:
            for day, (count, total_ms) in pending.items():
                _upsert(day, count, total_ms)
            db.session.commit()
        except Exception as exc:  # a stats hiccup must never fail a request
            db.session.rollback()
            from app.db.faults import database_failure

            if database_failure(exc) is None:  # an unavailable database is logged once per outage
                log.warning("could not flush request stats; keeping them for the next flush", exc_info=True)
            with self._lock:
                for day, (count, total_ms) in pending.items():
                    entry = self._pending.setdefault(day, [0, 0.0])
                    entry[0] += count
                    entry[1] += total_ms


def _upsert(day, count, total_ms):
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RequestStat).values(day=day, count=count, total_ms=total_ms)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RequestStat.day],
        set_={"count": RequestStat.count + stmt.excluded.count,
              "total_ms": RequestStat.total_ms + stmt.excluded.total_ms},
    )
    db.session.execute(stmt)


counter = RequestCounter()


def request_totals():
    """``(today, this_month, average_ms)`` over every worker's flushed requests."""
    today = utcnow().date()
    month_start = start_of_month(utcnow()).date()
    rows = db.session.execute(
        sa.select(RequestStat.day, RequestStat.count, RequestStat.total_ms).where(RequestStat.day >= month_start)
    ).all()
    total_today = sum(r.count for r in rows if r.day == today)
    total_month = sum(r.count for r in rows)
    total_ms = sum(r.total_ms for r in rows)
    return total_today, total_month, (total_ms / total_month if total_month else 0.0)
