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



def window(current):
    """``(reset_at, remaining)`` of a counted limit: on Redis with the fixed-window strategy in one
    round trip (GET and TTL pipelined) instead of the limiter's two; otherwise the limiter's own."""
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter

    strategy = current.limiter
    storage = strategy.storage
    if not (isinstance(strategy, FixedWindowRateLimiter) and isinstance(storage, RedisStorage)):
        return current.window
    key = storage.prefixed_key(current.key)
    pipe = storage.get_connection(True).pipeline(transaction=False)
    count, ttl = pipe.get(key).ttl(key).execute()
    return max(ttl, 0) + time.time(), max(0, current.limit.amount - int(count or 0))
