"""Route decorators: authentication and role checks."""
from functools import wraps

from flask import g

from app.errors import ApiError


def auth_required(jwt_only=False, admin=False):
    """Require a valid JWT (or API key unless ``jwt_only``); with ``admin``, the admin role.

    401 for missing or bad credentials, 403 for the wrong role or an API key on a JWT-only route.
    The role is read from the user row loaded for this request, never from the token.
    """
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if g.get("auth_error"):
                raise ApiError(401, g.auth_error)
            if g.get("current_user") is None:
                raise ApiError(401, "Authentication required")
            if jwt_only and g.auth_method != "jwt":
                raise ApiError(403, "This endpoint requires a JWT (Authorization: Bearer); API keys cannot manage keys")
            if admin and g.current_user.role != "admin":
                raise ApiError(403, "Admin role required")
            return view(*args, **kwargs)
        return wrapper
    return decorator
