"""Schemas for the admin endpoints."""
from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.db.models import AUDIT_ACTIONS, ROLES, TIERS
from app.schemas.common import StrictBoolean, TrimmedString
from app.schemas.probes import PaginationSchema, QueryBoolean
from app.schemas.users import UserSchema, UsersListSchema


class RoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class TierSchema(Schema):
    subscription_tier = fields.String(required=True, validate=validate.OneOf(TIERS))


class ActiveSchema(Schema):
    is_active = StrictBoolean(required=True)


class UserUpdatedSchema(Schema):
    message = fields.String()
    user = fields.Nested(UserSchema)


class StatusSchema(Schema):
    system = fields.Dict()
    database = fields.Dict()
    requests = fields.Dict()


class AuditQuerySchema(Schema):
    """Filters and page of GET /api/admin/audit; ``since`` inclusive, ``until`` exclusive (ISO 8601)."""

    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**62))
    action = fields.String(validate=validate.OneOf(AUDIT_ACTIONS))
    actor_id = fields.Integer(validate=validate.Range(1, 2**31 - 1))
    since = fields.AwareDateTime(default_timezone=UTC)
    until = fields.AwareDateTime(default_timezone=UTC)

    @validates_schema
    def since_before_until(self, data, **_kwargs):
        if "since" in data and "until" in data and data["since"] >= data["until"]:
            raise ValidationError("Must be later than since.", "until")


class AuditEventSchema(Schema):
    id = fields.Integer()
    time = fields.DateTime()
    action = fields.String()
    actor_id = fields.Integer(allow_none=True)
    target_type = fields.String(allow_none=True)
    target_id = fields.Integer(allow_none=True)
    ip = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    details = fields.Dict(allow_none=True)


class AuditPageSchema(Schema):
    events = fields.List(fields.Nested(AuditEventSchema))
    pagination = fields.Nested(PaginationSchema)


class UserSearchQuerySchema(Schema):
    """A page of users and its filters."""

    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**62))
    q = TrimmedString(validate=validate.Length(min=1, max=254),
                      metadata={"description": "Part of the username or email, any case"})
    tier = fields.String(validate=validate.OneOf(TIERS))
    role = fields.String(validate=validate.OneOf(ROLES))
    is_active = QueryBoolean()


class UsersPageSchema(UsersListSchema):
    pagination = fields.Nested(PaginationSchema)


class UserPatchSchema(Schema):
    """Any of role, subscription_tier and is_active (at least one)."""

    role = fields.String(validate=validate.OneOf(ROLES))
    subscription_tier = fields.String(validate=validate.OneOf(TIERS))
    is_active = StrictBoolean()

    @validates_schema
    def not_empty(self, data, **_kwargs):
        if not data:
            raise ValidationError("Give at least one of role, subscription_tier, is_active.", "_schema")
