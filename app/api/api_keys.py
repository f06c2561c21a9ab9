"""/api/apikeys: the caller's own API keys (JWT only: a key cannot manage keys)."""
from flask import g
from flask_smorest import Blueprint

from app.auth.decorators import auth_required
from app.schemas.api_keys import (
    SHOWN_ONCE,
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeyListSchema,
    ApiKeySchema,
    ApiKeyUpdatedSchema,
    ApiKeyUpdateSchema,
    MessageSchema,
)
from app.services import api_keys as service

blp = Blueprint("apikeys", __name__, url_prefix="/api/apikeys", description="API keys")


@blp.get("")
@auth_required(jwt_only=True)
@blp.response(200, ApiKeyListSchema)
def list_keys():
    """The caller's keys, masked."""
    return {"api_keys": service.list_keys(g.current_user)}


@blp.post("")
@auth_required(jwt_only=True)
@blp.arguments(ApiKeyCreateSchema)
@blp.response(201, ApiKeyCreatedSchema)
def create(body):
    """Create a key; the whole key is in this answer and never again."""
    key = service.create_key(g.current_user, body["description"], name=body["name"], expires_at=body["expires_at"],
                             scopes=body["scopes"])
    return {"message": "API key created successfully", "warning": SHOWN_ONCE, "api_key": key}


@blp.post("/<id:key_id>/rotate")
@auth_required(jwt_only=True)
@blp.response(201, ApiKeyCreatedSchema)
def rotate(key_id):
    """A new secret for the key, shown this once; the old one keeps working for the grace period
    (API_KEY_ROTATION_GRACE_SECONDS, 24 h by default) only."""
    key = service.rotate_key(g.current_user, key_id)
    return {"message": "API key rotated", "warning": SHOWN_ONCE, "api_key": key}


@blp.get("/<id:key_id>")
@auth_required(jwt_only=True)
@blp.response(200, ApiKeySchema)
def get(key_id):
    """One of the caller's keys, masked."""
    return service.get_key(g.current_user, key_id)


@blp.put("/<id:key_id>")
@auth_required(jwt_only=True)
@blp.arguments(ApiKeyUpdateSchema)
@blp.response(200, ApiKeyUpdatedSchema)
def update(body, key_id):
    """Change a key's description or switch it on or off."""
    key = service.update_key(g.current_user, key_id, body)
    return {"message": "API key updated successfully", "api_key": key}


@blp.delete("/<id:key_id>")
@auth_required(jwt_only=True)
@blp.response(200, MessageSchema)
def delete(key_id):
    """Delete a key; it stops working at once."""
    service.delete_key(g.current_user, key_id)
    return {"message": "API key deleted successfully"}
