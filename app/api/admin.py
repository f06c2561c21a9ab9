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
    UserPatchSchema,
    UserSearchQuerySchema,
    UsersPageSchema,
    UserUpdatedSchema,
)
from app.schemas.api_keys import ApiKeyListSchema, ApiKeyUpdatedSchema, MessageSchema
from app.schemas.probes import HistoryFilterQuerySchema, HistorySchema
from app.schemas.users import AdminUserSchema
from app.services import admin_users, audit
from app.services import status as status_service
from app.services import users as service

blp = Blueprint("admin", __name__, url_prefix="/api", description="Administration (admin role)")


@blp.get("/admin/users")
@auth_required(admin=True)
@blp.arguments(UserSearchQuerySchema, location="query")
@blp.response(200, UsersPageSchema)
def list_users(query):
    """Users with key and job counts, oldest first, a page at a time; ``q`` searches username and email
    (any case), ``tier``, ``role`` and ``is_active`` filter; the pagination links keep the filters."""
    return admin_users.search(query.pop("limit"), query.pop("offset"), **query)


@blp.get("/admin/users/<id:user_id>")
@auth_required(admin=True)
@blp.response(200, AdminUserSchema)
def get_user(user_id):
    """One user with key and job counts."""
    return admin_users.detail(user_id)


@blp.patch("/admin/users/<id:user_id>")
@auth_required(admin=True)
@blp.arguments(UserPatchSchema)
@blp.response(200, AdminUserSchema)
def update_user(body, user_id):
    """Change ``role``, ``subscription_tier`` and/or ``is_active`` with the rules (and audit events) of the
    POST role/tier/active endpoints; 409 ``conflict`` for the last active admin."""
    return admin_users.update(g.current_user, user_id, body)


@blp.get("/admin/users/<id:user_id>/jobs")
@auth_required(admin=True)
@blp.arguments(HistoryFilterQuerySchema, location="query")
@blp.response(200, HistorySchema)
def list_user_jobs(query, user_id):
    """The user's jobs, newest first, with the history's filters and pagination."""
    return admin_users.jobs_page(user_id, query.pop("limit"), query.pop("offset"), query)


@blp.get("/admin/users/<id:user_id>/apikeys")
@auth_required(admin=True)
@blp.response(200, ApiKeyListSchema)
def list_user_keys(user_id):
    """The user's API keys, masked."""
    return {"api_keys": admin_users.keys_of(user_id)}


@blp.post("/admin/apikeys/<id:key_id>/revoke")
@auth_required(admin=True)
@blp.response(200, ApiKeyUpdatedSchema)
def revoke_key(key_id):
    """Deactivate any user's key: it stops working at once and stays listed, inactive."""
    return {"message": "API key revoked", "api_key": admin_users.revoke_key(g.current_user, key_id)}


@blp.delete("/admin/apikeys/<id:key_id>")
@auth_required(admin=True)
@blp.response(200, MessageSchema)
def delete_key(key_id):
    """Delete any user's key: it stops working at once."""
    admin_users.delete_key(g.current_user, key_id)
    return {"message": "API key deleted"}


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
