"""/api/measurements and /api/locations: asynchronous probes from one or many locations."""
import json
import time

from flask import Response, current_app, g, jsonify, request, stream_with_context
from flask_smorest import Blueprint

from app.auth.decorators import auth_required
from app.schemas.measurements import (
    LocationsSchema,
    MeasurementCreatedSchema,
    MeasurementCreateSchema,
    MeasurementListSchema,
    MeasurementQuerySchema,
    MeasurementSchema,
)
from app.services import job_store
from app.services import measurements as service
from app.services.dispatch import get_dispatcher
from app.services.stream_slots import StreamSlots
from app.utils.clock import utcnow

blp = Blueprint("measurements", __name__, url_prefix="/api", description="Measurements from one or many locations")

STREAM_POLL_SECONDS = 0.2
STREAM_KEEPALIVE_SECONDS = 15.0
FINISHED_EVENT_ID = "finished"  # the id of the `finished` event (a result's id is its job id)


@blp.post("/measurements")
@auth_required(scope="probes:run")
@blp.arguments(MeasurementCreateSchema)
@blp.alt_response(202, schema=MeasurementCreatedSchema, description="Accepted: the results arrive as each ends")
def create_measurement(body):
    """Start a measurement: one probe type against one target from the chosen locations."""
    measurement, usage = service.create(g.current_user, body)
    g.quota_usage = usage
    url = service.url_of(measurement.id)
    response = jsonify(id=measurement.id, status="in-progress", probes_count=measurement.probes_count, url=url)
    response.status_code = 202
    response.headers["Location"] = url
    return response


@blp.get("/measurements")
@auth_required(scope="history:read")
@blp.arguments(MeasurementQuerySchema, location="query")
@blp.response(200, MeasurementListSchema)
def list_measurements(query):
    """The caller's measurements, newest first, with pagination links."""
    return service.page(g.current_user, query["limit"], query["offset"])


@blp.get("/measurements/<measurement_id>")
@auth_required(scope="history:read")
@blp.alt_response(200, schema=MeasurementSchema, description="The measurement with every result so far")
def get_measurement(measurement_id):
    """One of the caller's measurements; ETag on every answer, If-None-Match gives 304."""
    body = service.document(service.owned(g.current_user, measurement_id))
    tag = service.etag(body)
    if tag in _if_none_match():
        response = Response(status=304)
    else:
        response = jsonify(body)
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "no-cache"
    return response


def _if_none_match():
    header = request.headers.get("If-None-Match", "")
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}


@blp.get("/locations")
@auth_required()
@blp.response(200, LocationsSchema)
def list_locations():
    """The locations online now."""
    return {"locations": get_dispatcher().locations()}


# -- the event stream -------------------------------------------------------------------------------
_slots = StreamSlots()


def _streams_per_worker(config):
    """MEASUREMENT_STREAMS_PER_WORKER, but at most half the worker's request threads (SERVER_THREADS,
    set by the Gunicorn hook): each open stream holds a thread, and the other half stays free for
    every other request (a few users' streams must never leave a worker unable to answer)."""
    threads = config.get("SERVER_THREADS")
    cap = config["MEASUREMENT_STREAMS_PER_WORKER"]
    return min(cap, max(1, threads // 2)) if threads else cap


def _event(name, data, event_id=None):
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


@blp.get("/measurements/<measurement_id>/stream")
@auth_required(scope="history:read")
@blp.alt_response(200, description="text/event-stream: a `result` event per result as it ends, then `finished`")
@blp.alt_response(204, description="`Last-Event-ID: finished`: the stream has ended; an SSE client stops "
                                   "reconnecting")
def stream_measurement(measurement_id):
    """Server-sent events: each result as it ends, then `finished`; it closes by itself."""
    user = g.current_user
    measurement = service.owned(user, measurement_id)
    if request.headers.get("Last-Event-ID") == FINISHED_EVENT_ID:
        # An SSE client reconnects to a stream the server closed, sending the last id it saw. After
        # `finished` there is nothing more: 204 is how SSE tells a client to stop reconnecting.
        return Response(status=204)
    config = current_app.config
    give_back = _slots.take(user.id, config["MEASUREMENT_STREAMS_PER_USER"], _streams_per_worker(config),
                            config["MEASUREMENT_STREAM_MAX_SECONDS"])
    locations = {loc.get("name"): loc for loc in measurement.locations or ()}
    until = time.monotonic() + config["MEASUREMENT_STREAM_MAX_SECONDS"]

    def events():
        sent = set()
        last_write = time.monotonic()
        yield ": stream of measurement results\n\n"
        while True:
            results, status = service.ended_results(measurement_id, locations, sent)
            for result in results:
                sent.add(result["job_id"])
                last_write = time.monotonic()
                yield _event("result", result, result["job_id"])
            if status != "in-progress":
                fresh = service.owned_by_id(measurement_id)
                yield _event("finished", service.document(fresh), FINISHED_EVENT_ID)
                return
            if time.monotonic() >= until:
                yield _event("timeout", {"id": measurement_id, "message": "The stream reached its time bound; "
                                                                           "GET the measurement for what follows"})
                return
            _end_overdue(measurement_id)
            if time.monotonic() - last_write >= STREAM_KEEPALIVE_SECONDS:
                last_write = time.monotonic()
                yield ": keep-alive\n\n"
            time.sleep(STREAM_POLL_SECONDS)

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response.call_on_close(give_back)
    return response


def _end_overdue(measurement_id):
    """Past the latest deadline, end what is still in flight as timeout (idempotent, like the sweep)."""
    deadline = service.deadline_of(measurement_id)
    if deadline is not None and utcnow() > deadline:
        job_store.end_overdue_jobs(utcnow())
