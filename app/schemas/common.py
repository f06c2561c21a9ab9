"""Shared schema pieces."""
from flask import current_app
from marshmallow import ValidationError, fields


class StrictBoolean(fields.Boolean):
    """Only JSON ``true``/``false``: ``"yes"`` or ``1`` is a mistake worth reporting."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value


def utf8_text(value):
    """Validator: the string can be stored and sent as UTF-8 (no unpaired surrogates, no NUL)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text (unpaired surrogate).") from None
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")


class CleanString(fields.String):
    """A string that is valid Unicode text: no NUL, no unpaired surrogates (JSON allows both)."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in value:
            raise ValidationError("Must not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Must be valid Unicode text (unpaired surrogate).") from None
        return value


class TrimmedString(CleanString):
    """A clean string with surrounding whitespace removed."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


def config_range(low, high_key):
    """A validator for an integer between ``low`` and a bound read from config at request time."""
    def check(value):
        high = current_app.config[high_key]
        if not low <= value <= high:
            raise ValidationError(f"Must be between {low} and {high}.")
    return check
