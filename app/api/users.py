"""/api/users: register, login, the caller's profile, and the admin user list."""
from flask import g
from flask_smorest import Blueprint

from app.auth.decorators import auth_required
from app.auth.rate_key import client_ip_key
from app.extensions import limiter
from app.schemas.users import (
    LoginResponseSchema,
    LoginSchema,
    RegisterResponseSchema,
    RegisterSchema,
    UserSchema,
    UsersListSchema,
)
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
@blp.response(200, LoginResponseSchema)
def login(body):
    """Exchange email (or username) and password for a JWT; 429 while the account's login back-off runs."""
    user, token = service.login(body["password"], email=body.get("email"), username=body.get("username"))
    return {"message": "Login successful", "token": token, "user": user}


@blp.get("/me")
@auth_required()
@blp.response(200, UserSchema)
def me():
    """The authenticated user."""
    return g.current_user


@blp.get("")
@auth_required(admin=True)
@blp.response(200, UsersListSchema)
def list_users():
    """Every user with key and job counts (admin)."""
    return {"users": service.list_users_with_counts()}
