"""Helpers for the flask-limiter side of rate limiting."""
import math
import time

from app.extensions import limiter


def retry_after_seconds():
    """Seconds until the breached rate-limit window resets (at least 1)."""
    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, math.ceil(current.window[0] - time.time()))  # RequestLimit.reset_at adds a second


def auth_limit():
    """The tighter limit for login and register (RATELIMIT_AUTH), read per request."""
    from flask import current_app

    return current_app.config["RATELIMIT_AUTH"]

