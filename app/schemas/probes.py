"""Schemas for the probe endpoints and history."""
import json
from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.probes.registry import PROBE_TYPES
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


class QueryBoolean(fields.Boolean):
    """``true`` or ``false`` in a query string (any case); ``1``, ``yes`` or ``""`` are mistakes worth reporting."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = value.strip().lower() if isinstance(value, str) else None
        if text not in ("true", "false"):
            raise ValidationError("Must be true or false.")
        return text == "true"


class HistoryQuerySchema(Schema):
    """A page: ``limit`` and ``offset``."""

    limit = fields.Integer(load_default=10, validate=validate.Range(1, 100))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**62))


class HistoryFilterQuerySchema(HistoryQuerySchema):
    """A page of the history and its filters; ``since`` inclusive, ``until`` exclusive (ISO 8601, UTC when no
    offset)."""

    type = fields.String(validate=validate.OneOf(tuple(PROBE_TYPES)), metadata={"description": "The probe type"})
    target = TrimmedString(validate=validate.Length(min=1, max=255),
                           metadata={"description": "The target exactly as it was asked for"})
    success = QueryBoolean(metadata={"description": "true: the probe succeeded; false: it ran and failed "
                                                    "(jobs still running or timed out match neither)"})
    since = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "Created at or after (ISO 8601)"})
    until = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "Created before (ISO 8601)"})
    measurement_id = TrimmedString(validate=validate.Length(min=1, max=32),
                                   metadata={"description": "Only the results of this measurement"})

    @validates_schema
    def since_before_until(self, data, **_kwargs):
        if "since" in data and "until" in data and data["since"] >= data["until"]:
            raise ValidationError("Must be later than since.", "until")


def _parameters_object(job):
    """The job's parameters JSON text as an object ({} when it is not an object)."""
    try:
        value = json.loads(job.parameters or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class JobSummarySchema(Schema):
    id = fields.Integer()
    probe_type = fields.String()
    target = fields.String()
    parameters = fields.String(metadata={"description": "The probe's options as JSON text (the contract's string)"})
    parameters_object = fields.Function(_parameters_object, metadata={
        "type": "object", "description": "The same options as an object"})
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
