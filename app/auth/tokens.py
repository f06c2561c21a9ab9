"""JWT access tokens: HS256, with a token-version claim checked against the user row and the
session (refresh-token family) they belong to as ``sid``."""
from datetime import timedelta

import jwt

ALGORITHM = "HS256"


class TokenInvalid(Exception):
    """The token is malformed, tampered with, expired or uses another algorithm."""


class TokenExpired(TokenInvalid):
    """The token was valid but its ``exp`` has passed."""


def issue_token(user, secret, expires_minutes, now, session_id=None):
    """Return a signed JWT for ``user`` valid for ``expires_minutes``, tied to ``session_id`` if given."""
    claims = {
        "sub": str(user.id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=expires_minutes)).timestamp()),
        "ver": user.token_version,
    }
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token, secret):
    """Return ``(user_id, token_version, session_id or None)`` from a valid token, or raise TokenInvalid."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["sub", "iat", "exp", "ver"]})
        session_id = claims.get("sid")
        if session_id is not None and not isinstance(session_id, str):
            raise TokenInvalid("sid must be a string")
        return int(claims["sub"]), int(claims["ver"]), session_id
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired(str(exc)) from exc
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise TokenInvalid(str(exc)) from exc
