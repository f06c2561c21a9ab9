"""/api/users: register, login, the caller's profile, and the admin user list."""
from flask import g
from flask_smorest import Blueprint

from app.auth.decorators import auth_required
from app.auth.rate_key import client_ip_key
from app.extensions import limiter
from app.schemas.admin import UserSearchQuerySchema, UsersPageSchema
from app.schemas.usage import UsageSchema
from app.schemas.users import (
    LoginSchema,
    LoginSessionResponseSchema,
    LogoutSchema,
    MessageResponseSchema,
    PasswordChangedSchema,
    PasswordChangeSchema,
    ProfileUpdateSchema,
    RefreshSchema,
    RegisterResponseSchema,
    RegisterSchema,
    SessionSchema,
    UserSchema,
)
from app.services import admin_users, sessions, usage
from app.services import users as service
from app.services.limits import auth_limit

blp = Blueprint("users", __name__, url_prefix="/api/users", description="Accounts and login")


@blp.post("/register")
@limiter.limit(auth_limit, key_func=client_ip_key)
@blp.arguments(RegisterSchema)
@blp.response(201, RegisterResponseSchema)
def register(body):
    """Create an account (role user, tier Free); usernames are unique whatever their case."""
    user = service.register(body["username"], body["email"], body["password"])
    return {"message": "User registered successfully", "user": user}


@blp.post("/login")
@limiter.limit(auth_limit, key_func=client_ip_key)
@blp.arguments(LoginSchema)
@blp.response(200, LoginSessionResponseSchema)
def login(body):
    """Exchange email (or username) and password for a JWT and a refresh token; 429 while the
    account's login back-off runs."""
    user, session = service.login(body["password"], email=body.get("email"), username=body.get("username"))
    return {"message": "Login successful", "user": user, **session}


@blp.post("/refresh")
@limiter.limit(auth_limit, key_func=client_ip_key)
@blp.arguments(RefreshSchema)
@blp.response(200, SessionSchema)
def refresh(body):
    """A new access token and refresh token for a refresh token, which is spent; presenting a
    spent one revokes its whole session (401 token_revoked)."""
    return sessions.refresh(body["refresh_token"])


@blp.post("/logout")
@auth_required(jwt_only=True)
@blp.arguments(LogoutSchema)
@blp.response(200, MessageResponseSchema)
def logout(body):
    """End this session: its access and refresh tokens (and those of ``refresh_token``'s session) stop working."""
    sessions.end(g.current_user.id, g.session_id, body.get("refresh_token"))
    return {"message": "Logged out"}


@blp.get("/me")
@auth_required(scope="account:read")
@blp.response(200, UserSchema)
def me():
    """The authenticated user."""
    return g.current_user


@blp.patch("/me")
@auth_required(jwt_only=True)
@limiter.limit(auth_limit, key_func=client_ip_key)
@blp.arguments(ProfileUpdateSchema)
@blp.response(200, UserSchema)
def update_me(body):
    """Change the caller's username and/or email; the current password is required; 409 on a clash."""
    return service.update_profile(g.current_user.id, body["current_password"], username=body.get("username"),
                                  email=body.get("email"))


@blp.post("/me/password")
@auth_required(jwt_only=True)
@limiter.limit(auth_limit, key_func=client_ip_key)
@blp.arguments(PasswordChangeSchema)
@blp.response(200, PasswordChangedSchema)
def change_password(body):
    """Change the password; every other session and token stops working (API keys keep working).

    The answer's token replaces the one used for this call."""
    answer = service.change_password(g.current_user.id, g.session_id, body["current_password"], body["new_password"])
    return {"message": "Password changed", **answer}


@blp.get("")
@auth_required(admin=True)
@blp.arguments(UserSearchQuerySchema, location="query")
@blp.response(200, UsersPageSchema)
def list_users(query):
    """Same as GET /api/admin/users (admin)."""
    return admin_users.search(query.pop("limit"), query.pop("offset"), endpoint="users.list_users", **query)


@blp.get("/me/usage")
@auth_required(scope="account:read")
@blp.response(200, UsageSchema)
def my_usage():
    """Probe quota used and left today and this month, the request budget left, probes running against
    the tier's cap; unlimited figures are null, ``reset`` times are epoch seconds."""
    return usage.for_user(g.current_user)
