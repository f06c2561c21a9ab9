"""Figures for /api/admin/status and /api/health/ready."""
import os
import threading
import time

import psutil
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite

from app.db.models import RequestStat
from app.extensions import db, limiter
from app.services import stats
from app.services.users import count_rows
from app.utils.clock import utcnow


def _human_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f}{unit}" if unit in ("B", "KB") else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}B"


def _human_duration(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d {hours}h {minutes}m {secs}s"


def _server_process():
    """The Gunicorn master when we run under one (so uptime is the server's), else this process."""
    me = psutil.Process()
    parent = me.parent()
    if parent is not None and "gunicorn" in " ".join(parent.cmdline()[:3]):
        return parent
    return me


def database_size():
    """Bytes used by the database (PostgreSQL: pg_database_size; SQLite: pages)."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        return db.session.scalar(sa.text("SELECT pg_database_size(current_database())"))
    if dialect == "sqlite":
        pages = db.session.scalar(sa.text("PRAGMA page_count"))
        return pages * db.session.scalar(sa.text("PRAGMA page_size"))
    return None


def server_status():
    """The contract's status document, every figure measured now."""
    stats.counter.flush()
    memory = psutil.virtual_memory()
    server = _server_process()
    users, keys, jobs = count_rows()
    size = database_size()
    today, month, average_ms = stats.request_totals()
    return {
        "system": {
            "version": current_app.config["VERSION"],
            "uptime": _human_duration(time.time() - server.create_time()),
            "uptime_seconds": int(time.time() - server.create_time()),
            "memory_usage": f"{_human_bytes(memory.total - memory.available)} / {_human_bytes(memory.total)}",
            "process_rss": _human_bytes(psutil.Process().memory_info().rss),
            "cpu_usage": f"{psutil.cpu_percent(interval=0.1):.0f}%",
            "cpu_count": os.cpu_count(),
            "pid": os.getpid(),
        },
        "database": {
            "status": "connected",
            "engine": db.session.get_bind().dialect.name,
            "size": _human_bytes(size) if size is not None else "unknown",
            "size_bytes": size,
            "users_count": users,
            "api_keys_count": keys,
            "probe_jobs_count": jobs,
        },
        "requests": {
            "total_today": today,
            "total_this_month": month,
            "average_response_time": f"{average_ms:.1f}ms",
            "average_response_time_ms": round(average_ms, 2),
        },
    }


def readiness():
    """``(status, checks)``: ``"ok"`` (serving) or ``"unavailable"``.

    The database must accept a write, and each check answers within DB_READY_TIMEOUT: a check
    still waiting by then counts as failed (it runs in a thread of its own, which ends within the
    database's own bounds). Redis down is ``ok`` with the check saying ``degraded: in-memory fallback`` while the
    fallback serves limits.
    """
    app = current_app._get_current_object()
    deadline = time.monotonic() + app.config["DB_READY_TIMEOUT"]
    pending = {"database": _in_thread(app, _database_accepts_writes),
               "rate_limit_storage": _in_thread(app, _storage_answers)}
    checks = {}
    for name, (thread, result) in pending.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        checks[name] = result.get("value", "timeout")
    storage = checks["rate_limit_storage"]
    if storage != "ok" and app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"]:
        checks["rate_limit_storage"] = "degraded: in-memory fallback"
    if checks["database"] != "ok":
        return "unavailable", checks
    # Still serving: the contract's 200 says "ok"; the check itself names the degradation.
    return "ok", checks


def _in_thread(app, check):
    result = {}

    def run():
        with app.app_context():
            result["value"] = check()

    thread = threading.Thread(target=run, name="readiness-check", daemon=True)
    thread.start()
    return thread, result


def _database_accepts_writes():
    """A real write (today's request_stats row, incremented by zero), committed: a database that
    answers reads but cannot write (read-only file, full disk, standby) is not ready."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RequestStat).values(day=utcnow().date(), count=0, total_ms=0.0)
    stmt = stmt.on_conflict_do_update(index_elements=[RequestStat.day], set_={"count": RequestStat.count})
    try:
        db.session.execute(stmt)
        db.session.commit()
        return "ok"
    except Exception:  # noqa: BLE001 - any failure means not ready; faults/log_safety log it
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 - a dead connection may refuse even the rollback
            pass
        return "unavailable"
    finally:
        db.session.remove()


def _storage_answers():
    try:
        return "ok" if limiter.storage.check() else "unavailable"
    except Exception:  # noqa: BLE001 - an unreachable storage is simply not ok
        return "unavailable"
