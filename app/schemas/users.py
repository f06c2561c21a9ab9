"""Schemas for users: registration, login and the public USER shape."""
import re

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from app.auth.passwords import password_problem
from app.schemas.common import CleanString, TrimmedString, utf8_text

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")


class UserSchema(Schema):
    """USER as the contract shows it: never a password hash."""

    id = fields.Integer()
    username = fields.String()
    email = fields.String()
    is_active = fields.Boolean()
    role = fields.String()
    subscription_tier = fields.String()
    created_at = fields.DateTime()


class AdminUserSchema(UserSchema):
    """USER with the counts the admin list adds."""

    api_key_count = fields.Integer()
    probe_job_count = fields.Integer()


class UsersListSchema(Schema):
    users = fields.List(fields.Nested(AdminUserSchema))


class PasswordField(CleanString):
    """A new password: PASSWORD_MIN_LENGTH..128 characters once NFKC-normalised, not only whitespace."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        problem = password_problem(value, current_app.config["PASSWORD_MIN_LENGTH"],
                                   current_app.config["PASSWORD_MAX_LENGTH"])
        if problem:
            raise ValidationError(problem)
        return value


class RegisterSchema(Schema):
    username = TrimmedString(required=True, metadata={"example": "alice"})
    email = fields.Email(required=True, validate=[validate.Length(max=254), utf8_text])
    password = PasswordField(required=True, load_only=True)

    @validates("username")
    def check_username(self, value, **kwargs):
        if not USERNAME_RE.match(value):
            raise ValidationError("Must be 3-64 characters: letters, digits, '.', '_' or '-'.")


class LoginSchema(Schema):
    email = CleanString(validate=validate.Length(max=254))
    username = CleanString(validate=validate.Length(max=64))
    password = CleanString(required=True, load_only=True, validate=validate.Length(max=1024))

    @validates_schema
    def need_identity(self, data, **kwargs):
        if not data.get("email") and not data.get("username"):
            raise ValidationError("Give either email or username.", "email")


class RegisterResponseSchema(Schema):
    message = fields.String()
    user = fields.Nested(UserSchema)


class LoginResponseSchema(RegisterResponseSchema):
    token = fields.String()


class SessionFieldsMixin(Schema):
    """An access token's lifetime and the refresh token that renews it."""

    expires_in = fields.Integer(metadata={"description": "Seconds until the access token expires"})
    refresh_token = fields.String(metadata={"description": "Opaque; rotated on every use, shown once"})


class LoginSessionResponseSchema(LoginResponseSchema, SessionFieldsMixin):
    """Login: the token, its lifetime and a refresh token."""


class RefreshSchema(Schema):
    refresh_token = CleanString(required=True, load_only=True, validate=validate.Length(min=1, max=200))


class SessionSchema(SessionFieldsMixin):
    token = fields.String()


class LogoutSchema(Schema):
    refresh_token = CleanString(load_only=True, validate=validate.Length(max=200))


class PasswordChangeSchema(Schema):
    current_password = CleanString(required=True, load_only=True, validate=validate.Length(max=1024))
    new_password = PasswordField(required=True, load_only=True)


class PasswordChangedSchema(SessionSchema):
    """The new access token for this session (and a refresh token when the call had no session)."""

    message = fields.String()


class ProfileUpdateSchema(Schema):
    username = TrimmedString(metadata={"example": "alice"})
    email = fields.Email(validate=[validate.Length(max=254), utf8_text])
    current_password = CleanString(required=True, load_only=True, validate=validate.Length(max=1024))

    @validates("username")
    def check_username(self, value, **kwargs):
        if not USERNAME_RE.match(value):
            raise ValidationError("Must be 3-64 characters: letters, digits, '.', '_' or '-'.")

    @validates_schema
    def need_change(self, data, **kwargs):
        if "username" not in data and "email" not in data:
            raise ValidationError("Give username and/or email.", "username")


class MessageResponseSchema(Schema):
    message = fields.String()
