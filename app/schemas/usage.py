"""Schema of GET /api/users/me/usage."""
from marshmallow import Schema, fields


def _count(description):
    return fields.Integer(allow_none=True, metadata={"description": description})


class QuotaPeriodSchema(Schema):
    limit = _count("Probes allowed in the period; null = unlimited")
    used = fields.Integer(metadata={"description": "Probes counted in the period (refused targets are not)"})
    remaining = _count("Probes left; null = unlimited")
    reset = fields.Integer(metadata={"description": "When the period ends (epoch seconds)"})


class QuotaSchema(Schema):
    day = fields.Nested(QuotaPeriodSchema)
    month = fields.Nested(QuotaPeriodSchema)


class RateLimitSchema(Schema):
    limit = _count("Requests allowed in the window (RATELIMIT_DEFAULT); null when rate limiting is off")
    remaining = _count("Requests left in the window, this one counted; null when rate limiting is off")
    reset = _count("When the window ends (epoch seconds); null when rate limiting is off")


class RunningProbesSchema(Schema):
    running = fields.Integer(metadata={"description": "Synchronous probes in flight now"})
    limit = _count("The tier's cap on probes in flight; null = unlimited")


class UsageSchema(Schema):
    quota = fields.Nested(QuotaSchema)
    rate_limit = fields.Nested(RateLimitSchema)
    running_probes = fields.Nested(RunningProbesSchema)
