"""The caller's usage, read from the functions that enforce each limit (no second count)."""
import math

from app.services.budget import current_window
from app.services.probe_jobs import concurrency_cap, running_probes
from app.services.quotas import usage_for


def _period(limit, used, remaining, reset):
    return {"limit": limit, "used": used, "remaining": remaining, "reset": reset}


def rate_budget():
    """The general request budget this request counted against: limit, remaining, reset (epoch),
    as the RateLimit-* headers of the same answer give them."""
    window = current_window()
    if window is None:  # rate limiting is off
        return {"limit": None, "remaining": None, "reset": None}
    return {"limit": window.limit, "remaining": window.remaining, "reset": math.ceil(window.reset_at)}


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
