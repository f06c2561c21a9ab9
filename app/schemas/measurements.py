"""Schemas for the measurements and locations endpoints (the shape; app.services.measurements checks the rest)."""
from marshmallow import Schema, fields, validate

from app.schemas.common import CleanString, TrimmedString
from app.schemas.probes import HistoryQuerySchema, PaginationSchema


class MeasurementCreateSchema(Schema):
    type = CleanString(required=True, validate=validate.Length(min=1, max=32))
    target = TrimmedString(required=True, validate=validate.Length(min=1, max=255))
    options = fields.Dict(keys=fields.String(), load_default=dict)
    locations = fields.List(fields.Dict(keys=fields.String()), load_default=None, allow_none=True,
                            validate=validate.Length(max=64))
    limit = fields.Integer(strict=True, load_default=1)


class MeasurementCreatedSchema(Schema):
    id = fields.String()
    status = fields.String()
    probes_count = fields.Integer()
    url = fields.String()


class LocationSchema(Schema):
    name = fields.String()
    country = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    asn = fields.Integer(allow_none=True)
    network = fields.String(allow_none=True)
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    tags = fields.List(fields.String())
    version = fields.String(allow_none=True)
    last_seen = fields.String(allow_none=True)


class LocationsSchema(Schema):
    locations = fields.List(fields.Nested(LocationSchema))


class ResultSchema(Schema):
    location = fields.Nested(LocationSchema)
    status = fields.String(metadata={"description": "in-progress | finished | failed | timeout"})
    success = fields.Boolean(allow_none=True)
    result = fields.String(allow_none=True)
    data = fields.Dict(allow_none=True)
    code = fields.String(allow_none=True, metadata={"description": "why it could not run, e.g. target_refused"})
    job_id = fields.Integer()
    started_at = fields.String(allow_none=True)
    completed_at = fields.String(allow_none=True)


class MeasurementSummarySchema(Schema):
    id = fields.String()
    type = fields.String()
    target = fields.String()
    status = fields.String(metadata={"description": "in-progress | finished"})
    created_at = fields.String()
    updated_at = fields.String()
    options = fields.Dict()
    probes_count = fields.Integer()
    url = fields.String()


class MeasurementSchema(MeasurementSummarySchema):
    results = fields.List(fields.Nested(ResultSchema))


class MeasurementListSchema(Schema):
    measurements = fields.List(fields.Nested(MeasurementSummarySchema))
    pagination = fields.Nested(PaginationSchema)


MeasurementQuerySchema = HistoryQuerySchema
