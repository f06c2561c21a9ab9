"""Figures for /api/admin/status and /api/health/ready."""
import os
import time

import psutil
import sqlalchemy as sa
from flask import current_app

from app.extensions import db, limiter
from app.services import stats
from app.services.users import count_rows


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
    """``(ok, checks)``: the database answers, and the rate-limit storage answers."""
    checks = {}
    try:
        db.session.execute(sa.text("SELECT 1"))
        db.session.commit()
        checks["database"] = "ok"
    except Exception:
        db.session.rollback()
        checks["database"] = "unavailable"
    try:
        checks["rate_limit_storage"] = "ok" if limiter.storage.check() else "unavailable"
    except Exception:
        checks["rate_limit_storage"] = "unavailable"
    return all(v == "ok" for v in checks.values()), checks
