"""Route decorators: authentication, role and API-key scope checks."""
from functools import wraps

from flask import g

from app.errors import ApiError


def _challenge(code):
    """RFC 6750: an expired or revoked bearer token is ``invalid_token``."""
    if code in ("token_expired", "token_revoked"):
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return None


def _check_scope(scope):
    """403 ``insufficient_scope`` naming ``scope`` when the calling API key lacks it (JWTs have all)."""
    granted = g.get("api_key_scopes")
    if scope is None or g.auth_method != "api_key" or granted is None or scope in granted:
        return
    raise ApiError(403, f"This API key lacks the scope '{scope}'", code="insufficient_scope",
                   fields={"scope": [scope]})


def auth_required(jwt_only=False, admin=False, scope=None):
    """Require a valid JWT (or API key unless ``jwt_only``); with ``admin``, the admin role; with
    ``scope``, an API key must hold that scope.

    401 for missing or bad credentials, 403 for the wrong role, an API key on a JWT-only route or
    a key outside its scopes. The role is read from the user row loaded for this request, never
    from the token.
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
            _check_scope(scope)
            return view(*args, **kwargs)
        return wrapper
    return decorator
