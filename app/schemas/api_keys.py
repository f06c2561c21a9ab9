"""Schemas for API keys."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.auth.api_keys import mask
from app.schemas.common import StrictBoolean, TrimmedString


class ApiKeySchema(Schema):
    """APIKEY with the key masked (prefix + '...')."""

    id = fields.Integer()
    key = fields.Function(lambda row: mask(row.prefix))
    description = fields.String()
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)


class NewApiKeySchema(ApiKeySchema):
    """APIKEY right after creation: the only time the whole key is shown."""

    key = fields.String(attribute="full_key")


class ApiKeyListSchema(Schema):
    api_keys = fields.List(fields.Nested(ApiKeySchema))


class ApiKeyCreateSchema(Schema):
    description = TrimmedString(load_default="", validate=validate.Length(max=255))


class ApiKeyUpdateSchema(Schema):
    description = TrimmedString(validate=validate.Length(max=255))
    is_active = StrictBoolean()

    @validates_schema
    def need_something(self, data, **kwargs):
        if not data:
            raise ValidationError("Give description and/or is_active.")


class ApiKeyCreatedSchema(Schema):
    message = fields.String()
    api_key = fields.Nested(NewApiKeySchema)


class ApiKeyUpdatedSchema(Schema):
    message = fields.String()
    api_key = fields.Nested(ApiKeySchema)


class MessageSchema(Schema):
    message = fields.String()
