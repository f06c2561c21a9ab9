"""Schemas for the admin endpoints."""
from marshmallow import Schema, fields, validate

from app.db.models import ROLES, TIERS
from app.schemas.common import StrictBoolean
from app.schemas.users import UserSchema


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
