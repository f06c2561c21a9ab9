"""Measurements: one probe type against one target, from one or more locations, results as they end.

``create`` validates like the synchronous probes, picks the locations, reserves every result's
quota and the rows in one transaction, then submits each job to the dispatcher. Reading is
``get`` / ``page``; ``changes`` feeds the event stream.
"""
import json
import random
import secrets

import sqlalchemy as sa
from flask import current_app, url_for

from app.db.models import JOB_ACTIVE, Measurement, ProbeJob
from app.domain_errors import NoMatchingLocation, NotFound, ServiceUnavailable
from app.errors import ApiError
from app.extensions import db
from app.probes.registry import PROBE_TYPES, OptionError
from app.services import job_store, job_sweeper
from app.services.dispatch import get_dispatcher
from app.services.probe_jobs import reserve_jobs, spec_for
from app.services.probes import check_request
from app.utils.clock import utcnow

FILTER_KEYS = ("name", "country", "city", "asn", "tag")
ID_BYTES = 12  # 16 URL-safe characters, 96 random bits


def _invalid(field, message):
    return ApiError(400, f"{field}: {message}", fields={field: [message]})


# -- validation ---------------------------------------------------------------------------------
def validate(body):
    """``(probe, target, options, filters, limit)`` from a POST body; 400 naming the field."""
    config = current_app.config
    probe = PROBE_TYPES.get(body.get("type"))
    if probe is None:
        raise _invalid("type", f"Must be one of: {', '.join(PROBE_TYPES)}.")
    target = body.get("target")
    if not isinstance(target, str) or not target.strip() or len(target.strip()) > 255:
        raise _invalid("target", "A non-empty string of at most 255 characters is required.")
    target = target.strip()
    try:
        options = probe.validate_options(body.get("options"), config)
    except OptionError as exc:
        field = "options" if exc.field == "options" else f"options.{exc.field}"
        raise _invalid(field, exc.message) from None
    options = check_request(probe.name, target, options, field="target")
    limit = body.get("limit", 1)
    maximum = config["MEASUREMENT_MAX_PROBES"]
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise _invalid("limit", f"Must be an integer from 1 to {maximum}.")
    return probe, target, options, _filters(body.get("locations")), limit


def _filters(value):
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 64:
        raise _invalid("locations", "Must be a list of at most 64 filters.")
    filters = []
    for index, item in enumerate(value):
        field = f"locations.{index}"
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in FILTER_KEYS:
            raise _invalid(field, f"Each filter is one of {', '.join(f'{{{k}}}' for k in FILTER_KEYS)}.")
        key, wanted = next(iter(item.items()))
        if key == "asn":
            if isinstance(wanted, bool) or not isinstance(wanted, int) or not 0 <= wanted <= 4294967295:
                raise _invalid(field, "asn must be an integer.")
        elif not isinstance(wanted, str) or not wanted.strip() or len(wanted) > 128:
            raise _invalid(field, f"{key} must be a non-empty string.")
        elif key == "country" and (len(wanted.strip()) != 2 or not wanted.strip().isalpha()):
            raise _invalid(field, "country must be an ISO 3166-1 alpha-2 code.")
        filters.append((key, wanted.strip() if isinstance(wanted, str) else wanted))
    return filters


# -- choosing locations ---------------------------------------------------------------------------
def matches(location, key, wanted):
    """True when the LOCATION satisfies the filter ``{key: wanted}``."""
    if key == "asn":
        return location.get("asn") == wanted
    if key == "tag":
        return wanted.lower() in {str(t).lower() for t in location.get("tags") or ()}
    return str(location.get(key) or "").lower() == wanted.lower()


def choose(online, filters, limit, default=None):
    """The LOCATIONs to run at: ``limit`` spread over the filters, distinct within each filter.

    No filters: the default location (then other online ones up to ``limit``; none online:
    ServiceUnavailable). A filter no online location matches raises NoMatchingLocation.
    """
    if not filters:
        if default is None:
            raise ServiceUnavailable("No probe location is online; try again shortly")
        others = [loc for loc in online if loc["name"] != default["name"]]
        return ([default] + random.sample(others, k=len(others)))[:limit]
    candidates = []
    for key, wanted in filters:
        found = [loc for loc in online if matches(loc, key, wanted)]
        if not found:
            raise NoMatchingLocation(f"No online location matches {{{key!r}: {wanted!r}}}")
        random.shuffle(found)
        candidates.append(found)
    chosen = [[] for _ in filters]
    left = limit
    while left > 0:  # round-robin over the filters, each taking its next unused match
        progressed = False
        for index, found in enumerate(candidates):
            if left and len(chosen[index]) < len(found):
                chosen[index].append(found[len(chosen[index])])
                left -= 1
                progressed = True
        if not progressed:
            break
    return [loc for picks in chosen for loc in picks]


# -- create ----------------------------------------------------------------------------------------
def create(user, body):
    """Validate, choose, reserve all results at once, submit; ``(measurement, usage)``."""
    probe, target, options, filters, limit = validate(body)
    job_sweeper.ensure_started(current_app._get_current_object())
    dispatcher = get_dispatcher()
    online = dispatcher.locations()
    default = dispatcher.default_location() if not filters else None
    chosen = choose(online, filters, limit, default)
    capacity = getattr(dispatcher, "capacity", None)
    if capacity is not None and capacity() < len(chosen):
        raise ApiError(503, "The server is running as many probes as it can; retry shortly",
                       {"Retry-After": "5"}, code="server_busy")
    now = utcnow()
    measurement = Measurement(id=secrets.token_urlsafe(ID_BYTES), user_id=user.id, type=probe.name, target=target,
                              options=options, locations=chosen, limit=limit, probes_count=len(chosen),
                              status="in-progress", created_at=now, updated_at=now)
    jobs, usage = reserve_jobs(user, probe.name, target, options, [loc["name"] for loc in chosen],
                               measurement=measurement, check_concurrency=False)
    _submit_all(dispatcher, jobs, options)
    return measurement, usage


