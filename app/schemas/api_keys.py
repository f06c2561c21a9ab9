"""Schemas for API keys."""
from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.auth.api_keys import SCOPES, mask, scopes_list
from app.schemas.common import StrictBoolean, TrimmedString

SHOWN_ONCE = "Store this key now: it is shown only once and cannot be retrieved again."


class ApiKeySchema(Schema):
    """APIKEY with the key masked (prefix + '...')."""

    id = fields.Integer()
    key = fields.Function(lambda row: mask(row.prefix))
    name = fields.String()
    description = fields.String()
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    scopes = fields.Function(lambda row: scopes_list(row.scopes),
                             metadata={"type": "array", "items": {"type": "string", "enum": list(SCOPES)}})


class NewApiKeySchema(ApiKeySchema):
    """APIKEY right after creation or rotation: the only time the whole key is shown."""

    key = fields.String(attribute="full_key")


class ApiKeyListSchema(Schema):
    api_keys = fields.List(fields.Nested(ApiKeySchema))


class AwareDateTime(fields.AwareDateTime):
    """An ISO 8601 time with a zone (UTC assumed when none is given)."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=UTC, **kwargs)


class ApiKeyCreateSchema(Schema):
    description = TrimmedString(load_default="", validate=validate.Length(max=255))
    name = TrimmedString(load_default="", validate=validate.Length(max=100))
    expires_at = AwareDateTime(load_default=None, allow_none=True)
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), load_default=None, allow_none=True,
                         validate=validate.Length(min=1),
                         metadata={"description": "Any of " + ", ".join(SCOPES) + "; none given = all"})


class ApiKeyUpdateSchema(Schema):
    description = TrimmedString(validate=validate.Length(max=255))
    is_active = StrictBoolean()

    @validates_schema
    def need_something(self, data, **kwargs):
        if not data:
            raise ValidationError("Give description and/or is_active.")


class ApiKeyCreatedSchema(Schema):
    message = fields.String()
    warning = fields.String(dump_default=SHOWN_ONCE)
    api_key = fields.Nested(NewApiKeySchema)


class ApiKeyUpdatedSchema(Schema):
    message = fields.String()
    api_key = fields.Nested(ApiKeySchema)


class MessageSchema(Schema):
    message = fields.String()
