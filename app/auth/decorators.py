"""Route decorators: authentication and role checks."""
from functools import wraps

from flask import g

from app.errors import ApiError


def _challenge(code):
    """RFC 6750: an expired or revoked bearer token is ``invalid_token``."""
    if code in ("token_expired", "token_revoked"):
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return None


def auth_required(jwt_only=False, admin=False):
    """Require a valid JWT (or API key unless ``jwt_only``); with ``admin``, the admin role.

    401 for missing or bad credentials, 403 for the wrong role or an API key on a JWT-only route.
    The role is read from the user row loaded for this request, never from the token.
    """
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if g.get("auth_error"):
                code, message = g.auth_error
                raise ApiError(401, message, code=code, headers=_challenge(code))
            if g.get("current_user") is None:
                raise ApiError(401, "Authentication required", code="authentication_required")
            if jwt_only and g.auth_method != "jwt":
                raise ApiError(403, "This endpoint requires a JWT (Authorization: Bearer); API keys cannot manage keys")
            if admin and g.current_user.role != "admin":
                raise ApiError(403, "Admin role required")
            return view(*args, **kwargs)
        return wrapper
    return decorator
