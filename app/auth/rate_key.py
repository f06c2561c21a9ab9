"""The rate limiter's key: who a request counts against."""
from flask import g
from flask_limiter.util import get_remote_address


def rate_limit_key():
    """``user:<id>`` when the request is authenticated, else ``ip:<client address>``."""
    user = g.get("current_user")
    return f"user:{user.id}" if user is not None else f"ip:{get_remote_address()}"


def client_ip_key():
    """``ip:<client address>``, for limits that must hold per address (login, register)."""
    return f"ip:{get_remote_address()}"