def _submit_all(dispatcher, jobs, options):
    """Submit every job at once; if they cannot be, nothing started: the rows go and the error is raised."""
    try:
        dispatcher.submit_all([(job.id, spec_for(job, options), job.location) for job in jobs])
    except ApiError:
        _discard(jobs)
        raise


def _discard(jobs):
    measurement_id = jobs[0].measurement_id
    for job in jobs:
        job_store.delete_job(job.id)
    with db.engine.begin() as conn:
        conn.execute(sa.delete(Measurement.__table__).where(Measurement.__table__.c.id == measurement_id))


# -- read ------------------------------------------------------------------------------------------
def owned(user, measurement_id):
    """The caller's measurement, fresh from the database, or NotFound (another user's too)."""
    db.session.expire_all()
    found = db.session.scalars(sa.select(Measurement).where(Measurement.id == measurement_id,
                                                            Measurement.user_id == user.id)).first()
    if found is None:
        raise NotFound(f"Measurement {measurement_id} not found")
    return found


def url_of(measurement_id):
    """PUBLIC_BASE_URL + path: never the client's Host."""
    return current_app.config["PUBLIC_BASE_URL"] + url_for("measurements.get_measurement",
                                                           measurement_id=measurement_id)


def result_status(job):
    """in-progress | finished | failed | timeout, from the job row."""
    if job.status in JOB_ACTIVE:
        return "in-progress"
    if job.status == "timeout":
        return "timeout"
    return "failed" if job.error_code else "finished"


def _iso(moment):
    return moment.isoformat() if moment is not None else None


def result_of(job, locations):
    """One RESULT of the contract (plus ``code``, why it could not run)."""
    location = locations.get(job.location) or {"name": job.location}
    return {"location": location, "status": result_status(job), "success": job.success,
            "result": job.result, "data": job.data, "code": job.error_code, "job_id": job.id,
            "started_at": _iso(job.started_at), "completed_at": _iso(job.completed_at)}


def jobs_of(measurement_id):
    return db.session.scalars(sa.select(ProbeJob).where(ProbeJob.measurement_id == measurement_id)
                              .order_by(ProbeJob.id)).all()


def summary(measurement):
    """MEASUREMENT without its results."""
    return {"id": measurement.id, "type": measurement.type, "target": measurement.target,
            "status": measurement.status, "created_at": _iso(measurement.created_at),
            "updated_at": _iso(measurement.updated_at), "options": measurement.options,
            "probes_count": measurement.probes_count, "url": url_of(measurement.id)}


def document(measurement):
    """The MEASUREMENT of the contract."""
    locations = {loc.get("name"): loc for loc in measurement.locations or ()}
    return {**summary(measurement), "results": [result_of(job, locations) for job in jobs_of(measurement.id)]}


def etag(body):
    """A strong ETag of the answer's content."""
    import hashlib

    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f'"{digest[:32]}"'


def page(user, limit, offset):
    """One page of the caller's measurements, newest first, with the history's pagination block."""
    rows = db.session.scalars(sa.select(Measurement).where(Measurement.user_id == user.id)
                              .order_by(Measurement.created_at.desc(), Measurement.id.desc())
                              .limit(limit).offset(offset)).all()
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Measurement)
                              .where(Measurement.user_id == user.id)) or 0
    nxt = offset + limit if offset + limit < total else None
    prev = max(0, offset - limit) if offset > 0 else None
    return {"measurements": [summary(m) for m in rows], "pagination": {
        "total": total, "limit": limit, "offset": offset,
        "next": _link(limit, nxt) if nxt is not None else None,
        "previous": _link(limit, prev) if prev is not None else None}}


def _link(limit, offset):
    return current_app.config["PUBLIC_BASE_URL"] + url_for("measurements.list_measurements", limit=limit,
                                                           offset=offset)


def ended_results(measurement_id, locations, already):
    """The results that have ended and are not in ``already`` (job ids), oldest first, plus the status.

    The status is read first: on PostgreSQL (READ COMMITTED) each statement sees what was committed
    before it, and the last result commits together with ``finished``. Read the other way round, a
    result committed between the two reads was missing from a stream that then said ``finished``.
    """
    db.session.expire_all()
    status = db.session.scalar(sa.select(Measurement.status).where(Measurement.id == measurement_id))
    jobs = db.session.scalars(sa.select(ProbeJob).where(ProbeJob.measurement_id == measurement_id,
                                                        ProbeJob.status.not_in(JOB_ACTIVE))
                              .order_by(ProbeJob.completed_at, ProbeJob.id)).all()
    return [result_of(job, locations) for job in jobs if job.id not in already], status


def deadline_of(measurement_id):
    """The latest deadline of the measurement's jobs (aware datetime) or None."""
    deadlines = db.session.scalars(sa.select(ProbeJob.deadline_at).where(ProbeJob.measurement_id == measurement_id,
                                                                         ProbeJob.deadline_at.is_not(None))).all()
    return max(deadlines) if deadlines else None


def owned_by_id(measurement_id):
    """The measurement, fresh (the caller's ownership was checked when the stream opened)."""
    db.session.expire_all()
    return db.session.get(Measurement, measurement_id)
