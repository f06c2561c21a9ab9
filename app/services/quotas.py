"""Probe quotas per subscription tier, counted from the ProbeJob rows.

Counting the rows (not a counter in memory) keeps quotas exact across Gunicorn workers and
restarts. The check and the insert of the new job happen in one transaction that starts by
updating the user's row: that update takes a row lock on PostgreSQL and the write lock on
SQLite, so parallel requests of one user are serialised and exactly the allowed number run.
"""
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from app.db.models import ProbeJob
from app.extensions import db
from app.utils.clock import start_of_day, start_of_month, start_of_next_month, utcnow

DAY_SECONDS = 86400
REFUSED = "target_refused"  # a job the executor refused to run does not count


@dataclass
class QuotaUsage:
    """A user's probe count and limits for today and this month (limits None = unlimited)."""

    day_used: int
    month_used: int
    day_limit: int | None
    month_limit: int | None
    day_reset: int    # epoch seconds of next midnight UTC
    month_reset: int  # epoch seconds of the 1st of next month

    @property
    def unlimited(self):
        return self.day_limit is None and self.month_limit is None

    @property
    def day_remaining(self):
        return None if self.day_limit is None else max(0, self.day_limit - self.day_used)

    @property
    def month_remaining(self):
        return None if self.month_limit is None else max(0, self.month_limit - self.month_used)

    @property
    def exhausted(self):
        """``"day"``, ``"month"`` or None."""
        if self.month_remaining == 0:
            return "month"
        if self.day_remaining == 0:
            return "day"
        return None

    @property
    def reset(self):
        """When the limiting window resets: the month's end once the month is spent."""
        return self.month_reset if self.exhausted == "month" else self.day_reset

    def headers(self):
        """The contract's X-RateLimit-* headers (omitted for an unlimited tier)."""
        if self.unlimited:
            return {}
        out = {"X-RateLimit-Reset": str(self.reset)}
        if self.day_limit is not None:
            out["X-RateLimit-Limit-Day"] = str(self.day_limit)
            out["X-RateLimit-Remaining-Day"] = str(self.day_remaining)
        if self.month_limit is not None:
            out["X-RateLimit-Limit-Month"] = str(self.month_limit)
            out["X-RateLimit-Remaining-Month"] = str(self.month_remaining)
        return out


def tier_limits(tier):
    """(per day, per month) for ``tier``; None is unlimited."""
    return current_app.config["TIER_QUOTAS"].get(tier, (0, 0))


# Built once: building the select costs about as much as running it (the quota headers run it
# on every authenticated answer).
COUNT_JOBS = sa.select(
    sa.func.count().filter(ProbeJob.created_at >= sa.bindparam("day_start")),
    sa.func.count(),
).where(ProbeJob.user_id == sa.bindparam("user_id"), ProbeJob.created_at >= sa.bindparam("since"),
        sa.or_(ProbeJob.error_code.is_(None), ProbeJob.error_code != REFUSED))


def usage_for(user, now=None, autocommit=False, always_count=False):
    """Count the user's jobs since midnight and since the 1st, in one indexed query (in the
    request's transaction, or with ``autocommit`` on a connection of its own: the headers' read).
    An unlimited tier is not counted unless ``always_count`` (GET /api/users/me/usage shows it)."""
    now = now or utcnow()
    day_limit, month_limit = tier_limits(user.subscription_tier)
    day_start, month_start = start_of_day(now), start_of_month(now)
    day_used = month_used = 0
    if always_count or day_limit is not None or month_limit is not None:
        params = {"day_start": day_start, "user_id": user.id, "since": min(day_start, month_start)}
        if autocommit:
            with db.engines["autocommit"].connect() as conn:
                day_used, month_used = conn.execute(COUNT_JOBS, params).one()
        else:
            day_used, month_used = db.session.execute(COUNT_JOBS, params).one()
    return QuotaUsage(
        day_used=day_used, month_used=month_used, day_limit=day_limit, month_limit=month_limit,
        day_reset=int(day_start.timestamp()) + DAY_SECONDS,
        month_reset=int(start_of_next_month(now).timestamp()),
    )
