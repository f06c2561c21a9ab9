"""Schemas for the probe endpoints and history."""
from marshmallow import Schema, ValidationError, fields, validate

from app.schemas.common import TrimmedString, config_range

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR", "SRV", "CAA")

HostField = lambda: TrimmedString(required=True, validate=validate.Length(min=1, max=255))  # noqa: E731


class RecordType(fields.String):
    """A DNS record type, case-insensitive."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs).strip().upper()
        if value not in RECORD_TYPES:
            raise ValidationError(f"Must be one of: {', '.join(RECORD_TYPES)}.")
        return value


class PingSchema(Schema):
    host = HostField()
    count = fields.Integer(strict=True, load_default=4, validate=config_range(1, "PING_MAX_COUNT"))


class TracerouteSchema(Schema):
    host = HostField()
    max_hops = fields.Integer(strict=True, load_default=30,
                              validate=config_range(1, "TRACEROUTE_MAX_HOPS"))


class DnsSchema(Schema):
    domain = HostField()
    record_type = RecordType(load_default="A")
    nameserver = TrimmedString(load_default=None, validate=validate.Length(max=64))


class WhoisSchema(Schema):
    domain = HostField()


class ProbeResponseSchema(Schema):
    success = fields.Boolean()
    probe_type = fields.String()
    target = fields.String()
    result = fields.String()
    data = fields.Dict()
    timestamp = fields.DateTime()
    job_id = fields.Integer()


class HistoryQuerySchema(Schema):
    limit = fields.Integer(load_default=10, validate=validate.Range(1, 100))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**62))


class JobSummarySchema(Schema):
    id = fields.Integer()
    probe_type = fields.String()
    target = fields.String()
    parameters = fields.String()
    success = fields.Boolean(allow_none=True)
    status = fields.String(metadata={"description": "queued | running | completed | failed | timeout"})
    location = fields.String(allow_none=True)
    measurement_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)


class JobDetailSchema(JobSummarySchema):
    result = fields.String(allow_none=True)
    data = fields.Dict(allow_none=True)
    error_code = fields.String(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)


class PaginationSchema(Schema):
    total = fields.Integer()
    limit = fields.Integer()
    offset = fields.Integer()
    next = fields.String(allow_none=True)
    previous = fields.String(allow_none=True)


class HistorySchema(Schema):
    jobs = fields.List(fields.Nested(JobSummarySchema))
    pagination = fields.Nested(PaginationSchema)
