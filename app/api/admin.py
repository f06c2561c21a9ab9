"""/api/admin: users' roles, tiers and status, the audit trail, and the server status."""
from flask import g
from flask_smorest import Blueprint

from app.auth.decorators import auth_required
from app.schemas.admin import (
    ActiveSchema,
    AuditPageSchema,
    AuditQuerySchema,
    RoleSchema,
    StatusSchema,
    TierSchema,
    UserUpdatedSchema,
)
from app.schemas.users import UsersListSchema
from app.services import audit
from app.services import status as status_service
from app.services import users as service

blp = Blueprint("admin", __name__, url_prefix="/api", description="Administration (admin role)")


@blp.get("/admin/users")
@auth_required(admin=True)
@blp.response(200, UsersListSchema)
def list_users():
    """Every user with key and job counts."""
    return {"users": service.list_users_with_counts()}


@blp.post("/admin/users/<id:user_id>/role")
@auth_required(admin=True)
@blp.arguments(RoleSchema)
@blp.response(200, UserUpdatedSchema)
def set_role(body, user_id):
    """Make a user an admin or a plain user; 409 ``conflict`` for the last active admin."""
    user = service.set_role(g.current_user, user_id, body["role"])
    return {"message": "User role updated successfully", "user": user}


@blp.post("/admin/users/<id:user_id>/tier")
@auth_required(admin=True)
@blp.arguments(TierSchema)
@blp.response(200, UserUpdatedSchema)
def set_tier(body, user_id):
    """Move a user to another subscription tier."""
    user = service.set_tier(g.current_user, user_id, body["subscription_tier"])
    return {"message": "User subscription tier updated successfully", "user": user}


@blp.post("/admin/users/<id:user_id>/active")
@auth_required(admin=True)
@blp.arguments(ActiveSchema)
@blp.response(200, UserUpdatedSchema)
def set_active(body, user_id):
    """Activate or deactivate a user; deactivation stops their tokens and keys at once; 409 ``conflict``
    for the last active admin."""
    user = service.set_active(g.current_user, user_id, body["is_active"])
    return {"message": "User status updated successfully", "user": user}


@blp.get("/admin/audit")
@auth_required(admin=True)
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditPageSchema)
def list_audit(query):
    """The audit trail, newest first: logins, registrations, role/tier/active changes, API keys.
    Filter by ``action``, ``actor_id``, ``since`` (inclusive) and ``until`` (exclusive)."""
    return audit.page(query["limit"], query["offset"], action=query.get("action"), actor_id=query.get("actor_id"),
                      since=query.get("since"), until=query.get("until"))


@blp.get("/admin/status")
@auth_required(admin=True)
@blp.response(200, StatusSchema)
def status():
    """Uptime, memory, CPU, database figures and request counts across all workers."""
    return status_service.server_status()


@blp.get("/status")
@auth_required(admin=True)
@blp.response(200, StatusSchema)
def status_alias():
    """Same as /api/admin/status."""
    return status_service.server_status()
