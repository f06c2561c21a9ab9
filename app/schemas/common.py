"""Shared schema pieces."""
from flask import current_app
from marshmallow import Schema, ValidationError, fields


class StrictBoolean(fields.Boolean):
    """Only JSON ``true``/``false``: ``"yes"`` or ``1`` is a mistake worth reporting."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value


class TrimmedString(fields.String):
    """A string with surrounding whitespace removed; NUL characters refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs).strip()
        if "\x00" in value:
            raise ValidationError("Must not contain NUL characters.")
        return value


def config_range(name, low_key_or_value, high_key):
    """A validator for an integer between a bound and a bound read from config at request time."""
    def check(value):
        low = low_key_or_value if isinstance(low_key_or_value, int) else current_app.config[low_key_or_value]
        high = current_app.config[high_key]
        if not low <= value <= high:
            raise ValidationError(f"Must be between {low} and {high}.")
    return check


class TimestampsMixin(Schema):
    """ISO 8601 UTC timestamps."""

    created_at = fields.DateTime(dump_only=True)
