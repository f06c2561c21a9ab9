"""The caller's usage, read from the functions that enforce each limit (no second count)."""
import math

from flask import g

from app.services.limits import window
from app.services.probe_jobs import concurrency_cap, running_probes
from app.services.quotas import usage_for


def _period(limit, used, remaining, reset):
    return {"limit": limit, "used": used, "remaining": remaining, "reset": reset}


def rate_budget():
    """The general request budget this request counted against: limit, remaining, reset (epoch)."""
    from app.hooks import _general_budget

    current = g.get("rate_budget") or _general_budget()
    if current is None:  # rate limiting is off
        return {"limit": None, "remaining": None, "reset": None}
    reset_at, remaining = window(current)  # as the RateLimit-* headers read it
    return {"limit": current.limit.amount, "remaining": max(0, remaining), "reset": math.ceil(reset_at)}


def for_user(user):
    """Quota per day and month, the request budget, and the probes in flight against the tier's cap."""
    quota = usage_for(user, always_count=True)
    return {
        "quota": {
            "day": _period(quota.day_limit, quota.day_used, quota.day_remaining, quota.day_reset),
            "month": _period(quota.month_limit, quota.month_used, quota.month_remaining, quota.month_reset),
        },
        "rate_limit": rate_budget(),
        "running_probes": {"running": running_probes(user), "limit": concurrency_cap(user)},
    }
