"""/api/probes: run ping, traceroute, DNS and WHOIS probes; read the caller's history."""
from flask import g, jsonify
from flask_smorest import Blueprint

from app.auth.decorators import auth_required
from app.schemas.probes import (
    DnsSchema,
    HistoryFilterQuerySchema,
    HistorySchema,
    JobDetailSchema,
    PingSchema,
    ProbeResponseSchema,
    TracerouteSchema,
    WhoisSchema,
)
from app.services import history
from app.services import probes as service

blp = Blueprint("probes", __name__, url_prefix="/api/probes", description="Network probes and history")


def _answer(probe_type, target, outcome):
    job, result, usage = outcome
    g.quota_usage = usage
    return jsonify(success=result.success, probe_type=probe_type, target=target, result=result.text,
                   data=result.data, timestamp=job.completed_at.isoformat(), job_id=job.id)


@blp.post("/ping")
@auth_required(scope="probes:run")
@blp.arguments(PingSchema)
@blp.alt_response(200, schema=ProbeResponseSchema, description="The probe ran (success false when it failed)")
def ping(body):
    """ICMP echo: per-packet RTT and TTL, loss and min/avg/max/mdev."""
    return _answer("ping", body["host"], service.ping(g.current_user, body["host"], body["count"]))


@blp.post("/traceroute")
@auth_required(scope="probes:run")
@blp.arguments(TracerouteSchema)
@blp.alt_response(200, schema=ProbeResponseSchema, description="The probe ran (success false when it failed)")
def traceroute(body):
    """The routers on the path, hop by hop."""
    return _answer("traceroute", body["host"],
                   service.traceroute(g.current_user, body["host"], body["max_hops"]))


@blp.post("/dns")
@auth_required(scope="probes:run")
@blp.arguments(DnsSchema)
@blp.alt_response(200, schema=ProbeResponseSchema, description="The probe ran (success false when it failed)")
def dns(body):
    """A DNS query, dig-style: answer, authority and additional sections."""
    nameserver = str(body["nameserver"]) if body["nameserver"] is not None else None
    return _answer("dns", body["domain"],
                   service.dns(g.current_user, body["domain"], body["record_type"], nameserver))


@blp.post("/whois")
@auth_required(scope="probes:run")
@blp.arguments(WhoisSchema)
@blp.alt_response(200, schema=ProbeResponseSchema, description="The probe ran (success false when it failed)")
def whois(body):
    """WHOIS (or RDAP) from the authoritative registry or registrar."""
    return _answer("whois", body["domain"], service.whois(g.current_user, body["domain"]))


@blp.get("/history")
@auth_required(scope="history:read")
@blp.arguments(HistoryFilterQuerySchema, location="query")
@blp.response(200, HistorySchema)
def list_history(query):
    """The caller's jobs, newest first, with pagination links that keep the filters.

    Filter by ``type``, ``target`` (exact), ``success``, ``since`` (inclusive), ``until`` (exclusive)
    and ``measurement_id``; each job's ``parameters`` is JSON text, ``parameters_object`` the same as an object."""
    return history.page(g.current_user, query.pop("limit"), query.pop("offset"), query)


@blp.get("/history/<id:job_id>")
@auth_required(scope="history:read")
@blp.response(200, JobDetailSchema)
def get_job(job_id):
    """One of the caller's jobs with its result and structured data."""
    return history.get_job(g.current_user, job_id)
